"""The learner on a real (micro) transformers model: accumulation invariance, forward-pass counts, TRL parity."""
import pytest
import torch

from rl.core.collate import collate
from rl.config.recipe import load_config
from rl.train.distributed import make_accelerator
from rl.core.episode import Completion, Episode
from rl.config.grpo import GRPOConfig
from rl.train.learner import Learner, completion_logprobs
from rl.core.losses import AGGREGATIONS, Normalizer, get_aggregation, policy_loss
from rl.train.models import load_causal_lm, load_tokenizer


def make_batch(tokenizer, n=8, seed=0, advantages=None):
    """n episodes with prompts/completions of varied lengths (so padding differs between micro-batches)."""
    g = torch.Generator().manual_seed(seed)
    vocab = len(tokenizer)
    episodes = []
    for i in range(n):
        p = torch.randint(5, vocab, (3 + i % 3,), generator=g).tolist()
        c = torch.randint(5, vocab, (2 + (i * 5) % 6,), generator=g).tolist()
        episodes.append(Episode(group_id=i // 4, example={}, completion=Completion(p, c, "", "stop", [0.0] * len(c))))
    adv = advantages if advantages is not None else torch.randn(n, generator=g).tolist()
    for e, a in zip(episodes, adv):
        e.advantage = a
    return collate(episodes, tokenizer.pad_token_id)


def make_learner(model_dir, **overrides):
    args = [f"{k}={v}" for k, v in overrides.items()]
    # fixed micro-batches of train.micro_batch_size rows unless a test sets a token budget: these tests count
    # micro-batches by rows and compare with padded references (the tiny recipe packs; packed == fixed is proven in
    # tests/train/test_packing.py and test_shared_prompts.py)
    cfg = load_config(GRPOConfig, "recipes/tiny/r1_zero.yaml", ["rollout.max_completion_length=8",
                                                                "train.max_tokens_per_micro_batch=0", *args])
    torch.manual_seed(0)
    model = load_causal_lm(str(model_dir))
    ref = load_causal_lm(str(model_dir)) if cfg.algorithm.beta > 0 else None
    return Learner(cfg, make_accelerator(cfg), model, ref), cfg


def grads_of(learner):
    return torch.cat([p.grad.flatten() for p in learner.model.parameters() if p.grad is not None])


ACCUMULATION_CASES = [(mode, "clip", {}) for mode in AGGREGATIONS] + [
    ("grpo", "gspo", {}), ("dapo", "cispo", {}),
    # with a KL term from each estimator (beta > 0 loads a reference model)
    ("grpo", "clip", {"algorithm.beta": 0.1, "algorithm.kl_estimator": "k2"}),
    ("dapo", "cispo", {"algorithm.beta": 0.1, "algorithm.kl_estimator": "k1"})]


@pytest.mark.parametrize("mode, surrogate, extra", ACCUMULATION_CASES,
                         ids=[f"{m}-{s}-{'-'.join(map(str, e.values()))}" for m, s, e in ACCUMULATION_CASES])
def test_one_batch_of_8_equals_two_accumulated_batches_of_4(micro_model_dir, mode, surrogate, extra):
    tok = load_tokenizer(str(micro_model_dir))
    batch = make_batch(tok)
    results = []
    for micro in (8, 4):
        learner, _ = make_learner(micro_model_dir, **{"algorithm.loss": mode, "algorithm.policy_loss": surrogate,
                                                      "train.batch_size": 8, "rollout.group_size": 4,
                                                      "train.micro_batch_size": micro, **extra})
        prepared, norm = learner.prepare(batch)
        sums = learner.accumulate_gradients(prepared, norm)
        results.append((sums["loss"], grads_of(learner)))
    (loss_a, grad_a), (loss_b, grad_b) = results
    assert loss_a == pytest.approx(loss_b, abs=1e-6)
    assert grad_a.abs().max() > 1e-4  # a real gradient, not zeros compared with zeros
    torch.testing.assert_close(grad_b, grad_a, rtol=1e-4, atol=1e-6)


class ForwardCounter:
    def __init__(self, *models):
        self.calls = 0
        for m in models:
            if m is not None:
                m.register_forward_hook(lambda *a: setattr(self, "calls", self.calls + 1))


@pytest.mark.parametrize("overrides, expected_forwards", [
    # 8 sequences, micro-batches of 4 -> 2 training forwards; nothing else when mu = 1 and beta = 0
    ({}, 2),
    # mu = 2: 2 no-grad forwards for old logprobs (once) + 2 passes x 2 micro-batches
    ({"algorithm.num_iterations": 2}, 2 + 4),
    # beta > 0: + 2 reference forwards
    ({"algorithm.beta": 0.1}, 2 + 2),
])
def test_no_redundant_forward_passes(micro_model_dir, overrides, expected_forwards):
    tok = load_tokenizer(str(micro_model_dir))
    learner, _ = make_learner(micro_model_dir, **{"train.batch_size": 8, "rollout.group_size": 4,
                                                  "train.micro_batch_size": 4, **overrides})
    counter = ForwardCounter(learner.model, learner.ref_model)  # the logprob modules (policy, reference)
    metrics = learner.step(make_batch(tok))
    assert counter.calls == expected_forwards
    assert metrics["grad_norm"] > 0
    if "algorithm.beta" in overrides:
        # first step: policy == reference, so k3 KL is exactly 0 at the start of the only pass
        assert metrics["kl"] == pytest.approx(0.0, abs=1e-7)


def test_step_changes_weights_in_the_direction_of_positive_advantages(micro_model_dir):
    """After one step, completions with A > 0 gain log-probability and those with A < 0 lose it."""
    tok = load_tokenizer(str(micro_model_dir))
    batch = make_batch(tok, advantages=[1.0, -1.0] * 4)
    learner, _ = make_learner(micro_model_dir, **{"train.batch_size": 8, "rollout.group_size": 4,
                                                  "train.micro_batch_size": 8, "train.learning_rate": 1e-3})
    with torch.no_grad():
        before = completion_logprobs(learner.model, batch, 1.0)
    learner.step(batch)
    with torch.no_grad():
        after = completion_logprobs(learner.model, batch, 1.0)
    per_seq_gain = ((after - before) * batch.completion_mask).sum(-1)  # [8]
    assert (per_seq_gain[0::2] > 0).all() and (per_seq_gain[1::2] < 0).all()


# (our aggregation, our policy loss, our epsilon_low, TRL loss_type, TRL importance_sampling_level, TRL epsilon_high)
# GSPO is TRL's sequence-level importance sampling with the grpo aggregation; CISPO is TRL's loss_type="cispo", which
# clamps the ratio from above at epsilon_high (= 1 + ours) and normalises like dapo; no lower clamp there, so ours
# gets epsilon_low = 0.99 (every ratio exp(0.3 * N(0,1)) here is far above 0.01).
TRL_CASES = [("grpo", "clip", 0.2, "grpo", "token", 0.28), ("bnpo", "clip", 0.2, "bnpo", "token", 0.28),
             ("dapo", "clip", 0.2, "dapo", "token", 0.28), ("dr_grpo", "clip", 0.2, "dr_grpo", "token", 0.28),
             ("grpo", "gspo", 0.2, "grpo", "sequence", 0.28), ("dapo", "cispo", 0.99, "cispo", "token", 1.28)]


@pytest.mark.slow
@pytest.mark.parametrize("mode, surrogate, eps_low, trl_loss_type, trl_level, trl_eps_high", TRL_CASES,
                         ids=[f"{c[0]}-{c[1]}" for c in TRL_CASES])
def test_parity_with_trl_grpo_trainer_loss(micro_model_dir, tmp_path, mode, surrogate, eps_low, trl_loss_type,
                                           trl_level, trl_eps_high):
    """Same model, same completions, same advantages and old logprobs: our loss == TRL GRPOTrainer._compute_loss,
    and so are its gradients with respect to the per-token logprobs."""
    from datasets import Dataset
    from trl import GRPOConfig as TRLConfig
    from trl import GRPOTrainer

    from rl.core.losses import get_surrogate

    tok = load_tokenizer(str(micro_model_dir))
    model = load_causal_lm(str(micro_model_dir))
    max_len, beta = 8, 0.04
    args = TRLConfig(output_dir=str(tmp_path), per_device_train_batch_size=4, num_generations=4, max_steps=1,
                     max_completion_length=max_len, loss_type=trl_loss_type, beta=beta, epsilon=0.2,
                     epsilon_high=trl_eps_high, importance_sampling_level=trl_level,
                     use_cpu=True, report_to=[], logging_steps=1, bf16=False,
                     use_bias_correction_kl=False)  # TRL 1.16 defaults to KL * ratio; the textbook k3 is without
    trainer = GRPOTrainer(model=model, reward_funcs=lambda completions, **kw: [0.0] * len(completions),
                          args=args, train_dataset=Dataset.from_list([{"prompt": "x"}] * 4), processing_class=tok)
    g = torch.Generator().manual_seed(1)
    N, P, C = 4, 5, 6
    prompt_ids = torch.randint(5, len(tok), (N, P), generator=g)
    completion_ids = torch.randint(5, len(tok), (N, C), generator=g)
    completion_mask = torch.tensor([[1, 1, 1, 1, 1, 1], [1, 1, 1, 0, 0, 0], [1, 1, 0, 0, 0, 0], [1, 1, 1, 1, 1, 0]])
    advantages = torch.tensor([1.0, -0.5, 0.25, -0.75])
    batch = collate([Episode(0, {}, Completion(p.tolist(), c[:int(m.sum())].tolist(), "", "stop",
                                               [0.0] * int(m.sum())), advantage=a.item())
                     for p, c, m, a in zip(prompt_ids, completion_ids, completion_mask, advantages)], tok.pad_token_id)
    batch.input_ids[:, P:] = torch.where(completion_mask.bool(), completion_ids, batch.input_ids[:, P:])
    trainer.model.eval()  # TRL: eval mode = no accumulation rescaling; Llama has no dropout, logits are the same
    with torch.no_grad():
        ours_logp = completion_logprobs(trainer.model, batch, 1.0)
    old = ours_logp + 0.3 * torch.randn(N, C, generator=g)  # ratios away from 1: the clip binds on some tokens
    ref = ours_logp + 0.2 * torch.randn(N, C, generator=g)
    inputs = {"prompt_ids": prompt_ids, "prompt_mask": torch.ones(N, P, dtype=torch.long),
              "completion_ids": batch.input_ids[:, P:], "completion_mask": completion_mask,
              "advantages": advantages, "old_per_token_logps": old, "ref_per_token_logps": ref,
              "num_items_in_batch": completion_mask.sum()}
    trl_loss = trainer._compute_loss(trainer.model, inputs)
    tokens = float(completion_mask.sum())
    # TRL computes logprobs with its fused lm-head kernel: equal to ours to ~1e-3 (float32 summation order), so the
    # loss comparison below feeds both losses the same per-token logprobs (TRL's own), as the test's premise says.
    trl_logp, _, _ = trainer._get_per_token_logps_and_entropies(trainer.model, batch.input_ids, batch.attention_mask, C)
    m = batch.completion_mask  # TRL writes 0 on padding
    torch.testing.assert_close(ours_logp * m, trl_logp.detach() * m, rtol=0, atol=2e-3)
    ours, _ = policy_loss(trl_logp, advantages, batch.completion_mask,
                          Normalizer(N, tokens, tokens, 1, max_len), aggregation=get_aggregation(mode),
                          epsilon_low=eps_low, epsilon_high=0.28, beta=beta, old_logprobs=old, ref_logprobs=ref,
                          surrogate=get_surrogate(surrogate))
    assert abs(trl_loss.item()) > 1e-3
    assert ours.item() == pytest.approx(trl_loss.item(), abs=1e-5)
    # gradients: TRL's loss as a function of the same per-token logprobs (its _compute_loss recomputes them from the
    # model, so differentiate through the model instead: d loss / d theta on both sides)
    trainer.model.zero_grad()
    trainer._compute_loss(trainer.model, inputs).backward()
    trl_grads = torch.cat([p.grad.flatten() for p in trainer.model.parameters() if p.grad is not None])
    trainer.model.zero_grad()
    logp_model, _, _ = trainer._get_per_token_logps_and_entropies(trainer.model, batch.input_ids,
                                                                  batch.attention_mask, C)
    ours_model, _ = policy_loss(logp_model, advantages, batch.completion_mask, Normalizer(N, tokens, tokens, 1, max_len),
                                aggregation=get_aggregation(mode), epsilon_low=eps_low, epsilon_high=0.28, beta=beta,
                                old_logprobs=old, ref_logprobs=ref, surrogate=get_surrogate(surrogate))
    ours_model.backward()
    our_grads = torch.cat([p.grad.flatten() for p in trainer.model.parameters() if p.grad is not None])
    assert our_grads.abs().max() > 1e-4
    torch.testing.assert_close(our_grads, trl_grads, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("mode", ["grpo", "dapo", "dr_grpo"])
def test_length_grouped_trimmed_micro_batches_equal_one_padded_pass(micro_model_dir, mode):
    """The learner orders rows by length and trims each micro-batch to its longest row; the loss and gradients must
    be those of the whole batch padded to its longest row, through the model's own [N, T, V] logits."""
    from rl.core.losses import token_logprobs
    from rl.core.collate import position_ids, trim_padding
    tok = load_tokenizer(str(micro_model_dir))
    batch = make_batch(tok, n=8, seed=3)
    learner, cfg = make_learner(micro_model_dir, **{"algorithm.loss": mode, "train.batch_size": 8,
                                                    "rollout.group_size": 4, "train.micro_batch_size": 2})
    prepared, norm = learner.prepare(batch)
    sums = learner.accumulate_gradients(prepared, norm)
    got = grads_of(learner)
    # the micro-batches really are smaller than the padded batch (8 rows padded to 13 columns here)
    shapes = [tuple(trim_padding(prepared.slice(s, s + 2)).input_ids.shape) for s in range(0, 8, 2)]
    assert shapes[-1][1] < batch.input_ids.shape[1] and shapes[0][1] == batch.input_ids.shape[1]

    model = load_causal_lm(str(micro_model_dir))  # the same initial weights, no wrapper, one padded pass
    C = batch.completion_length
    logits = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask,
                   position_ids=position_ids(batch.attention_mask)).logits[:, -C - 1:-1]  # [8, C, V]
    logprobs = token_logprobs(logits, batch.input_ids[:, -C:], 1.0)  # [8, C]
    loss, _ = policy_loss(logprobs, batch.advantages, batch.completion_mask, norm, aggregation=get_aggregation(mode),
                          epsilon_low=0.2, epsilon_high=0.28)
    loss.backward()
    want = torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])
    assert sums["loss"] == pytest.approx(loss.item(), abs=1e-6)
    assert want.abs().max() > 1e-4
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-6)


def test_kl_in_reward_reuses_the_reference_pass_and_drops_the_loss_term(micro_model_dir):
    """algorithm.kl_in_reward: the reference logprobs are computed once, before the advantages (rl/grpo.py passes
    them on as batch.ref_logprobs), so the step does 2 reference + 2 training forwards, as with the KL in the loss;
    and the loss then has no KL term (its gradient equals the beta = 0 gradient)."""
    tok = load_tokenizer(str(micro_model_dir))
    common = {"train.batch_size": 8, "rollout.group_size": 4, "train.micro_batch_size": 4}
    learner, _ = make_learner(micro_model_dir, **common, **{"algorithm.beta": 0.5, "algorithm.kl_in_reward": True})
    counter = ForwardCounter(learner.model, learner.ref_model)
    batch = make_batch(tok)
    ref = learner.reference_logprobs(batch)  # [8, C] in the batch's own row order
    assert ref.shape == batch.completion_mask.shape
    batch.ref_logprobs = ref
    learner.prepare(batch)  # nothing left to compute for the reference
    learner.model.zero_grad()
    prepared, norm = learner.prepare(batch)
    learner.accumulate_gradients(prepared, norm)
    assert counter.calls == 2 + 2
    with_penalty_grads = grads_of(learner)
    plain, _ = make_learner(micro_model_dir, **common)
    prepared, norm = plain.prepare(make_batch(tok))
    plain.accumulate_gradients(prepared, norm)
    torch.testing.assert_close(with_penalty_grads, grads_of(plain))  # no beta * KL in the loss


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_reference_computes_as_the_policy_at_step_0(micro_model_dir, dtype):
    """beta > 0, no LoRA: at step 0 the reference has the policy's weights, so it must give the policy's logprobs
    and the step's KL must be 0 (float rounding at most; here exactly 0). The models come from the loader rl/grpo.py
    uses. Before: the reference was loaded in bf16 and run without autocast while the policy ran float32 weights
    under bf16 autocast (max |dlogp| 1.9e-3 on this batch at identical weights)."""
    from accelerate.state import AcceleratorState

    from rl.train.models import load_policy_and_reference
    AcceleratorState._reset_state(True)  # the mixed precision of this test's Accelerator, not an earlier one's
    cfg = load_config(GRPOConfig, "recipes/tiny/r1_zero.yaml", [
        "rollout.max_completion_length=8", f"model.dtype={dtype}", "algorithm.beta=0.1", "train.batch_size=8",
        "rollout.group_size=4", "train.micro_batch_size=4"])
    torch.manual_seed(0)
    policy, ref = load_policy_and_reference(str(micro_model_dir), cfg.model, cfg.algorithm.beta)
    learner = Learner(cfg, make_accelerator(cfg), policy, ref)
    assert learner.accelerator.mixed_precision == {"float32": "no", "bfloat16": "bf16"}[dtype]
    batch = make_batch(load_tokenizer(str(micro_model_dir)))
    ref_logprobs = learner.reference_logprobs(batch)  # [8, C]
    policy_logprobs = learner._frozen_logprobs(learner.model, batch)  # the prepared policy, same rows and order
    assert policy_logprobs.abs().max() > 1.0  # real logprobs, not masked zeros
    assert (ref_logprobs - policy_logprobs).abs().max().item() < 1e-6
    metrics = learner.step(batch)
    assert abs(metrics["kl"]) < 1e-6
    AcceleratorState._reset_state(True)


def test_fused_cpu_adamw_equals_the_per_parameter_loop(micro_model_dir, monkeypatch):
    """The learner's optimizer on CPU is torch's fused AdamW (rl/train/learner.py adamw_options); torch's CPU default
    (the per-parameter loop, foreach=False) gives the same loss, grad norm and weights after 3 steps (float32
    rounding: weights within 1e-6, measured ~1e-8)."""
    from rl.train import learner as learner_module
    tok = load_tokenizer(str(micro_model_dir))
    common = {"train.batch_size": 8, "rollout.group_size": 4, "train.micro_batch_size": 4, "train.learning_rate": 1e-3}
    fused, _ = make_learner(micro_model_dir, **common)
    assert fused.optimizer.optimizer.defaults["fused"] is True
    monkeypatch.setattr(learner_module, "adamw_options", lambda params, distributed_type="NO": {"foreach": False})
    loop, _ = make_learner(micro_model_dir, **common)
    assert not loop.optimizer.optimizer.defaults["fused"] and loop.optimizer.optimizer.defaults["foreach"] is False
    for s in (1, 2, 3):
        a, b = fused.step(make_batch(tok, n=8, seed=s)), loop.step(make_batch(tok, n=8, seed=s))
        assert a["loss"] == pytest.approx(b["loss"], abs=1e-6)
        assert a["grad_norm"] == pytest.approx(b["grad_norm"], rel=1e-5)
    w_fused = dict(fused.full_named_parameters())
    w_loop = dict(loop.full_named_parameters())
    start = load_causal_lm(str(micro_model_dir)).state_dict()
    assert max((w_loop[n] - start[n]).abs().max().item() for n in w_loop) > 1e-4  # the weights did move
    for n in w_loop:
        torch.testing.assert_close(w_fused[n], w_loop[n], rtol=0, atol=1e-6)


def test_adamw_options_by_hand():
    """fused only for plain float CPU parameters outside DeepSpeed / FSDP; torch's default otherwise."""
    from rl.train.learner import adamw_options
    cpu = [torch.nn.Parameter(torch.zeros(2))]
    assert adamw_options(cpu) == {"fused": True} and adamw_options(cpu, "MULTI_CPU") == {"fused": True}
    assert adamw_options(cpu, "DEEPSPEED") == {} and adamw_options(cpu, "FSDP") == {} and adamw_options([]) == {}
    assert adamw_options([torch.nn.Parameter(torch.zeros(2, dtype=torch.float64)), torch.zeros(2)]) == {}
