"""Rewards chosen per row: a row's task (its `task` column, verl's `data_source`) names the set of rewards that score
it; a reward outside that set returns None for the row ("does not apply"), never 0.

A recipe lists every reward once under `rewards:` (weights, parameters) and maps each task to the names that score it:

    rewards:     {accuracy: 1.0, format: 0.5, reward_model: {weight: 1.0, model: ...}}
    reward_sets: {arithmetic: [accuracy, format], general: [reward_model]}

    >>> sets = check_reward_sets({"arithmetic": ["accuracy", "format"], "general": ["reward_model"]},
    ...                          ["accuracy", "format", "reward_model"])
    >>> plan_rows(["arithmetic", "general", "arithmetic"], sets)
    [('arithmetic', [0, 2], ['accuracy', 'format']), ('general', [1], ['reward_model'])]
    >>> applies(plan_rows(["arithmetic", "general", "arithmetic"], sets), ["accuracy", "reward_model"], 3)
    {'accuracy': [True, False, True], 'reward_model': [False, True, False]}

Pure functions: nothing here loads a model or starts a process.
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

TASK_COLUMN = "task"  # the column whose value names a row's reward set


def check_reward_sets(sets: Any, names: Sequence[str]) -> dict[str, list[str]]:
    """The recipe's `reward_sets` as {task: [reward names]}, or a one-line ValueError naming the problem: not a
    mapping, an empty set, a name that is not in `rewards:` (`names`), a reward in no set (a typo would otherwise
    silently never score), or a task named like a reward (their metrics `rewards/<task>/...` and
    `rewards/<name>/...` would collide).

    >>> check_reward_sets({"math": ["accuracy"]}, ["accuracy", "format"])
    Traceback (most recent call last):
    ValueError: reward_sets: reward 'format' is in rewards but in no reward set (sets: math)
    >>> check_reward_sets({"math": ["acuracy"]}, ["accuracy"])
    Traceback (most recent call last):
    ValueError: reward_sets.math: unknown reward 'acuracy'; the recipe's rewards: accuracy
    """
    if not isinstance(sets, Mapping) or not sets:
        raise ValueError(f"reward_sets: expected a non-empty mapping {{task: [reward names]}}, got {sets!r}")
    out: dict[str, list[str]] = {}
    for task, members in sets.items():
        if not isinstance(task, str) or not task or "/" in task:
            raise ValueError(f"reward_sets: task names must be non-empty strings without '/', got {task!r}")
        if task in names:
            raise ValueError(f"reward_sets: task {task!r} has the name of a reward (their metrics would collide)")
        if isinstance(members, str) or not isinstance(members, Sequence) or not members:
            raise ValueError(f"reward_sets.{task}: expected a non-empty list of reward names, got {members!r}")
        for m in members:
            if m not in names:
                raise ValueError(f"reward_sets.{task}: unknown reward {m!r}; the recipe's rewards: "
                                 f"{', '.join(names)}")
        if len(set(members)) != len(members):
            raise ValueError(f"reward_sets.{task}: a reward is listed twice in {list(members)!r}")
        out[task] = list(members)
    for name in names:
        if not any(name in m for m in out.values()):
            raise ValueError(f"reward_sets: reward {name!r} is in rewards but in no reward set (sets: "
                             f"{', '.join(out)})")
    return out


def check_row_tasks(tasks: Sequence[Any], sets: Mapping[str, list[str]], where: str = "row") -> None:
    """One-line ValueError for the first row whose task has no reward set (missing column: None).

    >>> check_row_tasks(["math", "chat"], {"math": ["accuracy"]})
    Traceback (most recent call last):
    ValueError: row 1: task 'chat' has no reward set (reward_sets: math)
    """
    for i, task in enumerate(tasks):
        if not isinstance(task, str) or task not in sets:
            what = f"task {task!r} has no reward set" if task is not None else f"no {TASK_COLUMN!r} column"
            raise ValueError(f"{where} {i}: {what} (reward_sets: {', '.join(sets)})")


def plan_rows(tasks: Sequence[Any], sets: Mapping[str, list[str]]) -> list[tuple[str, list[int], list[str]]]:
    """[(task, row indices, reward names)] in the order tasks first appear; every row in exactly one entry.
    ValueError (check_row_tasks) for a row without a known task."""
    check_row_tasks(tasks, sets)
    rows: dict[str, list[int]] = {}
    for i, task in enumerate(tasks):
        rows.setdefault(task, []).append(i)
    return [(task, idx, list(sets[task])) for task, idx in rows.items()]


def applies(plan: list[tuple[str, list[int], list[str]]], names: Sequence[str], n: int) -> dict[str, list[bool]]:
    """{reward: [whether it scores row i]} for n rows (see the module example)."""
    out = {name: [False] * n for name in names}
    for _, idx, members in plan:
        for name in members:
            if name in out:
                for i in idx:
                    out[name][i] = True
    return out


def subset_columns(columns: Mapping[str, Any], idx: list[int], n: int) -> dict[str, Any]:
    """The columns of rows `idx`: per-row lists (length n) are indexed, other entries (objects) pass as they are.

    >>> subset_columns({"answer": ["1", "2", "3"], "state": "obj"}, [2, 0], 3)
    {'answer': ['3', '1'], 'state': 'obj'}
    """
    return {k: [v[i] for i in idx] if isinstance(v, (list, tuple)) and len(v) == n else v for k, v in columns.items()}


def task_metrics(plan: list[tuple[str, list[int], list[str]]], per_reward: Mapping[str, list[float | None]],
                 totals: list[float]) -> dict[str, float]:
    """Per task: `rewards/<task>/<name>` (mean of the task's non-None values; nan when all are None),
    `reward/<task>/mean` (mean weighted total) and `task/<task>/frac` (share of the batch's rows).

    >>> plan = [("math", [0, 2], ["accuracy"]), ("chat", [1], ["rm"])]
    >>> m = task_metrics(plan, {"accuracy": [1.0, None, 0.0], "rm": [None, 0.5, None]}, [1.0, 0.25, 0.0])
    >>> m["rewards/math/accuracy"], m["rewards/chat/rm"], m["reward/chat/mean"], m["task/math/frac"]
    (0.5, 0.5, 0.25, 0.6666666666666666)
    """
    n = len(totals)
    out: dict[str, float] = {}
    for task, idx, members in plan:
        for name in members:
            vals = [per_reward[name][i] for i in idx if per_reward[name][i] is not None]
            out[f"rewards/{task}/{name}"] = sum(vals) / len(vals) if vals else float("nan")
        out[f"reward/{task}/mean"] = sum(totals[i] for i in idx) / len(idx)
        out[f"task/{task}/frac"] = len(idx) / n
    return out
