"""Throughput of the sandboxed `code` reward: sandboxed runs per second, and the wait of one 64-completion GRPO step.
Run: `make bench`, or only these: `pytest -q tests/bench/test_bench_code.py --benchmark-enable --benchmark-only -s`.
Each figure is printed and kept in extra_info.

Cases (every completion is correct, so every test runs):

- `trivial`: `print(int(input()) + 1)` against one stdin/stdout test;
- `mbpp50`: `def f(x): return x + 1` against a 50-assert MBPP-style row (`test_list`);

each measured sequentially (the reward function in this process, 16 completions per round) and as one step of 64
completions through the RewardScorer's pool of 2 workers (the wait a training step sees), both `warm` (the default:
one warm sandbox per process, sandbox/warm.py) and `cold` (`warm: false`, a fresh sandbox per completion).
"""
from __future__ import annotations

import shutil

import pytest

from rewards import RewardScorer, get_reward

pytestmark = pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap (bwrap) is not installed")
ROUNDS = 3
CASES = {
    "trivial": ("```python\nprint(int(input()) + 1)\n```", "input_output", {"inputs": ["1\n"], "outputs": ["2\n"]}),
    "mbpp50": ("```python\ndef f(x):\n    return x + 1\n```", "test_list",
               [f"assert f({i}) == {i + 1}" for i in range(50)]),
}


def _batch(case: str, n: int):
    program, column, tests = CASES[case]
    return [program] * n, {column: [tests] * n}


@pytest.mark.parametrize("warm", [True, False], ids=["warm", "cold"])
@pytest.mark.parametrize("case", list(CASES))
def test_code_sequential(benchmark, case, warm):
    code = get_reward("code", warm=warm)
    completions, cols = _batch(case, 16)
    code(completions[:2], **{k: v[:2] for k, v in cols.items()})  # start the warm sandbox
    benchmark.group = f"code-{case}"
    result = benchmark.pedantic(lambda: code(completions, **cols), rounds=ROUNDS, iterations=1)
    assert result == [1.0] * 16
    if benchmark.stats:
        mean = benchmark.stats.stats.mean
        benchmark.extra_info["runs_per_s"] = round(16 / mean, 1)
        mode = "warm" if warm else "cold"
        print(f"\ncode/{case}/{mode}/sequential: {16 / mean:.1f} sandboxed runs/s ({1000 * mean / 16:.1f} ms per run)")


@pytest.mark.parametrize("warm", [True, False], ids=["warm", "cold"])
@pytest.mark.parametrize("case", list(CASES))
def test_code_step_of_64_through_the_pool(benchmark, case, warm):
    completions, cols = _batch(case, 64)
    with RewardScorer({"code": {"warm": warm}}, num_workers=2, timeout_s=10.0) as scorer:
        scorer.score(completions[:4], {k: v[:4] for k, v in cols.items()})  # start the workers
        benchmark.group = f"code-{case}"
        result = benchmark.pedantic(lambda: scorer.score(completions, cols), rounds=ROUNDS, iterations=1)
    assert result.per_reward["code"] == [1.0] * 64 and result.metrics["rewards/code/sandbox_kills"] == 0
    if benchmark.stats:
        mean = benchmark.stats.stats.mean
        benchmark.extra_info["step_s"] = round(mean, 3)
        benchmark.extra_info["runs_per_s"] = round(64 / mean, 1)
        mode = "warm" if warm else "cold"
        print(f"\ncode/{case}/{mode}/pool(2 workers): one 64-completion step {mean:.2f} s ({64 / mean:.1f} runs/s)")
