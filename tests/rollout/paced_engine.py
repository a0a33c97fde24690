"""A rollout engine for the worker's deadline tests (EngineSpec.engine_factory="tests.rollout.paced_engine:build"):
`generate` takes `max_tokens` steps of `step_s` seconds each and ticks `on_progress` once per step, as the real
engines do per decoding step, unless the spec's engine_kwargs say `silent` (a hung engine: the same wait, no ticks)."""
from __future__ import annotations

import time

from rl.core.episode import Completion


class PacedEngine:
    def __init__(self, step_s: float, silent: bool):
        self.step_s, self.silent = step_s, silent
        self.on_progress = None

    def generate(self, prompts, params):
        for _ in range(params.max_tokens):
            time.sleep(self.step_s)
            if self.on_progress is not None and not self.silent:
                self.on_progress()
        return [[Completion(prompt_ids=list(p), completion_ids=[1] * params.max_tokens, text="",
                            finish_reason="length", logprobs=[0.0] * params.max_tokens) for _ in range(params.n)]
                for p in prompts]

    def update_weights(self, model, weights=None):
        for _ in weights or ():
            pass

    def close(self):
        pass


def build(spec):
    return PacedEngine(float(spec.engine_kwargs["step_s"]), bool(spec.engine_kwargs.get("silent", False))), None
