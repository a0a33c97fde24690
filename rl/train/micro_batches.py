"""How the learner cuts a step into micro-batches (machinery around rl/core/packing.py and rl/core/collate.py).

Two ways, chosen by `train.max_tokens_per_micro_batch`:

* 0 (off): `train.micro_batch_size` rows per micro-batch, rows ordered by length, each micro-batch trimmed to its
  own longest row (padding inside it). Always batch_size / micro_batch_size micro-batches.
* a token budget B: rows binned first-fit-decreasing under B real tokens (prompt + completion) per micro-batch, each
  micro-batch run as ONE packed sequence without padding (rl/train/policy.py `packed=True`). Ranks agree on the
  largest bin count (one all-reduce) and split bins to reach it, so every rank runs the same number of forward and
  backward passes. Before binning, the rows of all ranks are dealt out again so that every rank trains the same
  number of rows with about the same number of tokens (`exchange_rows`).

A model whose attention cannot take packed rows (rl/train/policy.py `packing_support`) falls back to fixed rows with
a one-line notice.

With `train.share_prompts` (the default; `sdpa_packed` attention only, else unshared packing with a notice) rows with
identical prompt token ids (a GRPO group) share one copy of the prompt in their micro-batch: bins hold whole groups,
counted p + sum(c_i) tokens (rl/core/packing.py `bin_units`, `shared_load`), and across ranks whole groups are dealt
when every group has the same number of rows and the groups divide evenly over the ranks (else rows, as without).
Metrics: `train/micro_batch_tokens_max` as the model sees them, `train/prompt_tokens_shared_frac` = tokens saved /
tokens unshared.
"""
from __future__ import annotations

import contextlib

import torch

from rl.core.collate import trim_padding
from rl.core.episode import BATCH_FIELDS, Batch
from rl.core.packing import (balance_ranks, balance_ranks_by_units, bin_units, first_fit_decreasing, imbalance,
                             prompt_owners, select_rows, shared_load, split_bins)


class MicroBatcher:
    """`split(batch)` -> [(rows [n] long | None, micro-batch)]: rows = the micro-batch's row indices in `batch` (None:
    the contiguous slices of the fixed-row path). `packed` says how the policy runs them."""

    def __init__(self, accelerator, micro_batch_size: int, max_tokens: int, packing_problem: str | None,
                 share_prompts: bool = False, sharing_problem: str | None = None):
        self.accelerator = accelerator
        self.micro_batch_size = micro_batch_size
        self.max_tokens = max_tokens
        self.packed = max_tokens > 0 and packing_problem is None
        self.share_prompts = self.packed and share_prompts and sharing_problem is None
        if max_tokens > 0 and packing_problem is not None and accelerator.is_main_process:
            print(f"train.max_tokens_per_micro_batch: fixed micro-batches of {micro_batch_size} rows instead "
                  f"({packing_problem})", flush=True)
        elif self.packed and share_prompts and sharing_problem is not None and accelerator.is_main_process:
            print(f"train.share_prompts: packed rows without sharing prompts ({sharing_problem})", flush=True)
        self.last: dict[str, float] = {}  # metrics of the last split

    def _max_over_ranks(self, n: int) -> int:
        if self.accelerator.num_processes == 1:
            return n
        return int(self.accelerator.gather(torch.tensor([n], device=self.accelerator.device)).max())

    def split(self, batch: Batch) -> list[tuple[torch.Tensor | None, Batch]]:
        if not self.packed:
            size = self.micro_batch_size
            return [(None, trim_padding(batch.slice(s, s + size))) for s in range(0, len(batch), size)]
        lengths = batch.attention_mask.sum(-1).tolist()  # [N] real tokens per row
        if self.share_prompts:
            C = batch.completion_length
            owners = prompt_owners(batch.input_ids, batch.attention_mask, C).tolist()  # [N]
            prompt_lens = batch.attention_mask[:, :batch.input_ids.shape[1] - C].sum(-1).tolist()  # [N]

            def load(b):
                return shared_load(b, lengths, prompt_lens, owners)
            bins = bin_units(lengths, prompt_lens, owners, self.max_tokens)
        else:
            load, owners = None, None
            bins = first_fit_decreasing(lengths, self.max_tokens)
        bins = split_bins(bins, lengths, self._max_over_ranks(len(bins)), load=load, owners=owners)
        unshared = [sum(lengths[i] for i in b) for b in bins]
        loads = [load(b) for b in bins] if load is not None else unshared  # tokens as the model sees them
        self.last = {"train/micro_batches": float(len(bins)), "train/micro_batch_tokens_max": float(max(loads)),
                     "train/prompt_tokens_shared_frac": 1 - sum(loads) / max(sum(unshared), 1)}
        device = batch.input_ids.device
        out = []
        for b in bins:
            rows = torch.tensor(b, dtype=torch.long, device=device)
            out.append((rows, trim_padding(select_rows(batch, rows))))
        return out

    def exchange_rows(self, batch: Batch) -> tuple[Batch, dict[str, float]]:
        """All ranks' rows dealt out again (collective): same rows per rank, about the same tokens
        (rl/core/packing.py `balance_ranks`). Returns this rank's rows and the imbalance before and after
        (max / mean tokens per rank). Single process: the batch unchanged."""
        acc, world = self.accelerator, self.accelerator.num_processes
        if world == 1 or not self.packed:
            return batch, {}
        C = batch.completion_length
        P = batch.input_ids.shape[1] - C
        widths = acc.gather(torch.tensor([P, C], device=acc.device)).view(world, 2).max(0).values.tolist()
        P_all, C_all = int(widths[0]), int(widths[1])

        def pad(t, completion_only: bool):  # prompt columns on the left, completion columns on the right
            if t is None or t.ndim == 1:
                return t
            left = 0 if completion_only else P_all - P
            return torch.nn.functional.pad(t, (left, C_all - C))
        everything = [None if t is None else acc.gather(pad(t, name not in ("input_ids", "attention_mask")).contiguous())
                      for name, t in ((f, getattr(batch, f)) for f in BATCH_FIELDS)]
        full = Batch(*everything)  # [W * N, ...] in rank order
        lengths = full.attention_mask.sum(-1).tolist()
        n = len(batch)
        if self.share_prompts:  # whole groups when they deal evenly (rows per rank must stay equal)
            ranks = balance_ranks_by_units(lengths, full.attention_mask[:, :P_all].sum(-1).tolist(),
                                           prompt_owners(full.input_ids, full.attention_mask, C_all).tolist(), world)
        else:
            ranks = balance_ranks(lengths, world)
        before = imbalance([sum(lengths[r * n:(r + 1) * n]) for r in range(world)])
        after = imbalance([sum(lengths[i] for i in rows) for rows in ranks])
        mine = torch.tensor(ranks[acc.process_index], dtype=torch.long, device=acc.device)
        return trim_padding(select_rows(full, mine)), {"train/rank_token_imbalance_before": before,
                                                       "train/rank_token_imbalance": after}


@contextlib.contextmanager
def accumulation(accelerator, model, last: bool):
    """`accelerator.accumulate` for a step whose number of micro-batches is not fixed: gradients are synchronised
    (DDP / FSDP2), and DeepSpeed's engine steps, on the micro-batch marked `last` only. accelerate's own `accumulate`
    decides by counting micro-batches against `gradient_accumulation_steps`, which a token budget does not fix.
    Sets accelerate 1.15's GradientState through its `_set_sync_gradients` (what `accumulate` itself calls), which
    `accelerator.backward` (DeepSpeed's boundary) and the wrapped optimizer's `step` read; re-check on an upgrade.
    The backward's loss scale is unchanged: accelerate and DeepSpeed still divide by the configured accumulation
    steps, and `distributed.loss_scale_for_backward` multiplies that back."""
    accelerator.gradient_state._set_sync_gradients(last)
    with contextlib.nullcontext() if last else accelerator.no_sync(model):
        yield
