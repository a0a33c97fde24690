"""Recipe checks of the rewards against the data, before any model loads: eval_rewards slots, the columns a
reward needs, and each row's task under per-row reward sets (rewards/scoring/routing.py)."""
from __future__ import annotations

from typing import Any

from rl.config.recipe import ConfigError


def check_eval_rewards(spec: Any) -> None:
    """eval_rewards: known slots, registered rewards (built later, in set_up: the code reward starts a sandbox)."""
    from rewards.scoring.registry import EVAL_SLOTS, resolve

    if not isinstance(spec, dict):
        raise ConfigError(f"eval_rewards: expected a mapping of {', '.join(EVAL_SLOTS)} to parameters, got {spec!r}")
    for slot, params in spec.items():
        if slot not in EVAL_SLOTS:
            raise ConfigError(f"eval_rewards: unknown slot {slot!r}; valid: {', '.join(EVAL_SLOTS)}")
        if params is not None and not isinstance(params, dict):
            raise ConfigError(f"eval_rewards.{slot}: expected a mapping of parameters (or {{reward: NAME}}), "
                              f"got {params!r}")
        try:
            resolve((params or {}).get("reward", slot))
        except ValueError as e:
            raise ConfigError(f"eval_rewards.{slot}: {e}") from None


def check_reward_columns(spec: dict, example: dict) -> None:
    """One-line ConfigError at start-up when a reward needs a column the data (after data.columns) do not have,
    instead of a ValueError at the first step, after the models loaded."""
    from rewards import get_reward
    from rewards.scoring.scorer import missing_columns

    available = {**example, "prompts": None, "completion_length": None}
    for name, value in spec.items():
        params = {k: v for k, v in value.items() if k != "weight"} if isinstance(value, dict) else {}
        missing = missing_columns(get_reward(name, **params).requires, available)
        if missing:
            raise ConfigError(f"reward {name!r} needs the column(s) {', '.join(missing)}, which the training data do "
                              f"not have (columns kept: {', '.join(sorted(example))}; data.columns selects them)")


def check_reward_rows(reward_sets: dict | None, rows: list[dict], where: str) -> None:
    """With per-row reward sets: one-line ConfigError for the first row (of `where`: "training data", "test data")
    whose `task` has no reward set, before any model loads. Nothing to check without reward sets."""
    if reward_sets is None or not rows:
        return
    from rewards.scoring.routing import TASK_COLUMN, check_row_tasks
    try:
        check_row_tasks([row.get(TASK_COLUMN) for row in rows], reward_sets, where=f"{where}: row")
    except ValueError as e:
        raise ConfigError(str(e)) from None



def reward_specs_by_row(rewards: dict, reward_sets: dict | None, rows: list[dict]) -> list[tuple[dict, dict]]:
    """[(the rewards that score a row, that row)]: one pair per task (its first row) under reward sets, else the
    whole spec with the first row; what check_reward_columns checks.

    >>> reward_specs_by_row({"accuracy": 1.0, "rm": 1.0}, {"math": ["accuracy"], "chat": ["rm"]},
    ...                     [{"task": "math"}, {"task": "chat"}, {"task": "math"}])
    [({'accuracy': 1.0}, {'task': 'math'}), ({'rm': 1.0}, {'task': 'chat'})]
    """
    if reward_sets is None:
        return [(rewards, rows[0])]
    first: dict[str, dict] = {}
    for row in rows:
        first.setdefault(row.get("task"), row)
    return [({name: rewards[name] for name in reward_sets[task]}, row) for task, row in first.items()]


def with_model_paths(rewards: dict, resolve) -> dict:
    """The `rewards:` spec with each reward's `model` parameter (a reward model) passed through `resolve` (the
    stages' model sources: a tiny name such as `tiny-rm` becomes its cached directory; a path or hub name stays).

    >>> with_model_paths({"accuracy": 1.0, "reward_model": {"weight": 0.5, "model": "tiny-rm"}}, str.upper)
    {'accuracy': 1.0, 'reward_model': {'weight': 0.5, 'model': 'TINY-RM'}}
    """
    return {name: {**value, "model": resolve(value["model"])}
            if isinstance(value, dict) and isinstance(value.get("model"), str) else value
            for name, value in rewards.items()}
