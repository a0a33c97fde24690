"""`code`: run the completion's program against the row's tests in the sandbox (R1's "compiler + test cases").

    >>> code = make_code()   # checks the sandbox once, here: a one-line SandboxError names the fix if it cannot run
    >>> good = "<think> add them </think>\\n```python\\na, b = map(int, input().split())\\nprint(a + b)\\n```"
    >>> bad = "```python\\nprint(0)\\n```"
    >>> tests = {"input_output": {"inputs": ["1 2\\n", "5 5\\n"], "outputs": ["3\\n", "10\\n"]}}
    >>> code([good, bad, "no program"], input_output=[tests["input_output"]] * 3)
    [1.0, 0.0, 0.0]
    >>> code([good], answer=["3"])           # a row without tests cannot be judged
    [None]
    >>> mbpp = ["assert add(1, 2) == 3", "assert add(2, 2) == 4"]
    >>> make_code(partial=True)(["```python\\ndef add(a, b):\\n    return 3\\n```"], test_list=[mbpp])
    [0.5]

Value: 1.0 when every test passes, else 0.0 (with `partial: true`, the fraction passed); None when the row has no
tests (see rewards/code/cases.py for the formats). The program is extracted by `code_tests.extract_program`.

How a completion is run (rewards/code/harness.py, inside sandbox/bwrap.py's bubblewrap sandbox): by default in one
warm sandbox per process whose zygote forks a fresh harness per completion and sweeps the sandbox clean after it
(sandbox/warm.py), with `warm: false` in a fresh sandbox per completion; the harness receives the program and
the job (tests, a random nonce) through two memfds, runs the program in child processes, and reports on its stdout what
the program produced; the verdict is taken here. Expected outputs of stdin/stdout and call-based tests never enter the
sandbox; assert tests are judged there by the harness, in a process the program cannot reach (module docstring of
code_harness.py). A report line without this run's nonce is ignored, and a run without its final line (the harness was
killed, the sandbox timed out or flooded its output) fails every test not reported.

Time budget: each test may take `per_test_s` (its limit: a test over it fails, and so do the tests after it); a
completion's whole run gets `per_test_s` per test, two more for starting the sandbox and loading the program, and a
second (`completion_wall_s`), up to a cap, `timeout_s` (default: `CAP_TESTS` x `per_test_s`, 60 s). A correct program
on a row of many tests is therefore never cut short unless its tests average over cap / tests each:

    >>> [completion_wall_s(n, 2.0) for n in (1, 20, 50, 200)], completion_wall_s(50, 2.0, cap_s=4.0)
    ([7.0, 45.0, 60.0, 60.0], 4.0)

The reward tells the RewardScorer how long one completion may take (`code.item_timeout_s`: the cap plus
`ITEM_MARGIN_S`), and the scorer's per-item deadline for it is the larger of that and `scoring.timeout_s`.

Metrics (summed per scoring step and reported by the RewardScorer as `rewards/code/<key>`): `pass_rate` (tests
passed / tests run), `compile_errors`, `test_timeouts` (tests over `per_test_s`), `run_timeouts` (runs cut at their
wall-clock budget), `tests_not_reached` (tests that never ran: after a timed-out test, a dead solver, or the end of
the run's budget; they fail), `sandbox_kills` (runs that ended without the harness's final report for another reason:
output overflow, or the program killed the harness), `no_program`. Called directly (TRL), read them with
`code.drain_metrics()`.
"""
from __future__ import annotations

import ast
import logging
import marshal
import math
import os
import secrets
from collections import Counter
from pathlib import Path
from typing import Any

from rewards.code.cases import TEST_COLUMNS, TestSpec, extract_program, outputs_match, results_match, tests_of
from rewards.extract import completion_text
from rewards.scoring.registry import register_reward
from sandbox.bwrap import Limits, Sandbox
from sandbox.warm import WarmSandbox

logger = logging.getLogger(__name__)
HARNESS = (Path(__file__).with_name("harness.py")).read_text()
CAP_TESTS = 30  # the default per-completion cap, in tests at `per_test_s` each: 60 s at 2 s per test
ITEM_MARGIN_S = 5.0  # the scorer's deadline beyond the cap: a cold sandbox's start, the kill, the report's parse


def completion_wall_s(n_tests: int, per_test_s: float, cap_s: float | None = None) -> float:
    """Wall-clock budget of one completion's run against `n_tests` tests: `per_test_s` for each, two more (the
    sandbox's start and the program's load, which the harness allows 2 x `per_test_s`) and one second, at most
    `cap_s` (default `CAP_TESTS` x `per_test_s`). E.g. 20 tests at 2 s: 2 x 22 + 1 = 45 s; 50 tests: 105 s, capped at
    60 s."""
    cap = CAP_TESTS * per_test_s if cap_s is None else cap_s
    return float(min(cap, (n_tests + 2) * per_test_s + 1.0))


def _memfd(name: str, data: bytes) -> int:
    fd = os.memfd_create(name, 0)  # no MFD_CLOEXEC: inherited by the sandbox (pass_fds)
    os.write(fd, data)
    os.lseek(fd, 0, os.SEEK_SET)
    return fd


def run_tests(box: Sandbox | WarmSandbox, program: str, spec: TestSpec, per_test_s: float, wall_s: float,
              max_output: int) -> tuple[list[bool], Counter]:
    """Run `program` against `spec` in `box`: (passed per test, counters)."""
    nonce = secrets.token_hex(16)
    job: dict[str, Any] = {"mode": spec.mode, "nonce": nonce, "tests": spec.inputs, "per_test_s": per_test_s,
                           "max_output": max_output, "fn_name": spec.fn_name, "setup": spec.setup}
    counts: Counter = Counter(runs=1)
    fds = (_memfd("program", program.encode("utf-8", "replace")), _memfd("job", marshal.dumps(job)))
    try:
        if isinstance(box, WarmSandbox):
            res = box.run_harness(fds[0], fds[1], spec.mode, wall_s=wall_s)
        else:
            res = box.run(["-c", HARNESS, str(fds[0]), str(fds[1]), spec.mode], wall_s=wall_s, pass_fds=fds)
    finally:
        for fd in fds:
            os.close(fd)
    reports: dict[int, dict] = {}
    done = False
    for line in res.stdout.decode("utf-8", "replace").splitlines():
        try:
            msg = ast.literal_eval(line)
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            continue
        if not isinstance(msg, dict) or msg.get("nonce") != nonce:
            continue
        if "compile_error" in msg:
            counts["compile_errors"] += 1
        if msg.get("done"):
            done = True
        elif isinstance(msg.get("i"), int):
            reports.setdefault(msg["i"], msg)
    if res.timed_out:
        counts["run_timeouts"] += 1  # out of its wall-clock budget: the tests it did not reach fail, counted below
    elif not done:
        counts["sandbox_kills"] += 1  # overflow, or the harness was killed
    passed = []
    for i in range(len(spec.inputs)):
        r = reports.get(i)
        counts["test_timeouts"] += bool(r and r.get("status") == "timeout")
        counts["tests_not_reached"] += r is None or r.get("status") == "skipped"
        passed.append(r is not None and _passed(spec, i, r))
    counts["tests_run"] += len(passed)
    counts["tests_passed"] += sum(passed)
    return passed, counts


def _passed(spec: TestSpec, i: int, r: dict) -> bool:
    if r.get("status") != "ok":
        return False
    if spec.mode == "stdio":
        return r.get("rc") == 0 and outputs_match(str(r.get("out", "")), spec.expected[i])
    if spec.mode == "call":
        from rewards.code.harness import decode
        try:
            return results_match(decode(r["result"]), spec.expected[i])
        except (KeyError, TypeError, ValueError, RecursionError):
            return False
    return r.get("pass") is True


def _row(columns: dict[str, list], j: int) -> dict[str, Any]:
    return {k: v[j] for k, v in columns.items() if isinstance(v, (list, tuple)) and j < len(v)}


@register_reward("code", factory=True)
def make_code(sandbox: str = "bwrap", partial: bool = False, timeout_s: float | None = None, per_test_s: float = 2.0,
              memory_mb: int = 1024, max_output: int = 1 << 20, max_tests: int = 200, nproc: int = 32,
              warm: bool = True):
    """The `code` reward. `sandbox`: "bwrap" (default) or "none" (no isolation, warns); `partial`: the pass
    fraction instead of all-or-nothing; `per_test_s`: the time limit of one test, and a completion's budget per
    test (`completion_wall_s`); `timeout_s`: the cap of one completion's whole run (default None: `CAP_TESTS` x
    `per_test_s`; the scorer's per-item deadline follows it); `memory_mb`: address space per process; `max_output`:
    bytes of output kept (more kills); `max_tests`: only the first this many tests of a row run; `nproc`: processes;
    `warm`: reuse one warm bwrap sandbox per process (sandbox/warm.py; started on the first completion, swept
    between completions), false for a fresh sandbox per completion; `sandbox: none` always runs cold."""
    for k, v in (("timeout_s", timeout_s), ("per_test_s", per_test_s)):
        if k == "timeout_s" and v is None:
            continue
        if isinstance(v, bool) or not isinstance(v, (int, float)) or v <= 0:
            raise ValueError(f"reward 'code': parameter {k!r} must be a positive number, got {v!r}")
    for k, v in (("memory_mb", memory_mb), ("max_output", max_output), ("max_tests", max_tests), ("nproc", nproc)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"reward 'code': parameter {k!r} must be a positive integer, got {v!r}")
    for k, v in (("partial", partial), ("warm", warm)):
        if not isinstance(v, bool):
            raise ValueError(f"reward 'code': parameter {k!r} must be true or false, got {v!r}")
    cap_s = float(CAP_TESTS * per_test_s if timeout_s is None else timeout_s)
    # CPU seconds per process: the solver of call/assert tests runs them all in one process
    limits = Limits(cpu_s=max(1, math.ceil(cap_s) + 1), memory_mb=memory_mb, nproc=nproc,
                    output_bytes=max_output + 4096 + 64 * max_tests, wall_s=cap_s)
    box = Sandbox(sandbox, limits)  # SandboxError here, at start-up, if it cannot run
    runner = WarmSandbox(box, HARNESS) if warm and sandbox == "bwrap" else box
    totals: Counter = Counter()

    def code(completions: list, **columns: Any) -> list[float | None]:
        out: list[float | None] = []
        for j, c in enumerate(completions):
            spec = tests_of(_row(columns, j))
            if spec is None:
                out.append(None)
                continue
            spec.inputs, spec.expected = spec.inputs[:max_tests], spec.expected[:max_tests]
            program = extract_program(completion_text(c))
            if program is None:
                totals["no_program"] += 1
                out.append(0.0)
                continue
            wall_s = completion_wall_s(len(spec.inputs), per_test_s, cap_s)
            passed, counts = run_tests(runner, program, spec, per_test_s, wall_s, max_output)
            totals.update(counts)
            frac = sum(passed) / len(passed) if passed else 0.0
            out.append(frac if partial else float(frac == 1.0))
        return out

    def drain_metrics() -> dict[str, float]:
        """Counters since the last call (summed across workers by the scorer), then reset."""
        got = {k: float(v) for k, v in totals.items()}
        totals.clear()
        return got

    code.drain_metrics, code.summarize, code.requires = drain_metrics, summarize, ()
    code.runner = runner  # the Sandbox, or the WarmSandbox (tests read `starts`; `close()` kills it)
    code.item_timeout_s = cap_s + ITEM_MARGIN_S  # the RewardScorer's per-item deadline for this reward (at least)
    return code


def summarize(counts: dict[str, float]) -> dict[str, float]:
    """Step metrics from summed counters: pass_rate (tests passed / run; absent when no test ran: on a rank that
    scored no program it is "no data", which the cross-rank mean skips, where a NaN would make the run's mean NaN),
    compile_errors, test_timeouts, run_timeouts, tests_not_reached, sandbox_kills, no_program.

        {"tests_run": 8, "tests_passed": 3, "no_program": 1} -> pass_rate 0.375, no_program 1, the rest 0
        {"no_program": 2}                                    -> no pass_rate key; no_program 2, the rest 0
    """
    run = counts.get("tests_run", 0.0)
    return {**({"pass_rate": counts.get("tests_passed", 0.0) / run} if run else {}),
            **{k: counts.get(k, 0.0) for k in ("compile_errors", "test_timeouts", "run_timeouts", "tests_not_reached",
                                               "sandbox_kills", "no_program")}}


make_code.columns = TEST_COLUMNS
