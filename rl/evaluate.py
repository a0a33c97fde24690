"""Evaluation: greedy accuracy and strict-format rate on a held-out set, plus sampled pass@k / maj@k.

    eval/accuracy  fraction of greedy completions whose answer math-verifies against the gold
    eval/format    fraction in strict R1 format (<think>...</think> <answer>...</answer>)
    eval/completion_len  mean completion length in tokens

pass@k is the unbiased estimator of Chen et al. (2021): with n samples of which c are correct,
pass@k = 1 - C(n - c, k) / C(n, k). Example: n = 4, c = 1, k = 2 -> 1 - C(3,2)/C(4,2) = 1 - 3/6 = 0.5.
"""
from __future__ import annotations

from collections import Counter
from math import comb

from rl.episode import SamplingParams


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


def evaluate_greedy(engine, encoder, examples: list[dict], max_tokens: int, rewards: dict) -> tuple[dict, list]:
    """Greedy decoding on `examples`; `rewards` maps "accuracy"/"format" to reward callables.

    Returns (metrics, rows) where rows hold prompt, completion, answer and scores for inspection.
    """
    prompts = [encoder(("eval", i), ex) for i, ex in enumerate(examples)]
    outputs = engine.generate(prompts, SamplingParams(n=1, greedy=True, max_tokens=max_tokens))
    texts = [group[0].text for group in outputs]
    answers = [ex["answer"] for ex in examples]
    extra = {k: [ex.get(k) for ex in examples] for k in examples[0] if k not in ("prompt", "answer")}
    acc = rewards["accuracy"](texts, answer=answers, **extra)
    fmt = rewards["format"](texts, answer=answers, **extra)
    n = len(examples)
    metrics = {
        "eval/accuracy": sum(a or 0.0 for a in acc) / n,
        "eval/format": sum(f or 0.0 for f in fmt) / n,
        "eval/completion_len": sum(len(g[0].completion_ids) for g in outputs) / n,
        "eval/truncated_frac": sum(g[0].finish_reason == "length" for g in outputs) / n,
    }
    rows = [{"prompt": ex["prompt"], "completion": t, "answer": ex["answer"], "accuracy": a, "format": f}
            for ex, t, a, f in zip(examples, texts, acc, fmt)]
    return metrics, rows
