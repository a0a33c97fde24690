"""The learner applies the recipe's rollout correction (rl/core/rollout_correction.py) where the truncated IS was
applied: `tis_cap` c and `rollout_correction: token_truncate` with clip_max c train bit for bit alike; every mode
weighs each token's loss by its weights; `decoupled` equals the clip loss times token_mask weights; the metrics
are the weights' mean and the shares masked / truncated."""
import pytest
import torch

from rl.core.losses import get_aggregation, policy_loss
from rl.core.rollout_correction import get_correction
from rl.train.learner import completion_logprobs
from rl.train.models import load_causal_lm, load_tokenizer
from tests.train.test_learner import grads_of, make_batch, make_learner

BASE = {"train.batch_size": 8, "rollout.group_size": 4, "train.micro_batch_size": 4}


def stale_batch(model_dir):
    """A batch whose engine logprobs are the learner's minus delta, delta in [-1, 1) per token: ratios e^delta."""
    tok = load_tokenizer(str(model_dir))
    batch = make_batch(tok)
    with torch.no_grad():
        learner_lp = completion_logprobs(load_causal_lm(str(model_dir)), batch, 1.0)  # [N, C]
    delta = (torch.rand(learner_lp.shape, generator=torch.Generator().manual_seed(1)) - 0.5) * 2
    batch.sampling_logprobs = (learner_lp - delta) * batch.completion_mask
    return batch, learner_lp


def train_once(model_dir, batch, **overrides):
    learner, cfg = make_learner(model_dir, **BASE, **overrides)
    metrics = learner.step(batch)
    return learner, cfg, metrics


def test_token_truncate_trains_exactly_as_tis_cap(micro_model_dir):
    batch, _ = stale_batch(micro_model_dir)
    a, _, ma = train_once(micro_model_dir, batch, **{"algorithm.tis_cap": 2.0})
    b, _, mb = train_once(micro_model_dir, batch, **{"algorithm.rollout_correction": "token_truncate",
                                                     "algorithm.rollout_correction_clip_max": 2.0})
    for pa, pb in zip(a.model.parameters(), b.model.parameters()):
        assert torch.equal(pa, pb)  # the same update, bit for bit
    assert {k: v for k, v in ma.items() if not k.startswith("time/")} == \
        {k: v for k, v in mb.items() if not k.startswith("time/")}
    assert 0 < ma["rollout/is_truncated_frac"] < 1 and ma["rollout/is_masked_frac"] == 0


def test_no_correction_by_default_no_metrics(micro_model_dir):
    batch, _ = stale_batch(micro_model_dir)
    learner, cfg, metrics = train_once(micro_model_dir, batch)
    assert cfg.algorithm.rollout_correction is None and cfg.algorithm.tis_cap is None and learner.correction is None
    assert not any(k.startswith("rollout/is_") for k in metrics)


@pytest.mark.parametrize("mode, lo, hi", [("sequence_mask", None, 3.0), ("token_mask", 0.5, 2.0),
                                          ("sequence_truncate", 0.5, 3.0), ("icepop", None, 1.5)])
def test_every_mode_weighs_each_tokens_loss(micro_model_dir, mode, lo, hi):
    """Gradient of the learner == gradient of the loss with the mode's weights (computed on the learner's
    logprobs, mu = 1), and the logged mean / shares are those of the weights."""
    batch, learner_lp = stale_batch(micro_model_dir)
    overrides = {"algorithm.rollout_correction": mode, "algorithm.rollout_correction_clip_max": hi}
    if lo is not None:
        overrides["algorithm.rollout_correction_clip_min"] = lo
    learner, cfg = make_learner(micro_model_dir, **BASE, **overrides)
    prepared, norm = learner.prepare(batch)
    sums = learner.accumulate_gradients(prepared, norm)
    weights, masked, truncated = get_correction(mode)(learner_lp, batch.sampling_logprobs, batch.completion_mask,
                                                      lo, hi)
    m = batch.completion_mask > 0
    tokens = m.sum().item()
    assert sums["is_weight"] / tokens == pytest.approx(weights[m].mean().item(), rel=1e-5)
    assert sums["is_masked"] / tokens == pytest.approx(masked[m].float().mean().item())
    assert sums["is_truncated"] / tokens == pytest.approx(truncated[m].float().mean().item())
    assert (masked | truncated)[m].any()  # the case bites
    model = load_causal_lm(str(micro_model_dir))
    loss, _ = policy_loss(completion_logprobs(model, batch, 1.0), batch.advantages, batch.completion_mask, norm,
                          aggregation=get_aggregation(cfg.algorithm.loss), epsilon_low=0.2, epsilon_high=0.28,
                          is_weights=weights)
    loss.backward()
    torch.testing.assert_close(grads_of(learner), torch.cat([p.grad.flatten() for p in model.parameters()]),
                               rtol=1e-4, atol=1e-6)


def test_decoupled_learner_equals_clip_with_token_mask_weights(micro_model_dir):
    batch, _ = stale_batch(micro_model_dir)
    a, cfg, ma = train_once(micro_model_dir, batch, **{"algorithm.policy_loss": "decoupled",
                                                       "algorithm.rollout_correction_clip_max": 2.0,
                                                       "rollout.async_steps": 2})
    assert cfg.algorithm.tis_cap is None  # the decoupled loss brings its own behaviour weights
    b, _, mb = train_once(micro_model_dir, batch, **{"algorithm.rollout_correction": "token_mask",
                                                     "algorithm.rollout_correction_clip_max": 2.0})
    for pa, pb in zip(a.model.parameters(), b.model.parameters()):
        torch.testing.assert_close(pa, pb, rtol=1e-5, atol=1e-7)
    assert ma["rollout/is_masked_frac"] == mb["rollout/is_masked_frac"] > 0
