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
    release_memory(weights_follow) is called once per step after the rollouts, before the learner trains: an engine
    holding accelerator memory of its own (vLLM with sleep mode) frees it; `weights_follow` says update_weights comes
    before the next generate, so the engine's copy of the weights need not be kept.
    """

    def generate(self, prompts: list[list[int]], params: SamplingParams) -> list[list[Completion]]: ...

    def update_weights(self, model: torch.nn.Module, weights=None) -> None: ...

    def release_memory(self, weights_follow: bool = True) -> None: ...

    def close(self) -> None: ...
