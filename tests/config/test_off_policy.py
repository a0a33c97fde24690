"""Recipe checks of off-policy training (rl/config/off_policy.py): what max_staleness, rollout_correction and the
decoupled loss fill in, and one-line errors for what cannot run."""
import pytest

from rl.config.grpo import GRPOConfig
from rl.config.recipe import ConfigError, load_config


def load(*overrides):
    return load_config(GRPOConfig, "recipes/tiny/r1_zero.yaml", list(overrides))


def test_stream_is_off_by_default_and_accepted_on_vllm_colocated():
    assert load().rollout.stream is False
    r = load("rollout.stream=true", "rollout.max_staleness=2", "rollout.engine=vllm").rollout
    assert (r.stream, r.async_steps, r.max_staleness) == (True, 2, 2)


@pytest.mark.parametrize("overrides, async_steps, max_staleness, tis_cap, correction", [
    ([], 0, None, None, None),  # the default: synchronous, no correction (unchanged)
    (["rollout.max_staleness=0"], 0, 0, None, None),  # k = 0: the synchronous loop
    (["rollout.max_staleness=2"], 2, 2, 2.0, None),  # k alone: k steps ahead, TIS 2.0 as async always had
    (["rollout.max_staleness=1", "rollout.async_steps=2"], 2, 1, 2.0, None),  # ahead 2, groups older than 1 dropped
    (["rollout.async_steps=1", "algorithm.rollout_correction=sequence_mask"], 1, None, None, "sequence_mask"),
    (["rollout.async_steps=1", "algorithm.policy_loss=decoupled"], 1, None, None, None),
])
def test_filled_in_defaults(overrides, async_steps, max_staleness, tis_cap, correction):
    cfg = load(*overrides)
    r, a = cfg.rollout, cfg.algorithm
    assert (r.async_steps, r.max_staleness, a.tis_cap, a.rollout_correction) == (async_steps, max_staleness,
                                                                                  tis_cap, correction)
    assert a.rollout_correction_clip_max == 3.0 and a.rollout_correction_clip_min is None  # TRL's defaults


@pytest.mark.parametrize("overrides, message", [
    (["rollout.max_staleness=-1"], r"rollout.max_staleness=-1 must be >= 0"),
    (["algorithm.rollout_correction=seq"], r"rollout_correction='seq' is not one of: token_truncate, token_mask"),
    (["algorithm.rollout_correction=token_mask", "algorithm.tis_cap=2.0"], r"set one"),
    (["algorithm.rollout_correction=icepop", "algorithm.rollout_correction_clip_max=null"],
     r"icepop needs rollout_correction_clip_max$"),
    (["algorithm.rollout_correction_clip_min=3.0"], r"_clip_min=3.0 / _clip_max=3.0: need 0 <= min < max"),
    (["algorithm.policy_loss=decoupled", "algorithm.tis_cap=2.0"], r"decoupled weighs tokens by its own"),
    (["rollout.max_staleness=1", "algorithm.dynamic_sampling=true"], r"cannot run with rollout.async_steps > 0"),
    # stream mode (rollout.stream): ahead of the learner, on an engine that streams
    (["rollout.stream=true", "rollout.engine=vllm"], r"^rollout.stream=true .* needs rollout.async_steps >= 1"),
    (["rollout.stream=true", "rollout.max_staleness=0", "rollout.engine=vllm"], r"needs rollout.async_steps >= 1"),
    (["rollout.stream=true", "rollout.max_staleness=1"],
     r"^rollout.stream=true: the transformers engine \(rollout.engine=hf\) cannot stream"),
    (["rollout.stream=true", "rollout.max_staleness=1", "rollout.engine=vllm", "rollout.vllm_mode=server"],
     r"^rollout.stream=true: vLLM server mode cannot stream"),
])
def test_errors(overrides, message):
    with pytest.raises(ConfigError, match=message):
        load(*overrides)


@pytest.mark.parametrize("overrides, words", [
    (["rollout.async_steps=1"], "tis_cap 2.0"),
    (["rollout.async_steps=1", "algorithm.rollout_correction=sequence_mask"],
     "rollout correction sequence_mask [None, 3.0]"),
    (["rollout.async_steps=2", "algorithm.policy_loss=decoupled", "algorithm.rollout_correction_clip_max=5.0"],
     "decoupled loss, behaviour weights masked above 5.0"),
])
def test_start_up_words(overrides, words):
    from rl.config.off_policy import off_policy_correction
    assert off_policy_correction(load(*overrides).algorithm) == words
