"""Per-item time limits for Python code running in the main thread of a process: `with deadline(0.5): ...`.

A SIGALRM interval timer raises `ItemTimeout` (a BaseException, so `except Exception` blocks in math-verify and
sympy do not swallow it) when the block runs longer than `seconds`; the timer then re-fires every 50 ms, in case some
bare `except:` swallowed the first one. Nested deadlines keep the earlier expiry. Outside the main thread, or where
SIGALRM does not exist, `deadline` is a no-op: code that must be bounded there runs in the scorer's worker processes,
whose parent kills a worker that does not come back (C code that never returns to the interpreter, e.g. one huge
integer power, cannot be interrupted by a signal handler; only a kill stops it).

    >>> import time
    >>> try:
    ...     with deadline(0.05):
    ...         while True:
    ...             time.sleep(0.001)
    ... except ItemTimeout:
    ...     print("timed out")
    timed out
"""
from __future__ import annotations

import signal
import threading
import time
from contextlib import contextmanager
from typing import Iterator

_REFIRE_S = 0.05


class ItemTimeout(BaseException):
    """Raised inside a `deadline` block that ran out of time."""


class _State:
    depth = 0  # number of active deadline() blocks that own the timer
    fired = 0  # ItemTimeouts raised so far in this process (some code may swallow them: see fired_count)


def _handler(signum, frame):  # noqa: ARG001
    if _State.depth > 0:
        _State.fired += 1
        raise ItemTimeout("reward item timed out")


def _usable() -> bool:
    return hasattr(signal, "setitimer") and threading.current_thread() is threading.main_thread()


@contextmanager
def deadline(seconds: float | None) -> Iterator[None]:
    """Raise ItemTimeout in this block after `seconds` (None or <= 0: no limit). Main thread only, else a no-op."""
    if not seconds or seconds <= 0 or not _usable():
        yield
        return
    outer_remaining, outer_interval = signal.getitimer(signal.ITIMER_REAL)
    ours_outside = _State.depth > 0
    if outer_remaining > 0 and not ours_outside:
        # Someone else's timer (e.g. the application's own alarm): leave it alone rather than clobber it.
        yield
        return
    if ours_outside and outer_remaining <= seconds:
        yield  # the enclosing deadline expires first and is still armed
        return
    old_handler = signal.signal(signal.SIGALRM, _handler)
    start = time.monotonic()
    _State.depth += 1
    signal.setitimer(signal.ITIMER_REAL, seconds, _REFIRE_S)
    try:
        yield
    finally:
        _State.depth -= 1  # first: a late SIGALRM is now ignored by _handler (when depth drops to 0)
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old_handler)
        if ours_outside:  # re-arm the enclosing deadline with what it has left
            left = max(outer_remaining - (time.monotonic() - start), 0.001)
            signal.setitimer(signal.ITIMER_REAL, left, outer_interval or _REFIRE_S)


def fired_count() -> int:
    """How many ItemTimeouts were raised in this process. A computation during which this changed was interrupted,
    even if it returned normally (a swallowed timeout): its result must not be cached or trusted."""
    return _State.fired


def deadline_active() -> bool:
    """True inside a `deadline` block that owns the timer (e.g. a scorer worker timing the current item)."""
    return _State.depth > 0


def run_with_deadline(fn, seconds: float | None, on_timeout):
    """`fn()` under a deadline, returning `on_timeout` if it runs out of time. Inside an enclosing deadline (a scorer
    worker timing this item), ItemTimeout propagates instead, so that the enclosing code counts the timeout."""
    if deadline_active():
        return fn()
    try:
        with deadline(seconds):
            return fn()
    except ItemTimeout:
        return on_timeout
