"""Rewards used by the tests through import paths ("reward_test_helpers:..."; tests/rewards is on sys.path, and
worker processes inherit sys.path). One is registered by name (`test_helpers_shout`), as a plugin module would."""
from __future__ import annotations

import os
import signal
import time

from rewards import register_reward


@register_reward("test_helpers_shout", factory=True)
def make_shout(value: float = 1.0):
    """A registered factory, defined at module level: the scorer's workers rebuild it by importing this module."""
    def shout(completions, **kwargs):
        return [value if "!" in (c or "") else 0.0 for c in completions]
    return shout


def scaled_length(completions, scale: float = 1.0, **kwargs):
    """A user-defined plain reward with a parameter: scale * number of characters."""
    return [scale * len(c if isinstance(c, str) else c[0]["content"]) for c in completions]


def make_constant(value: float = 1.0):
    """A user-defined factory: validates its parameter once, returns the reward function."""
    if value < 0:
        raise ValueError("reward 'constant': parameter 'value' must be >= 0")

    def constant(completions, **kwargs):
        return [value] * len(completions)

    return constant


make_constant.__reward_factory__ = True  # what @register_reward(..., factory=True) sets


def hang_in_c(completions, **kwargs):
    """'HANG' blocks SIGALRM and spins: like C code that never returns to the interpreter, only a kill stops it."""
    out = []
    for c in completions:
        if "HANG" in c:
            signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM})
            while True:
                time.sleep(0.01)
        out.append(1.0)
    return out


def spin_in_python(completions, **kwargs):
    """'SPIN' loops in Python: the worker's own SIGALRM deadline interrupts it."""
    out = []
    for c in completions:
        while "SPIN" in c:
            pass
        out.append(1.0)
    return out


def crash(completions, **kwargs):
    """'CRASH' kills the worker process outright; 'RAISE' raises."""
    for c in completions:
        if "CRASH" in c:
            os._exit(3)
        if "RAISE" in c:
            raise RuntimeError("boom")
    return [1.0] * len(completions)


BATCH_CALLS: list[int] = []  # batch sizes seen by `batched_length` (it runs in the scorer's process)


def batched_length(completions, answer=None, **kwargs):
    """A batched user reward (like a reward model): one call per batch; records the batch size of each call."""
    BATCH_CALLS.append(len(completions))
    if any(c == "RAISE" for c in completions):
        raise ConnectionError("verifier unreachable")
    if any(c == "SLOW" for c in completions):
        time.sleep(5)
    return [float(len(c)) for c in completions]


batched_length.batched = True  # the declaration an import-path reward makes


@register_reward("test_helpers_batched_even", factory=True, batched=True)
def make_batched_even(value: float = 1.0):
    """A registered batched factory: value for completions of even length."""
    def even(completions, **kwargs):
        BATCH_CALLS.append(len(completions))
        return [value if len(c) % 2 == 0 else 0.0 for c in completions]
    return even


ROW_CALLS: list[int] = []


def row_length(completions, **kwargs):
    """A plain (not batched) user reward: the scorer calls it one completion at a time."""
    ROW_CALLS.append(len(completions))
    return [float(len(c)) for c in completions]


def fail_on_bang(completions, **kwargs):
    """Raises on a completion that is '!' (one item at a time in the scorer), 1.0 otherwise."""
    if completions[0] == "!":
        raise ValueError("bang")
    return [1.0 for _ in completions]
