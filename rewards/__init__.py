"""Rule-based rewards for R1-style GRPO: correct on messy answers, fast, and safe on adversarial output.

    >>> from rewards import get_reward, REWARDS, RewardScorer
    >>> REWARDS[:3]
    ['accuracy', 'format', 'tag_count']
    >>> get_reward("format")(["<think> 1+1=2 </think> <answer> 2 </answer>"])
    [1.0]

Every reward is a TRL-style function `fn(completions, **columns) -> list[float | None]` that can be handed to
`trl.GRPOTrainer(reward_funcs=[...])` unchanged; `RewardScorer` combines weighted rewards and runs the parsing ones in
worker processes with a per-item timeout. See docs/rewards.md.
"""
from rewards.code import execution as _code_execution  # noqa: F401  (registration, in REWARDS order)
from rewards.form import format as _format  # noqa: F401
from rewards.form import language as _language  # noqa: F401
from rewards.form import length as _length  # noqa: F401
from rewards.form import repetition as _repetition  # noqa: F401
from rewards.form import tools as _tools  # noqa: F401
from rewards.math import accuracy as _math_accuracy  # noqa: F401
from rewards.math import countdown as _countdown  # noqa: F401
from rewards.models import judge as _judge  # noqa: F401
from rewards.models import reward_model as _reward_model  # noqa: F401
from rewards.scoring.registry import REWARDS, Reward, get_reward, register_reward
from rewards.scoring.scorer import RewardError, RewardScorer, ScoreResult, validate_reward_spec

# Registry order = documentation order, whatever the import order above.
_ORDER = ["accuracy", "format", "tag_count", "reasoning_steps", "cosine", "repetition", "soft_overlong", "countdown",
          "code", "language_consistency", "boxed_format"]
REWARDS.sort(key=lambda n: _ORDER.index(n) if n in _ORDER else len(_ORDER))

__all__ = ["REWARDS", "Reward", "RewardError", "RewardScorer", "ScoreResult", "get_reward", "register_reward", "validate_reward_spec"]
