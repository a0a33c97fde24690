"""A rollout engine for the worker's deadline tests (EngineSpec.engine_factory="tests.rollout.paced_engine:build"):
the long-tail benchmark's paced engine (rl/bench/long_tail.py) with every completion `max_tokens` long: `generate`
takes `max_tokens` steps of `step_s` seconds each and ticks `on_progress` once per step, as the real engines do per
decoding step, unless the spec's engine_kwargs say `silent` (a hung engine: the same wait, no ticks)."""
from __future__ import annotations

from rl.bench.long_tail import LongTailEngine


def build(spec):
    return LongTailEngine(float(spec.engine_kwargs["step_s"]), short=None,
                          silent=bool(spec.engine_kwargs.get("silent", False))), None
