"""Rollout correction (pure): importance weights for the gap between the policy that sampled a completion (the
engine's behaviour policy: other kernels, other precision, or weights some versions stale) and the learner's policy.

Per counted token t of sequence i (mask m_it), with the learner's logprobs l (the old / proximal logprobs: the
learner's own recomputation before the update) and the engine's sampling logprobs s:

    token ratio     rho_it = exp(l_it - s_it)
    sequence ratio  R_i    = exp(sum_t m_it (l_it - s_it))        (a product of token ratios: TRL sums, not means)

Variants, chosen once by `algorithm.rollout_correction` (registry CORRECTIONS; the first four are TRL GRPOConfig's
`vllm_importance_sampling_mode` values, with the same bounds `clip_min` / `clip_max`, TRL's
`vllm_importance_sampling_clip_min` / `_clip_max`, defaults None / 3.0, TRL's default mode being sequence_mask):

    token_truncate     w_it = clamp(rho_it, clip_min, clip_max)                (TIS; `algorithm.tis_cap` is this)
    token_mask         w_it = rho_it if clip_min <= rho_it <= clip_max else 0
    sequence_truncate  w_it = clamp(R_i, clip_min, clip_max)                   (the same weight on every token of i)
    sequence_mask      w_it = R_i if clip_min <= R_i <= clip_max else 0        (the whole sequence leaves the loss)
    icepop             w_it = rho_it if 1/k <= rho_it <= k else 0,  k = clip_max (IcePop, Ling team 2025: tokens
                       whose engine and trainer disagree by more than a factor k get no gradient; with clip_min set
                       the band is [clip_min, clip_max], the paper's [0.5, 5])

A missing bound (None) is no bound. Weights are constants (no gradient) multiplying each token's loss; 0 on padding.

Worked example (token_mask, clip_max 3): l - s = [0.5, 1.5] -> rho = [1.6487, 4.4817] -> w = [1.6487, 0]: one of
two tokens masked. sequence_mask, same row: R = exp(2.0) = 7.389 > 3 -> w = [0, 0], both tokens masked.
"""
from __future__ import annotations

from typing import Callable

import torch

from rl.core.registry import Registry

Correction = Callable[..., tuple[torch.Tensor, torch.Tensor, torch.Tensor]]
# Entries: fn(learner_logprobs [N, C], sampling_logprobs [N, C], mask [N, C], clip_min, clip_max)
# -> (weights [N, C], masked [N, C] bool, truncated [N, C] bool), all zero / False on padding.
CORRECTIONS: Registry = Registry("rollout correction")
register_correction = CORRECTIONS.register
get_correction = CORRECTIONS.choose


def _check(learner_logprobs, sampling_logprobs, mask, clip_min, clip_max):
    if learner_logprobs.shape != sampling_logprobs.shape or learner_logprobs.shape != mask.shape:
        raise ValueError(f"shape mismatch: learner {tuple(learner_logprobs.shape)}, sampling "
                         f"{tuple(sampling_logprobs.shape)}, mask {tuple(mask.shape)}")
    if (clip_min is not None and clip_min < 0) or (clip_max is not None and clip_max <= 0) or (
            clip_min is not None and clip_max is not None and clip_min >= clip_max):
        raise ValueError(f"rollout correction bounds clip_min={clip_min}, clip_max={clip_max}: need "
                         f"0 <= clip_min < clip_max")


def _log_ratios(learner_logprobs, sampling_logprobs, mask, sequence: bool):
    """(log ratio [N, C] or [N, 1], counted [N, C] bool), padding's log ratio 0."""
    m = mask.to(torch.bool)
    diff = (learner_logprobs.detach().float() - sampling_logprobs.detach().float()).masked_fill(~m, 0.0)  # [N, C]
    return (diff.sum(-1, keepdim=True) if sequence else diff), m


def _weights(learner_logprobs, sampling_logprobs, mask, clip_min, clip_max, sequence: bool, truncate: bool):
    """The four TRL modes in one: ratios per token or per sequence, then clamped into [clip_min, clip_max]
    (`truncate`) or zeroed outside it (mask). -> (weights [N, C], masked [N, C], truncated [N, C])."""
    _check(learner_logprobs, sampling_logprobs, mask, clip_min, clip_max)
    if clip_min is None and clip_max is None:
        raise ValueError(f"a {'truncating' if truncate else 'masking'} rollout correction needs clip_max "
                         f"(or clip_min)")
    with torch.no_grad():
        log_ratio, m = _log_ratios(learner_logprobs, sampling_logprobs, mask, sequence)
        ratio = torch.exp(log_ratio)  # [N, C] or [N, 1]
        none = torch.zeros_like(m)
        if truncate:
            weights = torch.clamp(ratio, min=clip_min, max=clip_max)
            truncated = (weights != ratio).expand(m.shape) & m
            return weights.expand(m.shape).masked_fill(~m, 0.0).to(learner_logprobs.dtype), none, truncated
        outside = torch.zeros_like(ratio, dtype=torch.bool)
        if clip_min is not None:
            outside |= ratio < clip_min
        if clip_max is not None:
            outside |= ratio > clip_max
        masked = outside.expand(m.shape) & m
        weights = ratio.expand(m.shape).masked_fill(masked | ~m, 0.0)  # [N, C]
    return weights.to(learner_logprobs.dtype), masked, none


@register_correction("token_truncate")
def token_truncate(learner_logprobs: torch.Tensor, sampling_logprobs: torch.Tensor, mask: torch.Tensor,
                   clip_min: float | None = None, clip_max: float | None = 3.0):
    """w = clamp(exp(l - s), clip_min, clip_max) per token. [N, C] x3 -> (weights, masked, truncated) [N, C].
    Example: l - s = [1.5, -0.2], clip_max 3 -> w = [3.0, 0.8187], truncated [True, False]."""
    return _weights(learner_logprobs, sampling_logprobs, mask, clip_min, clip_max, sequence=False, truncate=True)


@register_correction("token_mask")
def token_mask(learner_logprobs: torch.Tensor, sampling_logprobs: torch.Tensor, mask: torch.Tensor,
               clip_min: float | None = None, clip_max: float | None = 3.0):
    """w = exp(l - s) per token, 0 where it leaves [clip_min, clip_max]. Example: l - s = [1.5, -0.2], clip_max 3
    -> w = [0, 0.8187], masked [True, False]."""
    return _weights(learner_logprobs, sampling_logprobs, mask, clip_min, clip_max, sequence=False, truncate=False)


@register_correction("sequence_truncate")
def sequence_truncate(learner_logprobs: torch.Tensor, sampling_logprobs: torch.Tensor, mask: torch.Tensor,
                      clip_min: float | None = None, clip_max: float | None = 3.0):
    """w_i = clamp(exp(sum_t (l - s)), clip_min, clip_max) on every counted token of row i. Example: l - s =
    [1.5, -0.2] -> R = exp(1.3) = 3.669, clip_max 3 -> w = [3.0, 3.0], both truncated."""
    return _weights(learner_logprobs, sampling_logprobs, mask, clip_min, clip_max, sequence=True, truncate=True)


@register_correction("sequence_mask")
def sequence_mask(learner_logprobs: torch.Tensor, sampling_logprobs: torch.Tensor, mask: torch.Tensor,
                  clip_min: float | None = None, clip_max: float | None = 3.0):
    """w_i = exp(sum_t (l - s)) on every counted token of row i, 0 on the whole row when it leaves the bounds.
    Example: l - s = [0.5, -0.2] -> R = exp(0.3) = 1.3499 on both; [1.5, -0.2] -> R = 3.669 > 3 -> [0, 0]."""
    return _weights(learner_logprobs, sampling_logprobs, mask, clip_min, clip_max, sequence=True, truncate=False)


@register_correction("icepop")
def icepop(learner_logprobs: torch.Tensor, sampling_logprobs: torch.Tensor, mask: torch.Tensor,
           clip_min: float | None = None, clip_max: float | None = 3.0):
    """Token mask on the band [1/k, k] with k = clip_max (or [clip_min, clip_max] when clip_min is given).
    Example: k = 2, l - s = [0.5, -0.8, 0.1] -> rho = [1.6487, 0.4493, 1.1052] -> w = [1.6487, 0, 1.1052]
    (0.4493 < 1/2)."""
    if clip_max is None:
        raise ValueError("icepop needs clip_max (the band is [1/clip_max, clip_max])")
    low = 1.0 / clip_max if clip_min is None else clip_min
    return _weights(learner_logprobs, sampling_logprobs, mask, low, clip_max, sequence=False, truncate=False)


def correction_sums(weights: torch.Tensor, masked: torch.Tensor, truncated: torch.Tensor,
                    mask: torch.Tensor) -> dict[str, torch.Tensor]:
    """Detached sums over counted tokens, to add up over micro-batches and divide by the step's token count:
    is_weight (sum of weights), is_masked (tokens masked), is_truncated (tokens whose weight was clipped).
    [N, C] x4 -> 0-dim tensors. Example: weights [[1.5, 0]], masked [[F, T]], truncated [[F, F]], mask [[1, 1]]
    -> {is_weight: 1.5, is_masked: 1, is_truncated: 0} (reported as mean 0.75, masked share 0.5)."""
    m = mask.to(weights.dtype)
    return {"is_weight": (weights.detach() * m).sum(), "is_masked": (masked.to(m.dtype) * m).sum(),
            "is_truncated": (truncated.to(m.dtype) * m).sum()}
