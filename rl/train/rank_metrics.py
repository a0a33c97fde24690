"""One value per metric for the run from every rank's per-step metrics, whichever keys each rank produced.

`reduce_metrics` is the rule (pure: the collectives are arguments, so tests can play the ranks); `metrics_over_ranks`
runs it over the default process group. rl/grpo.py calls it once per step on every rank.
"""
from __future__ import annotations

from typing import Callable

import torch

SUMMED_METRICS = frozenset({"rollout/prompts_truncated"})  # counts: the run's is the sum over ranks


def reduce_metrics(metrics: dict[str, float], gather_keys: Callable[[list[str]], list[list[str]]],
                   all_reduce: Callable[[list[float], str], list[float]]) -> dict:
    """Per-rank scalar metrics -> the run's, whichever keys each rank produced (a reward's `rewards/<name>/<counter>`
    keys appear only on ranks whose rows fed its counters). The key set is agreed first: `gather_keys(sorted keys)`
    returns every rank's list (an object all-gather), their union fixes the order of every value sent. Then one
    `all_reduce(values, "sum")` of [value or 0 per key] + [1 if logged else 0 per key] gives each key's mean over
    the ranks that logged it (`SUMMED_METRICS`: the sum), and one `all_reduce(values, "max")` (absent: -inf) the
    maximum for keys ending in `_max` (an average of per-rank maxima hides the worst rank). Every rank makes the same
    calls with equally long lists. Returns this rank's keys in their order, then the keys only others logged.

        rank 0 {"loss": 1, "rewards/code/pass_rate": 0.5}, rank 1 {"loss": 3}
        -> sum call: rank 0 [1, 0.5, 1, 1] + rank 1 [3, 0, 1, 0] = [4, 0.5, 2, 1]
        -> {"loss": 4 / 2 = 2.0, "rewards/code/pass_rate": 0.5 / 1 = 0.5} on both ranks
    """
    keys = sorted(set().union(*map(set, gather_keys(sorted(metrics)))))
    out = {}
    means = [k for k in keys if not k.endswith("_max")]
    if means:
        got = all_reduce([float(metrics.get(k, 0.0)) for k in means] + [float(k in metrics) for k in means], "sum")
        for k, total, count in zip(means, got[:len(means)], got[len(means):]):
            out[k] = total if k in SUMMED_METRICS else total / count  # count >= 1: some rank logged k
    maxes = [k for k in keys if k.endswith("_max")]
    if maxes:
        out.update(zip(maxes, all_reduce([float(metrics.get(k, float("-inf"))) for k in maxes], "max")))
    return {k: out[k] for k in [*metrics, *(k for k in keys if k not in metrics)]}


def metrics_over_ranks(metrics: dict[str, float], device) -> dict:
    """`reduce_metrics` over the default process group (collective: every rank calls it once per step)."""
    def gather_keys(keys: list[str]) -> list[list[str]]:
        every: list = [None] * torch.distributed.get_world_size()
        torch.distributed.all_gather_object(every, keys)
        return every

    def all_reduce(values: list[float], op: str) -> list[float]:
        t = torch.tensor(values, dtype=torch.float64, device=device)
        torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.MAX if op == "max" else
                                     torch.distributed.ReduceOp.SUM)
        return t.tolist()
    return reduce_metrics(metrics, gather_keys, all_reduce)
