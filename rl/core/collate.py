"""Episodes -> Batch (pure): left-padded prompts, right-padded completions, masks.

    episodes: prompt ids [5, 6] + completion [7, 8, EOS]; prompt [4] + completion [9] (truncated)
    -> input_ids       [[5, 6, 7, 8, EOS],      P = 2, C = 3
                        [PAD, 4, 9, PAD, PAD]]
       attention_mask  [[1, 1, 1, 1, 1], [0, 1, 1, 0, 0]]
       completion_mask [[1, 1, 1], [1, 0, 0]]   (row 2 all 0 with mask_truncated_completions)

Multi-turn episodes carry their own per-token mask (Completion.mask: 0 on tokens the environment inserted); it is
copied as is: completion [7, 8, 30, 31, 9, EOS] with mask [1, 1, 0, 0, 1, 1] (30, 31: a tool's output) -> that
row's completion_mask is [1, 1, 0, 0, 1, 1], so the tool's tokens get no loss, KL, entropy or importance weight.

Positions: the learner derives position ids from the attention mask, so left padding does not shift positions and the
logprobs match the engine's (which sees unpadded prompts).

Padding waste: a step's batch is padded to its longest prompt and completion. The learner orders rows by length
(`by_length`) and cuts its micro-batches from that order, each trimmed to its own longest row (`trim_padding`), so a
micro-step costs what its real tokens cost. No loss mode depends on the padding (grpo divides by each row's own
tokens, bnpo/dapo by the step's token count, dr_grpo by max_completion_length from the recipe), so the loss and the
gradients are those of the padded batch.

    rows with real lengths (prompt + completion) [9, 3, 7, 4], micro-batches of 2
    -> order [0, 2, 3, 1]: micro-batch 1 = rows 0, 2 padded to 9; micro-batch 2 = rows 3, 1 padded to 4 (not 9)
"""
from __future__ import annotations

from typing import Sequence

import torch

from rl.core.episode import BATCH_FIELDS, Batch, Episode


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
                m = ep.completion.mask
                completion_mask[i, :len(c)] = 1.0 if m is None else torch.tensor(m, dtype=torch.float32)
    advantages = torch.tensor([e.advantage for e in episodes], dtype=torch.float32)  # [N]
    return Batch(input_ids, attention_mask, completion_mask, advantages, sampling_logprobs)


def position_ids(attention_mask: torch.Tensor) -> torch.Tensor:
    """[N, T] mask -> [N, T] positions counting real tokens only (0 on left padding)."""
    return (attention_mask.cumsum(-1) - 1).clamp(min=0)


def by_length(batch: Batch) -> tuple[Batch, torch.Tensor]:
    """Rows reordered longest first (real tokens: prompt + completion); returns (new batch, order [N]).
    Ties keep their original order (stable sort), so the result does not depend on the sort's implementation."""
    lengths = batch.attention_mask.sum(-1)  # [N]
    order = torch.sort(-lengths, stable=True).indices  # [N]
    return Batch(*(None if t is None else t.index_select(0, order.to(t.device))
                   for t in (getattr(batch, f) for f in BATCH_FIELDS))), order


def trim_padding(batch: Batch) -> Batch:
    """The same rows without the columns that are padding in every row: leading prompt columns and trailing
    completion columns (at least one completion column stays). Views, no copies."""
    C = batch.completion_length
    P = batch.input_ids.shape[1] - C
    prompt_real = batch.attention_mask[:, :P].any(0)  # [P]
    first = int(prompt_real.nonzero()[0]) if prompt_real.any() else P
    completion_real = batch.attention_mask[:, P:].any(0)  # [C]
    keep = max(int(completion_real.nonzero()[-1]) + 1 if completion_real.any() else 1, 1)
    if first == 0 and keep == C:
        return batch
    def cols(t, lo, hi):
        return None if t is None else t[:, lo:hi]
    return Batch(batch.input_ids[:, first:P + keep], batch.attention_mask[:, first:P + keep],
                 batch.completion_mask[:, :keep], batch.advantages, cols(batch.sampling_logprobs, 0, keep),
                 cols(batch.old_logprobs, 0, keep), cols(batch.ref_logprobs, 0, keep))
