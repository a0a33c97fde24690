"""Pure helpers of the model-based rewards: which part of a completion a reward model reads, per-batch
normalisation, and the reward-hacking watch (correlation of the score with completion length). No torch.

    >>> scored_part("<think> 2+2 is 4 </think> It is 4, thanks!", "after_think")
    ' It is 4, thanks!'
    >>> scored_part("<think> 2+2 is 4 </think> It is 4, thanks!", "whole")
    '<think> 2+2 is 4 </think> It is 4, thanks!'
    >>> scored_part("It is 4.", "after_think")       # no reasoning: the whole reply is the answer
    'It is 4.'
    >>> zscore([1.0, 2.0, 3.0])                      # mean 2, population std sqrt(2/3) = 0.8165
    [-1.2247..., 0.0, 1.2247...]
"""
from __future__ import annotations

import math
from typing import Sequence

MODES = ("after_think", "whole")  # R1 §2.3.4: helpfulness on the final summary only; harmlessness on the whole


def scored_part(text: str, mode: str, delimiters: Sequence[str] = ("</think>",)) -> str:
    """The text a reward model judges. `whole`: all of it. `after_think`: what follows the last occurrence of the
    first delimiter (in list order) that the text contains; a text with none of them has no reasoning section and
    is judged whole (a reasoning that never closes is judged whole too: its length shows in the length watch)."""
    if mode == "whole":
        return text
    if mode != "after_think":
        raise ValueError(f"reward_model: mode={mode!r} is not one of: {', '.join(MODES)}")
    for d in delimiters:
        if d in text:
            return text.rpartition(d)[2]
    return text


def zscore(values: Sequence[float], eps: float = 1e-6) -> list[float]:
    """(v - mean) / (std + eps) over the batch (population std); a batch of one, or of equal values, gives zeros.

    >>> zscore([5.0, 5.0]), zscore([7.0])
    ([0.0, 0.0], [0.0])
    """
    n = len(values)
    if n == 0:
        return []
    mean = sum(values) / n
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / n)
    return [(v - mean) / (std + eps) if std > 0 else 0.0 for v in values]


def correlation_counts(scores: Sequence[float], lengths: Sequence[float]) -> dict[str, float]:
    """Sufficient sums for Pearson's r of score vs length; sums of several calls add up (a step's batches, tasks).

    >>> correlation_counts([1.0, 3.0], [10, 30])
    {'corr_n': 2.0, 'corr_x': 40.0, 'corr_y': 4.0, 'corr_xx': 1000.0, 'corr_yy': 10.0, 'corr_xy': 100.0}
    """
    xs, ys = [float(x) for x in lengths], [float(y) for y in scores]
    return {"corr_n": float(len(xs)), "corr_x": sum(xs), "corr_y": sum(ys), "corr_xx": sum(x * x for x in xs),
            "corr_yy": sum(y * y for y in ys), "corr_xy": sum(x * y for x, y in zip(xs, ys))}


def length_correlation(counts: dict[str, float]) -> float:
    """Pearson's r of the reward-model score with completion length from `correlation_counts` sums; nan when either
    varies not at all (or fewer than 2 completions). A score that climbs with length is the classic reward hack.

    >>> length_correlation(correlation_counts([1.0, 2.0, 3.0], [10, 20, 30]))   # longer = better: r = 1
    1.0
    >>> round(length_correlation(correlation_counts([3.0, 1.0, 2.0], [10, 20, 30])), 4)   # r = -0.5
    -0.5
    """
    n = counts.get("corr_n", 0.0)
    if n < 2:
        return float("nan")
    sx, sy = counts["corr_x"], counts["corr_y"]
    vx = counts["corr_xx"] - sx * sx / n
    vy = counts["corr_yy"] - sy * sy / n
    if vx <= 1e-12 * max(1.0, counts["corr_xx"]) or vy <= 1e-12 * max(1.0, counts["corr_yy"]):
        return float("nan")
    r = (counts["corr_xy"] - sx * sy / n) / math.sqrt(vx * vy)
    return max(-1.0, min(1.0, r))


def summarize_counts(counts: dict[str, float]) -> dict[str, float]:
    """Step metrics from the summed counters of a reward model: `length_corr` (Pearson r, raw score vs completion
    tokens), `raw_mean` (mean raw score, before any normalisation), `batch_s` (seconds per forward batch); the first
    two are left out on a call where they are undefined (lengths all equal, no completion scored).

    >>> summarize_counts({**correlation_counts([1.0, 3.0], [10, 30]), "raw_sum": 4.0, "forward_s": 0.5,
    ...                   "batches": 2.0})
    {'batch_s': 0.25, 'length_corr': 1.0, 'raw_mean': 2.0}
    >>> summarize_counts({**correlation_counts([1.0, 3.0], [10, 10]), "raw_sum": 4.0, "forward_s": 0.5,
    ...                   "batches": 2.0})   # equal lengths: no correlation to report
    {'batch_s': 0.25, 'raw_mean': 2.0}
    """
    n = counts.get("corr_n", 0.0)
    out = {"batch_s": counts.get("forward_s", 0.0) / counts["batches"] if counts.get("batches") else 0.0}
    corr = length_correlation(counts)
    if not math.isnan(corr):  # absent, not NaN, where undefined (constant lengths or scores, < 2 completions):
        out["length_corr"] = corr  # a NaN on one rank would make the cross-rank mean NaN
    if n:
        out["raw_mean"] = counts.get("raw_sum", 0.0) / n
    if "offload_s" in counts:  # `offload: true`: seconds moving the weights to the device and back, per step
        out["offload_s"] = counts["offload_s"]
    return out
