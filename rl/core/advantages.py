"""Group-relative advantages (pure). Registered by name; the recipe's `algorithm.advantage` picks one at start-up.

For a prompt with G completions and rewards r_1..r_G (rows of a group are contiguous in the batch):

    group : A_i = (r_i - mean_group(r)) / (std_group(r) + eps)     GRPO (DeepSeekMath), TRL scale_rewards="group"
    batch : A_i = (r_i - mean_group(r)) / (std_batch(r) + eps)     TRL scale_rewards="batch" (std over all N rewards)
    none  : A_i =  r_i - mean_group(r)                             Dr. GRPO: no std division (removes difficulty bias)

std is the unbiased (Bessel-corrected) estimate, as in TRL and verl; eps = 1e-4 as in TRL.
A group whose rewards are all equal carries no signal and gets A = 0 exactly (never NaN). "Equal" has a tolerance:
rewards that are equal in exact arithmetic are not always equal in floats (a solved group with format weight 0.2
totals 1.2 everywhere, but the float32 mean of eight 1.2s is not 1.2: without the tolerance (r - mean) / (0 + eps)
gives A = +1.2e-3 for every sample). A group whose spread max - min is at most TOL * max(1, max |r|) counts as equal:
its advantages are exactly 0, it counts in `zero_std_frac`, and dynamic sampling drops it. The math runs in float64.

Worked example, G = 4, rewards [1, 0, 0, 1]: mean 0.5, std sqrt(((.5^2)*4)/3) = 0.57735
    group -> [0.5, -0.5, -0.5, 0.5] / 0.57745 = [0.8659, -0.8659, -0.8659, 0.8659]
    none  -> [0.5, -0.5, -0.5, 0.5]
"""
from __future__ import annotations

from typing import Callable

import torch

from rl.core.registry import Registry

EPS = 1e-4
TOL = 1e-6  # relative spread below which a group's rewards count as equal
AdvantageFn = Callable[[torch.Tensor, int], tuple[torch.Tensor, dict[str, float]]]
ADVANTAGE_ESTIMATORS: Registry = Registry("advantage estimator")
register_advantage = ADVANTAGE_ESTIMATORS.register
get_advantage_fn = ADVANTAGE_ESTIMATORS.choose


def _grouped(rewards: torch.Tensor, group_size: int) -> torch.Tensor:
    if rewards.ndim != 1 or rewards.numel() % group_size != 0:
        raise ValueError(f"rewards of shape {tuple(rewards.shape)} do not split into groups of {group_size}")
    if group_size < 2:
        raise ValueError("group-relative advantages need a group size of at least 2")
    return rewards.double().view(-1, group_size)  # [N/G, G]


def _equal_groups(grouped: torch.Tensor) -> torch.Tensor:
    """[N/G, G] -> [N/G] bool: the group's rewards are equal up to TOL (relative to their magnitude)."""
    spread = grouped.amax(dim=1) - grouped.amin(dim=1)  # [N/G]
    return spread <= TOL * grouped.abs().amax(dim=1).clamp(min=1.0)


def _centered(rewards: torch.Tensor, group_size: int) -> tuple[torch.Tensor, torch.Tensor, dict[str, float]]:
    grouped = _grouped(rewards, group_size)  # [N/G, G] float64
    equal = _equal_groups(grouped)  # [N/G]
    centered = (grouped - grouped.mean(dim=1, keepdim=True)).masked_fill(equal.unsqueeze(1), 0.0)  # [N/G, G]
    group_std = grouped.std(dim=1).masked_fill(equal, 0.0)  # [N/G]
    metrics = {"zero_std_frac": equal.double().mean().item(),
               "reward/std": rewards.double().std().item() if rewards.numel() > 1 else 0.0}
    return centered, group_std, metrics


@register_advantage("group")
def group_scaled(rewards: torch.Tensor, group_size: int) -> tuple[torch.Tensor, dict[str, float]]:
    """rewards [N] -> advantages [N], std per group."""
    centered, group_std, metrics = _centered(rewards, group_size)
    return (centered / (group_std.unsqueeze(1) + EPS)).reshape(-1).float(), metrics  # [N]


@register_advantage("batch")
def batch_scaled(rewards: torch.Tensor, group_size: int) -> tuple[torch.Tensor, dict[str, float]]:
    """rewards [N] -> advantages [N], std over the whole batch."""
    centered, _, metrics = _centered(rewards, group_size)
    return (centered / (rewards.double().std() + EPS)).reshape(-1).float(), metrics  # [N]


@register_advantage("none")
def unscaled(rewards: torch.Tensor, group_size: int) -> tuple[torch.Tensor, dict[str, float]]:
    """rewards [N] -> advantages [N], mean-centred only (Dr. GRPO)."""
    centered, _, metrics = _centered(rewards, group_size)
    return centered.reshape(-1).float(), metrics  # [N]


def informative_groups(rewards: torch.Tensor, group_size: int) -> torch.Tensor:
    """[N/G] bool: groups whose rewards are not all equal (DAPO dynamic sampling keeps only these)."""
    return ~_equal_groups(_grouped(rewards, group_size))
