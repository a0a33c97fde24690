"""Learning-rate schedules as pure functions of the step: the factor that multiplies the peak learning rate.

One registry serves GRPO (a LambdaLR stepped once per optimizer step, rl/train/learner.py) and SFT (the same
LambdaLR handed to TRL's SFTTrainer, rl/sft.py), so `train.lr_scheduler=step` means the same in both stages.

With W warmup steps and T total optimizer steps, step s (0-based, the step about to be taken):

    warmup (every schedule): s < W -> (s + 1) / (W + 1)          (never 0: the first update is not wasted)
    then p = (s - W) / (T - W) in [0, 1), the fraction of the post-warmup run done, and:
      constant : 1
      linear   : 1 - p
      cosine   : (1 + cos(pi p)) / 2
      step     : the value of the last milestone passed: milestones [0.8, 0.9], values [0.316, 0.1] give 1 until
                 p = 0.8, then 0.316, then 0.1 from p = 0.9 (DeepSeek LLM's multi-step schedule; DeepSeek-V3 steps
                 2.2e-4 down to 2.2e-5 in the same way)
      wsd      : warmup-stable-decay: 1 until the last `decay_fraction` of the run, then linear to `min_ratio`

Worked example, T = 10, W = 0, step with milestones [0.5] and values [0.1]: factors 1, 1, 1, 1, 1, 0.1, 0.1, ...;
wsd with decay_fraction 0.2, min_ratio 0: 1 for s = 0..7, then p = 0.8 -> 1, p = 0.9 -> 0.5 (halfway down).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

from rl.core.registry import Registry


@dataclass(frozen=True)
class ScheduleParams:
    """The knobs of the schedules that have any (recipe keys `train.lr_*`)."""
    milestones: tuple[float, ...] = (0.8, 0.9)  # step: fractions of the post-warmup run
    values: tuple[float, ...] = (0.316, 0.1)  # step: factor of the peak LR from each milestone on
    decay_fraction: float = 0.1  # wsd: the last fraction of the run that decays
    min_ratio: float = 0.0  # wsd: the factor reached at the end

    def check(self) -> None:
        """ValueError naming the problem (the recipe turns it into a one-line ConfigError)."""
        if len(self.milestones) != len(self.values):
            raise ValueError(f"lr_step_milestones {list(self.milestones)} and lr_step_values {list(self.values)} "
                             f"must have the same length")
        if list(self.milestones) != sorted(self.milestones) or any(not 0 < m < 1 for m in self.milestones):
            raise ValueError(f"lr_step_milestones {list(self.milestones)} must be increasing fractions in (0, 1)")
        if not 0 < self.decay_fraction <= 1 or not 0 <= self.min_ratio <= 1:
            raise ValueError(f"lr_decay_fraction={self.decay_fraction} must be in (0, 1], lr_min_ratio="
                             f"{self.min_ratio} in [0, 1]")


Shape = Callable[[float, ScheduleParams], float]  # p in [0, 1] -> factor
SCHEDULES: Registry = Registry("lr_scheduler")
register_schedule = SCHEDULES.register


@register_schedule("constant")
def _constant(p: float, params: ScheduleParams) -> float:
    return 1.0


@register_schedule("linear")
def _linear(p: float, params: ScheduleParams) -> float:
    return max(0.0, 1.0 - p)


@register_schedule("cosine")
def _cosine(p: float, params: ScheduleParams) -> float:
    return 0.5 * (1.0 + math.cos(math.pi * min(p, 1.0)))


@register_schedule("step")
def _step(p: float, params: ScheduleParams) -> float:
    factor = 1.0
    for milestone, value in zip(params.milestones, params.values):
        if p >= milestone - 1e-12:  # float-safe: p = 8/10 passes the milestone 0.8
            factor = value
    return factor


@register_schedule("wsd")
def _wsd(p: float, params: ScheduleParams) -> float:
    start = 1.0 - params.decay_fraction
    if p < start:
        return 1.0
    return 1.0 - (1.0 - params.min_ratio) * min(1.0, (p - start) / params.decay_fraction)


def lr_factor_fn(name: str, warmup_steps: int, total_steps: int,
                 params: ScheduleParams = ScheduleParams()) -> Callable[[int], float]:
    """step -> factor of the peak learning rate (for torch.optim.lr_scheduler.LambdaLR)."""
    shape = SCHEDULES.choose(name)
    params.check()

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / (warmup_steps + 1)
        return shape((step - warmup_steps) / max(1, total_steps - warmup_steps), params)
    return factor
