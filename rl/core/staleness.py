"""Bounded staleness (pure): which groups are too old to train on, and the staleness metrics of a batch.

A group's staleness is the number of optimizer updates between the weights that sampled it (its policy version)
and the weights that train on it (the learner's version): staleness = learner_version - group_version. With
`rollout.max_staleness` k, groups whose staleness exceeds k are dropped (rl/rollout/episodes/async_rollouts.py
regenerates them with the newest weights, staleness 0, so the batch keeps its size).

Example: versions [3, 1, 2], learner version 4, k = 2 -> staleness [1, 3, 2] -> group 1 is stale.
"""
from __future__ import annotations


def stale_groups(versions: list[int], learner_version: int, max_staleness: int | None) -> list[int]:
    """Indices of the groups whose staleness (learner_version - version) exceeds max_staleness (None: no bound).

    Example: stale_groups([3, 1, 2], 4, 2) -> [1]; stale_groups([3, 1, 2], 4, None) -> [];
    stale_groups([4, 4], 4, 0) -> [] (k = 0 admits only the learner's own version)."""
    if max_staleness is None:
        return []
    if max_staleness < 0:
        raise ValueError(f"max_staleness={max_staleness} must be >= 0")
    return [i for i, v in enumerate(versions) if learner_version - v > max_staleness]


def staleness_metrics(versions: list[int], learner_version: int, sizes: list[int] | None = None) -> dict[str, float]:
    """Staleness and version statistics over samples: group i counts sizes[i] times (its completions; default 1).

    Example: versions [3, 1], sizes [2, 2], learner 4 -> staleness per sample [1, 1, 3, 3]:
    {rollout/staleness_mean: 2.0, rollout/staleness_max: 3.0, rollout/version_mean: 2.0, rollout/version_max: 3.0}.
    """
    if not versions:
        raise ValueError("staleness of an empty batch")
    sizes = [1] * len(versions) if sizes is None else sizes
    if len(sizes) != len(versions):
        raise ValueError(f"{len(versions)} versions, {len(sizes)} group sizes")
    n = sum(sizes)
    return {"rollout/staleness_mean": sum((learner_version - v) * s for v, s in zip(versions, sizes)) / n,
            "rollout/staleness_max": float(max(learner_version - v for v in versions)),
            "rollout/version_mean": sum(v * s for v, s in zip(versions, sizes)) / n,
            "rollout/version_max": float(max(versions))}
