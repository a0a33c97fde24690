"""Rollout/learner logprob mismatch: truncated importance-sampling weights and agreement metrics. Pure torch.

The engine samples with its own kernels (vLLM: other matmul order, maybe bf16, stale weights in async setups), so its
sampling logprobs differ slightly from the learner's recomputation. Truncated importance sampling (TIS) corrects the
policy gradient by w = min(exp(learner - sampling), cap) per token (token-level, as in "Your efficient RL framework
secretly brings you off-policy RL training", Yao et al. 2025, and TRL's `vllm_importance_sampling_cap`).

The learner applies `algorithm.tis_cap` through rl/core/rollout_correction.py's `token_truncate` (the same weights,
bit for bit: tests/core/test_rollout_correction.py); this function stays as that reference and for its metrics.
"""
from __future__ import annotations

import torch


def truncated_is_weights(learner_logprobs: torch.Tensor, sampling_logprobs: torch.Tensor, mask: torch.Tensor,
                         cap: float = 2.0) -> tuple[torch.Tensor, dict[str, float]]:
    """Per-token truncated importance weights and mismatch metrics.

    learner_logprobs, sampling_logprobs: [N, C] log-probabilities of the sampled tokens (learner recomputation, engine).
    mask: [N, C], 1 on completion tokens that count, 0 on padding. cap: upper bound of the weights (> 0).

    Returns (weights [N, C], metrics). weights = min(exp(learner - sampling), cap) on masked tokens, 0 on padding;
    computed without gradient (they are constants in the loss). Metrics (over masked tokens; 0 when there are none):
      rollout/logprob_diff_max   max |learner - sampling|
      rollout/logprob_diff_mean  mean |learner - sampling|
      rollout/is_weight_mean     mean of the truncated weights
      rollout/is_clip_frac       fraction of tokens whose raw ratio exceeded the cap
    """
    if learner_logprobs.shape != sampling_logprobs.shape or learner_logprobs.shape != mask.shape:
        raise ValueError(f"shape mismatch: learner {tuple(learner_logprobs.shape)}, sampling "
                         f"{tuple(sampling_logprobs.shape)}, mask {tuple(mask.shape)}")
    if cap <= 0:
        raise ValueError(f"cap must be > 0, got {cap}")
    with torch.no_grad():
        m = mask.to(torch.bool)
        diff = (learner_logprobs.detach().float() - sampling_logprobs.detach().float()).masked_fill(~m, 0.0)
        ratio = torch.exp(diff)
        weights = torch.clamp(ratio, max=cap).masked_fill(~m, 0.0)
        n = int(m.sum())
        if n == 0:
            metrics = {"rollout/logprob_diff_max": 0.0, "rollout/logprob_diff_mean": 0.0,
                       "rollout/is_weight_mean": 0.0, "rollout/is_clip_frac": 0.0}
        else:
            absd = diff.abs()[m]
            metrics = {
                "rollout/logprob_diff_max": float(absd.max()),
                "rollout/logprob_diff_mean": float(absd.mean()),
                "rollout/is_weight_mean": float(weights[m].mean()),
                "rollout/is_clip_frac": float((ratio[m] > cap).float().mean()),
            }
    return weights.to(learner_logprobs.dtype), metrics
