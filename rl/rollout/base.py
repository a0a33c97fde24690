"""The rollout engine interface. The learner knows only this; engines live in hf.py (transformers) and vllm.py."""
from __future__ import annotations

from typing import Protocol

import torch

from rl.core.episode import Completion, SamplingParams


class RolloutEngine(Protocol):
    """Generates completions for tokenized prompts and receives the learner's weights.

    generate(prompts, params) -> one list of `params.n` Completions per prompt, in prompt order.
    update_weights(model, weights) gives the engine the learner's current parameters: `model` is the unwrapped
    transformers model (an engine that shares it, like hf.py, just uses it), `weights` an iterator of
    (checkpoint name, full tensor) gathered one module at a time (collective under ZeRO-3/FSDP: an engine that
    copies weights must consume it to the end on every rank; one that does not must not start it).
    """

    def generate(self, prompts: list[list[int]], params: SamplingParams) -> list[list[Completion]]: ...

    def update_weights(self, model: torch.nn.Module, weights=None) -> None: ...

    def close(self) -> None: ...
