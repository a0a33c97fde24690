"""Throughput of `accuracy` (completions/s), sequential (the reward function in this process) vs the RewardScorer's
worker pool (2 workers), on integer, fraction, GSM8K-gold and two-box answers. Run: `make bench`
(= pytest -q tests/bench --benchmark-enable --benchmark-only); each figure is printed and kept in extra_info.

Each round scores a fresh batch (new seed): GRPO-like groups of 8 completions per gold, about half of them correct,
so caches only help the way they do in training (repeated answers within a group). Cases:

- `int`: integer answers, with accuracy's exact integer fast path (the default);
- `int-mv`: the same through math-verify (`fast_integers=False`), i.e. LaTeX parsing for every answer;
- `frac`: `\\frac{a}{b}` answers against `a/b` golds (always math-verify);
- `gsm8k`: integer answers against GSM8K-style worked golds ("... <<a+b=c>>c ... #### c"): the gold's value is
  extracted once per group, then the integer fast path applies;
- `boxes`: two boxed answers (`\\boxed{x}, \\boxed{y}`) against "x, y" golds: two parses and a set comparison.

Target: >= 1,000 completions/s with the pool for typical answers.
"""
from __future__ import annotations

import itertools
import random

import pytest

from rewards import RewardScorer, get_reward

N = 1024  # completions per round (128 groups of 8)
ROUNDS = 3
KINDS = {"int": {}, "int-mv": {"fast_integers": False}, "frac": {}, "gsm8k": {}, "boxes": {}}
_seeds = itertools.count(1000)


def make_batch(kind: str, seed: int) -> tuple[list[str], list[str]]:
    rng = random.Random(seed)
    completions, golds = [], []
    for g in range(N // 8):
        if kind.startswith("int"):
            value = rng.randint(-10 ** 6, 10 ** 6)
            gold, right = str(value), str(value)
            wrong = lambda: str(value + rng.randint(1, 999))  # noqa: E731
        elif kind == "gsm8k":
            a, b = rng.randint(1, 10 ** 5), rng.randint(1, 10 ** 5)
            gold = (f"She has {a} and buys {b} more, so {a}+{b} = <<{a}+{b}={a + b}>>{a + b} in all, at $2 each.\n"
                    f"#### {a + b}")
            right = str(a + b)
            wrong = lambda: str(a + b + rng.randint(1, 999))  # noqa: E731
        elif kind == "boxes":
            x, y = rng.randint(-999, 999), rng.randint(1000, 9999)
            gold, right = f"{x}, {y}", f"\\boxed{{{x}}}, \\boxed{{{y}}}"
            wrong = lambda: f"\\boxed{{{x}}}, \\boxed{{{y + rng.randint(1, 99)}}}"  # noqa: E731
        else:
            a, b = rng.randint(1, 999), rng.randint(2, 999)
            gold, right = f"{a}/{b}", f"\\frac{{{a}}}{{{b}}}"
            wrong = lambda: f"\\frac{{{a + rng.randint(1, 99)}}}{{{b}}}"  # noqa: E731
        for j in range(8):
            pred = right if rng.random() < 0.5 else wrong()
            completions.append(f"<think> group {g}, sample {j}: let me work it out step by step. </think> "
                               f"<answer> {pred} </answer>")
            golds.append(gold)
    return completions, golds


def _report(benchmark, label):
    if benchmark.stats:
        mean = benchmark.stats.stats.mean
        benchmark.extra_info["completions_per_s"] = round(N / mean)
        print(f"\n{label}: {N / mean:,.0f} completions/s ({N} per round, mean {mean:.3f} s)")


@pytest.mark.parametrize("kind", list(KINDS))
def test_accuracy_sequential(benchmark, kind):
    acc = get_reward("accuracy", **KINDS[kind])
    acc(["<answer>1</answer>"], answer=["1"])  # warm-up: math-verify builds its parsers on first use
    benchmark.group = f"accuracy-{kind}"
    result = benchmark.pedantic(lambda c, a: acc(c, answer=a), setup=lambda: (make_batch(kind, next(_seeds)), {}),
                                rounds=ROUNDS, iterations=1)
    assert len(result) == N and 0.3 < sum(result) / N < 0.7
    _report(benchmark, f"accuracy/{kind}/sequential")


@pytest.mark.parametrize("kind", list(KINDS))
def test_accuracy_pool(benchmark, kind):
    with RewardScorer({"accuracy": KINDS[kind]}, num_workers=2, timeout_s=5.0) as scorer:
        completions, golds = make_batch(kind, 1)
        scorer.score(completions, {"answer": golds})  # start and warm up the workers, outside the timing
        benchmark.group = f"accuracy-{kind}"
        result = benchmark.pedantic(
            lambda c, a: scorer.score(c, {"answer": a}), setup=lambda: (make_batch(kind, next(_seeds)), {}),
            rounds=ROUNDS, iterations=1)
    assert len(result.totals) == N and result.metrics["rewards/accuracy/timeouts"] == 0
    assert 0.3 < result.metrics["rewards/accuracy/mean"] < 0.7
    _report(benchmark, f"accuracy/{kind}/pool(2 workers)")
