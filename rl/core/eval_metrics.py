"""Evaluation metrics over sampled completions: pass@k, maj@k and their per-problem means. Pure Python.

pass@k is the unbiased estimator of Chen et al. (2021): with n samples of which c are correct,
pass@k = 1 - C(n - c, k) / C(n, k). Example: n = 4, c = 1, k = 2 -> 1 - C(3,2)/C(4,2) = 1 - 3/6 = 0.5.

Worked example for one problem, k = 4 samples with extracted answers [23, 35, 23, None], gold 23:
    correct = [1, 0, 1, 0]  -> pass@1 = 2/4 = 0.5, pass@4 = 1 (some sample correct), maj@4 = 1 (23 wins 2 votes to 1)
The reported values are the means over problems.
"""
from __future__ import annotations

from collections import Counter
from math import comb


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from n samples with c correct (0 <= c <= n, 1 <= k <= n)."""
    if not (0 <= c <= n and 1 <= k <= n):
        raise ValueError(f"pass@k needs 0 <= c <= n and 1 <= k <= n, got n={n} c={c} k={k}")
    if n - c < k:
        return 1.0
    return 1.0 - comb(n - c, k) / comb(n, k)


def majority_correct(answers: list[str | None], correct: list[float | None]) -> float:
    """maj@k: 1 if the most frequent extracted answer (ties: first seen) is a correct one."""
    votes = Counter(a for a in answers if a is not None)
    if not votes:
        return 0.0
    top = votes.most_common(1)[0][0]
    return float(next(c for a, c in zip(answers, correct) if a == top) or 0.0)


def sampled_metrics(correct: list[list[float]], answers: list[list[str | None]], formats: list[list[float]],
                    lengths: list[list[int]], truncated: list[list[bool]], k: int) -> dict[str, float]:
    """Per-problem lists of n >= k samples -> mean pass@1, unbiased pass@k, maj@k (first k samples), format rate,
    mean completion length, truncated fraction."""
    m = len(correct)
    n_samples = sum(len(c) for c in correct)
    out = {
        "pass@1": sum(sum(c) / len(c) for c in correct) / m,
        f"pass@{k}": sum(pass_at_k(len(c), int(sum(c)), k) for c in correct) / m,
        f"maj@{k}": sum(majority_correct(a[:k], c[:k]) for a, c in zip(answers, correct)) / m,
        "format": sum(map(sum, formats)) / n_samples,
        "completion_len": sum(map(sum, lengths)) / n_samples,
        "truncated_frac": sum(map(sum, truncated)) / n_samples,
    }
    return out
