"""Recipe checks of off-policy training: asynchronous rollouts (`rollout.async_steps`), bounded staleness
(`rollout.max_staleness`), and how the learner corrects for the behaviour policy (`algorithm.tis_cap`,
`algorithm.rollout_correction` with its bounds, the `decoupled` policy loss). Filled-in defaults are written back,
so config.yaml records what ran:

    max_staleness k, async_steps 0      -> async_steps = k (generate up to k batches ahead; k = 0: synchronous)
    stream true                         -> needs async_steps >= 1 and vLLM colocated (hf, server: refused)
    async_steps > 0, no correction set  -> tis_cap = 2.0 (token-level truncated IS, as before 2026-12-06)
    policy_loss decoupled               -> its own behaviour weights: no tis_cap, no rollout_correction
"""
from __future__ import annotations

from rl.config.recipe import ConfigError


def check_off_policy(r, a) -> None:
    """r: RolloutConfig, a: AlgorithmConfig (modified in place: the defaults above). One-line ConfigError."""
    from rl.core.rollout_correction import CORRECTIONS
    if r.async_steps < 0 or r.worker_threads < 0:
        raise ConfigError(f"rollout.async_steps={r.async_steps} / worker_threads={r.worker_threads} must be >= 0")
    if r.max_staleness is not None:
        if r.max_staleness < 0:
            raise ConfigError(f"rollout.max_staleness={r.max_staleness} must be >= 0 (policy versions), or null")
        if r.async_steps == 0:
            r.async_steps = r.max_staleness
    if r.stream:
        if r.async_steps < 1:
            raise ConfigError("rollout.stream=true streams groups from a rollout worker ahead of the learner: it needs "
                              "rollout.async_steps >= 1 (or rollout.max_staleness >= 1)")
        if r.engine == "hf":
            raise ConfigError("rollout.stream=true: the transformers engine (rollout.engine=hf) cannot stream "
                              "(no continuous batching, no weights between decode steps); use rollout.engine=vllm")
        if r.engine == "vllm" and r.vllm_mode != "colocate":
            raise ConfigError(f"rollout.stream=true: vLLM {r.vllm_mode} mode cannot stream (a server's weights "
                              f"change only between requests here); use rollout.vllm_mode=colocate")
    lo, hi = a.rollout_correction_clip_min, a.rollout_correction_clip_max
    if a.rollout_correction is not None:
        if a.rollout_correction not in CORRECTIONS:
            raise ConfigError(f"algorithm.rollout_correction={a.rollout_correction!r} is not one of: "
                              f"{', '.join(CORRECTIONS)} (or null)")
        if a.tis_cap is not None:
            raise ConfigError(f"algorithm.tis_cap={a.tis_cap} and algorithm.rollout_correction="
                              f"{a.rollout_correction}: set one (tis_cap c is rollout_correction=token_truncate with "
                              f"rollout_correction_clip_max=c)")
        if hi is None and (lo is None or a.rollout_correction == "icepop"):
            raise ConfigError(f"algorithm.rollout_correction={a.rollout_correction} needs "
                              f"rollout_correction_clip_max{'' if a.rollout_correction == 'icepop' else ' or _clip_min'}")
    if (lo is not None and lo < 0) or (hi is not None and hi <= 0) or (lo is not None and hi is not None and lo >= hi):
        raise ConfigError(f"algorithm.rollout_correction_clip_min={lo} / _clip_max={hi}: need 0 <= min < max")
    if a.policy_loss == "decoupled":
        if a.rollout_correction is not None or a.tis_cap is not None:
            raise ConfigError("algorithm.policy_loss=decoupled weighs tokens by its own behaviour weights (masked "
                              "above rollout_correction_clip_max): leave tis_cap and rollout_correction unset")
    if r.async_steps > 0:
        if a.dynamic_sampling:
            raise ConfigError("algorithm.dynamic_sampling needs a batch's rewards before drawing more prompts: "
                              "it cannot run with rollout.async_steps > 0")
        if a.tis_cap is None and a.rollout_correction is None and a.policy_loss != "decoupled":
            a.tis_cap = 2.0  # off-policy correction is not optional when the behaviour policy is stale
    if a.tis_cap is not None and a.tis_cap <= 0:
        raise ConfigError(f"algorithm.tis_cap={a.tis_cap} must be > 0")


def off_policy_correction(a) -> str:
    """How the learner corrects for the behaviour policy, in words for the start-up line. Example: tis_cap 2.0 ->
    'tis_cap 2.0'; rollout_correction sequence_mask, clip_max 3.0 -> 'rollout correction sequence_mask [None, 3.0]'."""
    if a.policy_loss == "decoupled":
        return f"decoupled loss, behaviour weights masked above {a.rollout_correction_clip_max}"
    if a.rollout_correction is not None:
        return (f"rollout correction {a.rollout_correction} [{a.rollout_correction_clip_min}, "
                f"{a.rollout_correction_clip_max}]")
    return f"tis_cap {a.tis_cap}"
