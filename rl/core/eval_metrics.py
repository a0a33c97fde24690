"""Evaluation metrics over sampled completions: pass@k, maj@k and their per-problem means. Pure Python.

pass@k is the unbiased estimator of Chen et al. (2021): with n samples of which c are correct,
pass@k = 1 - C(n - c, k) / C(n, k). Example: n = 4, c = 1, k = 2 -> 1 - C(3,2)/C(4,2) = 1 - 3/6 = 0.5.

Worked example for one problem, k = 4 samples with extracted answers [23, 35, 23, None], gold 23:
    correct = [1, 0, 1, 0]  -> pass@1 = 2/4 = 0.5, pass@4 = 1 (some sample correct), maj@4 = 1 (23 wins 2 votes to 1)
The reported values are the means over problems.

`check_redo_frac` is the share of completions that stop to check and redo their work (R1-Zero's "aha moment", R1
paper Table 3: "Wait, wait. Wait. That's an aha moment I can flag here."), by marker words:
    ["3+4=7, 7*5=35", "3+4=7. Wait, * first: 4*5=20, 3+20=23", "let me recheck: 23"] -> 2/3 (the 2nd and 3rd)
"""
from __future__ import annotations

import re
from math import comb
from typing import Callable

CHECK_REDO = re.compile(r"\b(?:wait|re-?check|double-check|let me (?:check|verify|recompute))\b", re.IGNORECASE)


def check_redo_frac(texts: list[str]) -> float:
    """Fraction of `texts` with a check-and-redo marker (`CHECK_REDO`: wait, recheck, double-check, let me check /
    verify / recompute; whole words, any case). 0.0 for no texts.

    >>> check_redo_frac(["3+4=7, 7*5=35", "3+4=7. Wait, * first: 4*5=20, 3+20=23", "let me recheck: 23", "awaited"])
    0.5
    """
    return sum(bool(CHECK_REDO.search(t)) for t in texts) / len(texts) if texts else 0.0


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from n samples with c correct (0 <= c <= n, 1 <= k <= n)."""
    if not (0 <= c <= n and 1 <= k <= n):
        raise ValueError(f"pass@k needs 0 <= c <= n and 1 <= k <= n, got n={n} c={c} k={k}")
    if n - c < k:
        return 1.0
    return 1.0 - comb(n - c, k) / comb(n, k)


def answer_classes(answers: list[str | None], same: Callable[[str, str], bool] | None = None) -> list[list[int]]:
    """Indices of `answers` grouped into equivalence classes, in order of first appearance (None answers are left
    out). `same(a, b)` says whether two answers are the same value (default: equal strings); each answer joins the
    first class whose first member it is the same as. Example with math equivalence:
    ["\\dfrac{1}{2}", "\\frac13", "0.5", "\\frac13", "\\frac12"] -> [[0, 2, 4], [1, 3]]."""
    classes: list[list[int]] = []
    for i, a in enumerate(answers):
        if a is None:
            continue
        for members in classes:
            rep = answers[members[0]]
            if a == rep or (same is not None and same(rep, a)):
                members.append(i)
                break
        else:
            classes.append([i])
    return classes


def majority_correct(answers: list[str | None], correct: list[float | None],
                     same: Callable[[str, str], bool] | None = None) -> float:
    """maj@k: 1 if the largest class of equal answers (ties: the first formed) is a correct one. With `same`, the
    classes are of equal *values* (see answer_classes): "\\dfrac{1}{2}", "\\frac12", "0.5" are one vote of 3
    against 2 for two "\\frac13", where raw strings would let 1/3 win 2 to 1."""
    classes = answer_classes(answers, same)
    if not classes:
        return 0.0
    top = max(classes, key=len)  # max keeps the first of equal sizes
    return float(correct[top[0]] or 0.0)


def sampled_metrics(correct: list[list[float]], answers: list[list[str | None]], formats: list[list[float]],
                    lengths: list[list[int]], truncated: list[list[bool]], k: int,
                    same: Callable[[str, str], bool] | None = None, texts: list[list[str]] | None = None
                    ) -> dict[str, float]:
    """Per-problem lists of n >= k samples -> mean pass@1, unbiased pass@k, maj@k (first k samples, votes by
    `same`), format rate, mean completion length, truncated fraction, and with `texts` the check/redo share."""
    m = len(correct)
    n_samples = sum(len(c) for c in correct)
    out = {
        "pass@1": sum(sum(c) / len(c) for c in correct) / m,
        f"pass@{k}": sum(pass_at_k(len(c), int(sum(c)), k) for c in correct) / m,
        f"maj@{k}": sum(majority_correct(a[:k], c[:k], same) for a, c in zip(answers, correct)) / m,
        "format": sum(map(sum, formats)) / n_samples,
        "completion_len": sum(map(sum, lengths)) / n_samples,
        "truncated_frac": sum(map(sum, truncated)) / n_samples,
    }
    if texts is not None:
        out["check_redo_frac"] = check_redo_frac([t for group in texts for t in group])
    return out
