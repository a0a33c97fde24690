"""The rollout engine interface. The learner knows only this; engines live in hf.py (transformers) and vllm.py."""
from __future__ import annotations

from typing import Protocol

import torch

from rl.episode import Completion, SamplingParams


class RolloutEngine(Protocol):
    """Generates completions for tokenized prompts and receives the learner's weights.

    generate(prompts, params) -> one list of `params.n` Completions per prompt, in prompt order.
    update_weights(model) pushes the learner's current parameters (an unwrapped transformers model) to the engine.
    """

    def generate(self, prompts: list[list[int]], params: SamplingParams) -> list[list[Completion]]: ...

    def update_weights(self, model: torch.nn.Module) -> None: ...

    def close(self) -> None: ...
