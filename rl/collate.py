"""Episodes -> Batch (pure): left-padded prompts, right-padded completions, masks.

    episodes: prompt ids [5, 6] + completion [7, 8, EOS]; prompt [4] + completion [9] (truncated)
    -> input_ids       [[5, 6, 7, 8, EOS],      P = 2, C = 3
                        [PAD, 4, 9, PAD, PAD]]
       attention_mask  [[1, 1, 1, 1, 1], [0, 1, 1, 0, 0]]
       completion_mask [[1, 1, 1], [1, 0, 0]]   (row 2 all 0 with mask_truncated_completions)

Positions: the learner derives position ids from the attention mask, so left padding does not shift positions and the
logprobs match the engine's (which sees unpadded prompts).
"""
from __future__ import annotations

from typing import Sequence

import torch

from rl.episode import Batch, Episode


def collate(episodes: Sequence[Episode], pad_token_id: int, mask_truncated_completions: bool = False) -> Batch:
    if not episodes:
        raise ValueError("cannot collate an empty list of episodes")
    n = len(episodes)
    P = max(len(e.completion.prompt_ids) for e in episodes)
    C = max(max(len(e.completion.completion_ids) for e in episodes), 1)
    input_ids = torch.full((n, P + C), pad_token_id, dtype=torch.long)  # [N, P + C]
    attention_mask = torch.zeros((n, P + C), dtype=torch.long)  # [N, P + C]
    completion_mask = torch.zeros((n, C), dtype=torch.float32)  # [N, C]
    sampling_logprobs = torch.zeros((n, C), dtype=torch.float32)  # [N, C]
    for i, ep in enumerate(episodes):
        p, c = ep.completion.prompt_ids, ep.completion.completion_ids
        input_ids[i, P - len(p):P] = torch.tensor(p, dtype=torch.long)
        attention_mask[i, P - len(p):P] = 1
        if c:
            input_ids[i, P:P + len(c)] = torch.tensor(c, dtype=torch.long)
            attention_mask[i, P:P + len(c)] = 1
            sampling_logprobs[i, :len(c)] = torch.tensor(ep.completion.logprobs, dtype=torch.float32)
            if not (mask_truncated_completions and ep.truncated):
                completion_mask[i, :len(c)] = 1.0
    advantages = torch.tensor([e.advantage for e in episodes], dtype=torch.float32)  # [N]
    return Batch(input_ids, attention_mask, completion_mask, advantages, sampling_logprobs)


def position_ids(attention_mask: torch.Tensor) -> torch.Tensor:
    """[N, T] mask -> [N, T] positions counting real tokens only (0 on left padding)."""
    return (attention_mask.cumsum(-1) - 1).clamp(min=0)
