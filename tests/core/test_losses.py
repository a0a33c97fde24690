"""Closed-form checks of the GRPO loss pieces; every expected number is derived in the comment next to it."""
import math

import pytest
import torch

from rl.core.losses import AGGREGATIONS, Normalizer, clipped_surrogate, get_aggregation, k3_kl, policy_loss, token_logprobs

# Two sequences, C = 3, masks [1,1,0] and [1,0,0], A = [1, -1], mu = 1 (ratio 1): per-token loss = -A.
MASK = torch.tensor([[1., 1., 0.], [1., 0., 0.]])
ADV = torch.tensor([1., -1.])


def _loss(mode, norm, logp=None):
    logp = torch.zeros(2, 3, requires_grad=True) if logp is None else logp
    loss, _ = policy_loss(logp, ADV, MASK, norm, aggregation=get_aggregation(mode), epsilon_low=0.2, epsilon_high=0.2)
    return loss, logp


@pytest.mark.parametrize("mode, norm, expected", [
    # grpo: seq means (-1-1)/2 = -1 and (+1)/1 = 1 -> (-1 + 1) / 2 sequences = 0
    ("grpo", Normalizer(2, 3, 3), 0.0),
    # bnpo: (-1 -1 +1) / 3 tokens = -1/3
    ("bnpo", Normalizer(2, 3, 3), -1 / 3),
    # dapo: -1 / (global tokens 9 / 1 process) = -1/9 ; with 2 processes and 12 tokens overall: -1 / 6
    ("dapo", Normalizer(2, 3, 9), -1 / 9),
    ("dapo", Normalizer(2, 3, 12, num_processes=2), -1 / 6),
    # dr_grpo: -1 / (2 sequences * max_completion_length 4) = -1/8
    ("dr_grpo", Normalizer(2, 3, 3, max_completion_length=4), -1 / 8),
])
def test_aggregation_values(mode, norm, expected):
    loss, _ = _loss(mode, norm)
    assert loss.item() == pytest.approx(expected, abs=1e-7)


def test_grpo_gradient_is_policy_gradient_even_when_loss_is_zero():
    loss, logp = _loss("grpo", Normalizer(2, 3, 3))
    loss.backward()
    # d/dlogp of -A * rho (rho = exp(logp - sg(logp)) = 1, d rho/d logp = 1):
    # seq 1 tokens: -1 * (1/2 tokens) * (1/2 seqs) = -0.25 ; seq 2 token: +1 * 1 * 1/2 = 0.5 ; masked: 0
    torch.testing.assert_close(logp.grad, torch.tensor([[-0.25, -0.25, 0.], [0.5, 0., 0.]]))


@pytest.mark.parametrize("adv, rho, eps_high, loss_expected, clipped", [
    (1.0, 1.5, 0.2, -1.2, True),    # -min(1.5, 1.2)
    (1.0, 0.5, 0.2, -0.5, False),   # -min(0.5, 0.8)
    (-1.0, 0.5, 0.2, 0.8, True),    # -min(-0.5, -0.8)
    (-1.0, 1.5, 0.2, 1.5, False),   # -min(-1.5, -1.2)
    (1.0, 1.25, 0.28, -1.25, False),  # clip-higher: 1.25 < 1.28 -> unclipped
    (1.0, 1.25, 0.2, -1.2, True),
])
def test_clip_cases(adv, rho, eps_high, loss_expected, clipped):
    logp = torch.tensor([[math.log(rho)]], requires_grad=True)
    loss, is_clipped = clipped_surrogate(logp, torch.zeros(1, 1), torch.tensor([adv]), 0.2, eps_high)
    assert loss.item() == pytest.approx(loss_expected, abs=1e-6)
    assert bool(is_clipped.item()) is clipped
    loss.sum().backward()
    # clipped branch is constant in logp -> zero gradient; unclipped: d(-rho A)/dlogp = -rho * A
    assert logp.grad.item() == pytest.approx(0.0 if clipped else -rho * adv, abs=1e-6)


def test_k3_kl_values():
    # exp(ref - logp) - (ref - logp) - 1: (-1,-2) -> e^-1 + 1 - 1 = 0.367879 ; equal -> 0 ; (-2,-1) -> e - 2 = 0.718282
    kl = k3_kl(torch.tensor([-1., -2., -2.]), torch.tensor([-2., -2., -1.]))
    torch.testing.assert_close(kl, torch.tensor([math.exp(-1), 0.0, math.e - 2]))


def test_beta_adds_kl_term():
    # one token, A = 0, logp = -1, ref = -2, beta = 0.5 -> loss = 0.5 * 0.367879 (bnpo over 1 token)
    loss, sums = policy_loss(torch.tensor([[-1.]]), torch.tensor([0.]), torch.ones(1, 1), Normalizer(1, 1, 1),
                             aggregation=get_aggregation("bnpo"), epsilon_low=0.2, epsilon_high=0.2, beta=0.5,
                             ref_logprobs=torch.tensor([[-2.]]))
    assert loss.item() == pytest.approx(0.5 * math.exp(-1), abs=1e-6)
    assert sums["kl_tokens"].item() == pytest.approx(math.exp(-1), abs=1e-6)


@pytest.mark.parametrize("mode", list(AGGREGATIONS))
def test_accumulation_invariance(mode):
    """One batch of 8 == two accumulated micro-batches of 4: same loss sum, same gradients."""
    g = torch.Generator().manual_seed(0)
    logp_data = -torch.rand(8, 5, generator=g) * 3
    old = logp_data + 0.3 * torch.randn(8, 5, generator=g)  # ratios away from 1 so the clip binds sometimes
    adv = torch.randn(8, generator=g)
    mask = (torch.rand(8, 5, generator=g) > 0.3).float()
    mask[:, 0] = 1
    norm = Normalizer(num_sequences=8, num_tokens=mask.sum().item(), global_num_tokens=mask.sum().item(),
                      max_completion_length=5)
    agg = get_aggregation(mode)

    whole = logp_data.clone().requires_grad_(True)
    loss_whole, _ = policy_loss(whole, adv, mask, norm, aggregation=agg, epsilon_low=0.2, epsilon_high=0.28,
                                old_logprobs=old)
    loss_whole.backward()

    split = logp_data.clone().requires_grad_(True)
    total = 0.0
    for sl in (slice(0, 4), slice(4, 8)):
        part, _ = policy_loss(split[sl], adv[sl], mask[sl], norm, aggregation=agg, epsilon_low=0.2,
                              epsilon_high=0.28, old_logprobs=old[sl])
        part.backward()
        total += part.item()
    assert total == pytest.approx(loss_whole.item(), abs=1e-6)
    torch.testing.assert_close(split.grad, whole.grad, rtol=0, atol=1e-7)


def test_token_logprobs_matches_log_softmax_and_temperature():
    logits = torch.tensor([[[2.0, 0.0, -1.0]]])  # [1, 1, 3]
    ids = torch.tensor([[0]])
    # T = 1: 2 - log(e^2 + 1 + e^-1) ; T = 2: 1 - log(e^1 + 1 + e^-0.5)
    assert token_logprobs(logits, ids).item() == pytest.approx(2 - math.log(math.exp(2) + 1 + math.exp(-1)), abs=1e-6)
    assert token_logprobs(logits, ids, 2.0).item() == pytest.approx(1 - math.log(math.e + 1 + math.exp(-0.5)), abs=1e-6)


# ---------------------------------------------------------------------------------------------------------------------
# The registered policy surrogates (GSPO, CISPO) and KL estimators (k1, k2, k3).

from rl.core.losses import (KL_ESTIMATORS, SURROGATES, cispo_surrogate, get_kl_estimator,  # noqa: E402
                            get_surrogate, gspo_surrogate)


def test_registries_hold_the_documented_names():
    assert list(SURROGATES) == ["clip", "gspo", "cispo", "decoupled"]
    assert list(KL_ESTIMATORS) == ["k1", "k2", "k3"]
    with pytest.raises(ValueError, match="unknown policy loss 'ppo'; valid: clip, gspo, cispo, decoupled"):
        get_surrogate("ppo")
    with pytest.raises(ValueError, match="unknown KL estimator 'k4'; valid: k1, k2, k3"):
        get_kl_estimator("k4")


@pytest.mark.parametrize("log_rho, mask, adv, loss_expected, clipped, grad_expected", [
    # r = exp((0.3 + 0.1) / 2) = exp(0.2) = 1.2214 > 1.2, A = 1: -min(1.2214, 1.2) = -1.2, clipped, no gradient
    ([0.3, 0.1], [1., 1.], 1.0, -1.2, True, [0., 0.]),
    # r = exp(0) = 1, A = 2: loss -2; d(-r A)/d logp_t = -A r * (1 / |y|) = -2 * 1 * 1/2 = -1 per token
    ([0.1, -0.1], [1., 1.], 2.0, -2.0, False, [-1., -1.]),
    # padding does not enter the ratio: r = exp(0.1) = 1.10517 (the 5.0 is masked); A = -1: -min(-1.105, -1.2)
    # = 1.10517, unclipped; gradient -A r / 1 = 1.10517 on the one counted token, 0 on padding
    ([0.1, 5.0], [1., 0.], -1.0, 1.1051709, False, [1.1051709, 0.]),
    # A = -1, r = exp(-0.5) = 0.60653 < 0.8: -min(-0.6065, -0.8) = 0.8, clipped (pessimistic branch)
    ([-0.5, -0.5], [1., 1.], -1.0, 0.8, True, [0., 0.]),
])
def test_gspo_sequence_ratio_and_clip(log_rho, mask, adv, loss_expected, clipped, grad_expected):
    logp = torch.tensor([log_rho], requires_grad=True)  # old logprobs 0, so logp = log rho
    m = torch.tensor([mask])
    loss, is_clipped = gspo_surrogate(logp, torch.zeros(1, 2), torch.tensor([adv]), 0.2, 0.2, m)
    assert loss[0, 0].item() == pytest.approx(loss_expected, abs=1e-6)
    assert loss.shape == (1, 2) and loss[0, 0].item() == loss[0, 1].item()  # the sequence's value on every token
    assert bool(is_clipped[0, 0]) is clipped
    ((loss * m).sum(-1) / m.sum(-1)).sum().backward()  # the grpo aggregation of one sequence
    torch.testing.assert_close(logp.grad, torch.tensor([grad_expected]), rtol=0, atol=1e-6)


def test_gspo_equals_token_clip_on_policy():
    """mu = 1 (old = logp.detach(), every ratio 1): GSPO and the token clip give the same loss and gradient under the
    grpo aggregation: per sequence, -A * (1/|y|) * sum_t grad logp_t on both sides."""
    mask = torch.tensor([[1., 1., 1., 0.], [1., 1., 0., 0.], [1., 1., 1., 1.]])
    adv = torch.tensor([0.5, -1.0, 2.0])
    norm = Normalizer(3, float(mask.sum()), float(mask.sum()))
    results = []
    for name in ("clip", "gspo"):
        logp = torch.randn(3, 4, generator=torch.Generator().manual_seed(1)).requires_grad_(True)
        loss, _ = policy_loss(logp, adv, mask, norm, aggregation=get_aggregation("grpo"), epsilon_low=0.2,
                              epsilon_high=0.2, surrogate=get_surrogate(name))
        loss.backward()
        results.append((loss.item(), logp.grad))
    assert results[0][0] == pytest.approx(results[1][0], abs=1e-7)
    # loss = mean over sequences of -A = -(0.5 - 1 + 2) / 3 = -0.5
    assert results[0][0] == pytest.approx(-0.5, abs=1e-6)
    torch.testing.assert_close(results[0][1], results[1][1])


@pytest.mark.parametrize("rho, adv, logp, eps_high, loss_expected, clipped, grad_expected", [
    # w = clip(3, 0.8, 2) = 2: loss = -2 * 1 * (-0.5) = 1.0; d/dlogp = -w A = -2 (the PPO clip would give 0 here)
    (3.0, 1.0, -0.5, 1.0, 1.0, True, -2.0),
    # w = 1.1 inside [0.8, 2]: loss = -1.1 * (-1) * (-2) = -2.2; d/dlogp = -w A = 1.1
    (1.1, -1.0, -2.0, 1.0, -2.2, False, 1.1),
    # w = clip(0.5, 0.8, 2) = 0.8: loss = -0.8 * 1 * (-1) = 0.8; d/dlogp = -0.8
    (0.5, 1.0, -1.0, 1.0, 0.8, True, -0.8),
])
def test_cispo_clips_the_weight_and_keeps_the_gradient(rho, adv, logp, eps_high, loss_expected, clipped,
                                                       grad_expected):
    lp = torch.tensor([[logp]], requires_grad=True)
    old = torch.tensor([[logp - math.log(rho)]])
    loss, is_clipped = cispo_surrogate(lp, old, torch.tensor([adv]), 0.2, eps_high)
    assert loss.item() == pytest.approx(loss_expected, abs=1e-6)
    assert bool(is_clipped.item()) is clipped
    loss.sum().backward()
    assert lp.grad.item() == pytest.approx(grad_expected, abs=1e-6)


@pytest.mark.parametrize("name, values, grads", [
    # d = logp - ref: for (logp, ref) = (-1, -2) d = 1; for (-2, -1) d = -1
    ("k1", [1.0, -1.0], [1.0, 1.0]),                       # d; d/dlogp = 1
    ("k2", [0.5, 0.5], [1.0, -1.0]),                       # d^2 / 2; d/dlogp = d
    # exp(-d) + d - 1: exp(-1) + 0 = 0.36788, exp(1) - 2 = 0.71828; d/dlogp = 1 - exp(-d): 0.63212, -1.71828
    ("k3", [0.3678794, 0.7182818], [0.6321206, -1.7182818]),
])
def test_kl_estimators(name, values, grads):
    logp = torch.tensor([[-1.0, -2.0]], requires_grad=True)
    ref = torch.tensor([[-2.0, -1.0]])
    kl = get_kl_estimator(name)(logp, ref)
    torch.testing.assert_close(kl, torch.tensor([values]), rtol=0, atol=1e-6)
    kl.sum().backward()
    torch.testing.assert_close(logp.grad, torch.tensor([grads]), rtol=0, atol=1e-6)
    # through policy_loss: A = 0 leaves only beta * KL; bnpo over 2 tokens: 0.1 * sum / 2
    loss, sums = policy_loss(logp.detach(), torch.tensor([0.0]), torch.ones(1, 2), Normalizer(1, 2, 2),
                             aggregation=get_aggregation("bnpo"), epsilon_low=0.2, epsilon_high=0.2, beta=0.1,
                             ref_logprobs=ref, kl_estimator=get_kl_estimator(name))
    assert loss.item() == pytest.approx(0.1 * sum(values) / 2, abs=1e-6)
    assert sums["kl_tokens"].item() == pytest.approx(sum(values), abs=1e-6)


def test_kl_reward_penalty():
    from rl.core.losses import k1_kl, k3_kl, kl_reward_penalty
    logp = torch.tensor([[-1.0, -2.0], [-1.0, 0.0]])
    ref = torch.tensor([[-2.0, -2.0], [-1.5, -3.0]])
    mask = torch.tensor([[1.0, 1.0], [1.0, 0.0]])  # the second row's 2nd token is padding
    # k1: row 0: 1 + 0 = 1 -> 0.1; row 1: 0.5 (the padded 3.0 does not count) -> 0.05
    penalty, metrics = kl_reward_penalty(logp, ref, mask, 0.1, k1_kl)
    torch.testing.assert_close(penalty, torch.tensor([0.1, 0.05]))
    assert metrics["kl"] == pytest.approx(1.5 / 3) and metrics["reward/kl_penalty"] == pytest.approx(0.075)
    # k3 = exp(-d) + d - 1: d = 1 -> 0.36788, d = 0 -> 0, d = 0.5 -> 0.10653
    penalty, _ = kl_reward_penalty(logp, ref, mask, 1.0, k3_kl)
    torch.testing.assert_close(penalty, torch.tensor([0.3678794, 0.1065307]), rtol=0, atol=1e-6)


# ---------------------------------------------------------------------------------------------------------------------
# Decoupled PPO (AReaL): the clip around the proximal policy, the behaviour gap as a masked weight.

from rl.core.losses import clipped_surrogate, decoupled_surrogate  # noqa: E402
from rl.core.rollout_correction import token_mask  # noqa: E402


@pytest.mark.parametrize("logp_minus_prox, prox_minus_behav, adv, cap, loss_expected, clipped, grad_expected", [
    # r = e^0.5 = 1.6487 -> clip 1.2 (A > 0, clipped branch, no gradient); w = e^ln2 = 2 -> -2 * 1.2 = -2.4
    (0.5, math.log(2), 1.0, None, -2.4, True, 0.0),
    # the same token with behaviour_cap 1.5: w = 2 > 1.5 is masked -> loss 0, no gradient
    (0.5, math.log(2), 1.0, 1.5, 0.0, True, 0.0),
    # mu = 1: logp = prox, r = 1; w = e^-0.3 = 0.7408; A = -1: l = -w * min(-1, -1) = 0.7408,
    # d l / d logp = -w * A * r = 0.7408 (the policy gradient at weight w)
    (0.0, -0.3, -1.0, 3.0, math.exp(-0.3), False, math.exp(-0.3)),
    # r = e^0.1 = 1.1052 inside the clip, A = 2, w = e^0.2 = 1.2214: l = -1.2214 * 2 * 1.1052 = -2.6998,
    # d l / d logp = -w * A * r = -2.6998
    (0.1, 0.2, 2.0, 3.0, -math.exp(0.2) * 2 * math.exp(0.1), False, -math.exp(0.2) * 2 * math.exp(0.1)),
])
def test_decoupled_surrogate_table(logp_minus_prox, prox_minus_behav, adv, cap, loss_expected, clipped,
                                   grad_expected):
    prox = torch.tensor([[-1.0]])
    logp = (prox + logp_minus_prox).requires_grad_(True)
    behav = prox - prox_minus_behav
    loss, is_clipped = decoupled_surrogate(logp, prox, torch.tensor([adv]), 0.2, 0.2, torch.ones(1, 1),
                                           behaviour_logprobs=behav, behaviour_cap=cap)
    loss.sum().backward()
    assert loss.item() == pytest.approx(loss_expected, abs=1e-5)
    assert is_clipped.item() is clipped
    assert logp.grad.item() == pytest.approx(grad_expected, abs=1e-5)


def test_decoupled_is_clip_around_the_proximal_times_token_mask_weights():
    """Equivalence: decoupled(logp, prox, behav) == clip(logp, prox) * token_mask(prox, behav, clip_max = cap), value
    and gradient; and without behaviour logprobs it is `clip` itself."""
    g = torch.Generator().manual_seed(3)
    prox = -torch.rand(4, 7, generator=g) * 2
    logp = (prox + (torch.rand(4, 7, generator=g) - 0.5) * 0.8).requires_grad_(True)
    behav = prox + (torch.rand(4, 7, generator=g) - 0.5) * 3  # some weights above the cap 2
    mask, adv = (torch.rand(4, 7, generator=g) > 0.2).float(), torch.randn(4, generator=g)
    got, clipped = decoupled_surrogate(logp, prox, adv, 0.2, 0.28, mask, behaviour_logprobs=behav, behaviour_cap=2.0)
    (got * mask).sum().backward()
    grad, logp.grad = logp.grad.clone(), None
    weights, masked, _ = token_mask(prox, behav, mask, None, 2.0)
    assert masked.any() and (weights[mask > 0] < 1).any()
    base, base_clipped = clipped_surrogate(logp, prox, adv, 0.2, 0.28)
    expected = base * weights
    (expected * mask).sum().backward()
    torch.testing.assert_close(got * mask, expected * mask)
    torch.testing.assert_close(grad, logp.grad)
    assert torch.equal(clipped, base_clipped)
    plain, _ = decoupled_surrogate(logp, prox, adv, 0.2, 0.28, mask)
    assert torch.equal(plain, base)
