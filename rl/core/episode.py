"""The data contract between rollout engines, rewards, collation and the learner.

An `Example` comes from a dataset, a `Completion` from a rollout engine, an `Episode` joins the two with the rewards
and the advantage, and a `Batch` is what the learner trains on (padded tensors). Nothing here computes anything.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import torch

FinishReason = Literal["stop", "length"]


@dataclass(frozen=True)
class SamplingParams:
    """How an engine samples. `n` completions per prompt (the GRPO group size G).

    Logprob convention (all engines): the log-probability of each sampled token under softmax(logits / temperature),
    without top-p/top-k truncation; this is what the learner recomputes, so the two can be compared.
    """

    n: int = 1
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0  # 0 = disabled
    max_tokens: int = 64
    seed: int | None = None
    greedy: bool = False  # argmax decoding (evaluation); logprobs are then those of temperature 1
    stop: tuple[str, ...] = ()  # stop strings (besides EOS): decoding of a row ends at the token completing one


@dataclass
class Completion:
    """One sampled continuation of one prompt, as an engine returns it."""

    prompt_ids: list[int]
    completion_ids: list[int]  # includes the EOS token when finish_reason == "stop"
    text: str  # decoded completion_ids, special tokens skipped
    finish_reason: FinishReason
    logprobs: list[float]  # engine's sampling logprob per completion token, len == len(completion_ids)
    # multi-turn episodes: 1 on the policy's own tokens, 0 on tokens the environment inserted (tool outputs, user
    # turns; their logprob is 0); None = every token is the policy's (single turn)
    mask: list[int] | None = None
    info: dict[str, float] = field(default_factory=dict)  # per-episode statistics (turns, tool calls, ...)
    # stream mode (rollout.stream, rl/core/streaming.py): the policy version that sampled each token, len ==
    # len(completion_ids) (weights may change between two decode steps of one completion); None = one version
    versions: list[int] | None = None


@dataclass
class Episode:
    """A completion with its example, group, rewards and advantage: the unit the learner reasons about."""

    group_id: int  # completions of the same prompt share a group id
    example: dict[str, Any]  # the dataset row: "prompt", "answer", and any extra columns
    completion: Completion
    rewards: dict[str, float | None] = field(default_factory=dict)  # per reward function, unweighted
    reward_total: float = 0.0  # weighted sum over reward functions (None counts as 0)
    advantage: float = 0.0
    policy_version: int = 0  # optimizer updates the generating weights had seen (asynchronous rollouts)

    @property
    def truncated(self) -> bool:
        return self.completion.finish_reason == "length"


BATCH_FIELDS = ("input_ids", "attention_mask", "completion_mask", "advantages", "sampling_logprobs", "old_logprobs",
                "ref_logprobs")


@dataclass
class Batch:
    """Padded tensors for the learner. N sequences, P prompt positions (left-padded), C completion positions
    (right-padded). Logprob tensors are over completion positions only.

    input_ids         [N, P + C] long
    attention_mask    [N, P + C] long   1 on real tokens
    completion_mask   [N, C] float      1 on completion tokens that count in the loss
    advantages        [N] float
    sampling_logprobs [N, C] float      engine logprobs (0 on padding)
    old_logprobs      [N, C] float | None   only when num_iterations > 1
    ref_logprobs      [N, C] float | None   only when beta > 0
    """

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    completion_mask: torch.Tensor
    advantages: torch.Tensor
    sampling_logprobs: torch.Tensor
    old_logprobs: torch.Tensor | None = None
    ref_logprobs: torch.Tensor | None = None

    @property
    def completion_length(self) -> int:
        return self.completion_mask.shape[1]

    def __len__(self) -> int:
        return self.input_ids.shape[0]

    def slice(self, start: int, stop: int) -> "Batch":
        """Rows [start, stop) as a new Batch (views, no copies)."""
        def cut(t):
            return None if t is None else t[start:stop]
        return Batch(*(cut(getattr(self, f)) for f in BATCH_FIELDS))
