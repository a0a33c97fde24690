"""Padding-free micro-batches under a token budget (pure): which rows train together, how many tokens each rank gets,
and how one micro-batch is laid end to end as a single packed sequence.

1. Bins (`first_fit_decreasing`): rows sorted longest first, each put into the first bin where it still fits under
   `budget` tokens (prompt + completion), else into a new bin. A row longer than the budget gets a bin of its own.

       lengths [5, 9, 3, 4, 6], budget 10 -> order 9, 6, 5, 4, 3
       9 -> bin A (9);  6 -> new bin B (6);  5 -> B is full at 11, new bin C (5);  4 -> B (10);  3 -> C (8)
       -> [[1], [4, 3], [0, 2]]   (row indices; bins hold 9, 10 and 8 tokens)

2. Equal counts (`split_bins`): every rank must run the same number of micro-batches (under ZeRO-3 / FSDP2 every
   forward is a collective, and the last micro-batch is the one whose backward synchronises), so a rank with fewer
   bins than the largest count splits its heaviest bin (of at least two rows) in two until the counts agree.
   Splitting never makes a bin heavier, so the budget still holds.

       [[1], [4, 3], [0, 2]] with lengths above, to 4 bins -> heaviest splittable bin [4, 3] (10) -> [4], [3]
       -> [[1], [0, 2], [4], [3]]   (sorted by tokens, heaviest first: 9, 8, 6, 4)

3. Ranks (`balance_ranks`): the rows of all W ranks are dealt out again so that every rank keeps the same number of
   rows (the `grpo` and `dr_grpo` normalisers count sequences per rank) and about the same number of tokens
   (verl's sequence-length balancing): longest first, each row to the rank with the fewest tokens that still has
   room.

       lengths [8, 7, 1, 2] on W = 2 (2 rows each); as given (rows 0-1 on r0, 2-3 on r1): 15 and 3 tokens
       8 -> r0 (8); 7 -> r1 (7); 2 -> r1 (9); 1 -> r0 (9)   -> [[0, 2], [1, 3]], 9 tokens each
       imbalance (max / mean tokens per rank) 15 / 9 = 1.67 -> 1.0

4. Layout (`pack_rows`): a micro-batch of padded rows [n, P + C] (prompt left-padded, completion right-padded, as
   collate.py builds them) becomes one sequence [1, L] of its real tokens, L = sum of the rows' lengths, with
   position ids restarting at 0 on every row. A causal attention that starts a new sequence where the position ids
   restart (transformers' packed-sequence masks for sdpa / eager / flex, flash-attention's varlen path) gives every
   row exactly the attention it has alone: no padding token passes through an MLP or the LM head.

       rows [[PAD, 4, 9], [5, 6, 7]], P = 2, C = 1, completion_mask [[1], [1]]
       -> input_ids [[4, 9, 5, 6, 7]], position_ids [[0, 1, 0, 1, 2]]
          predict_at [0, 3] (packed positions whose hidden state predicts each counted completion token),
          targets [9, 7]

5. Shared prompts (`pack_rows(..., share_prompts=True)`): the rows of a GRPO group have the same prompt, so rows
   whose real prompt token ids are identical keep ONE copy of the prompt (the first such row's, its "owner") and each
   completion attends to that copy and to itself causally, position ids unchanged (completion positions p..p+c-1).
   Causal attention makes this the same computation: the prompt's hidden states do not depend on what follows, and
   the prompt's keys / values get the gradient of every completion, as the sum over G copies does.

       rows [[4, 9, 1], [4, 9, 2], [PAD, 5, 3]], P = 2, C = 1 (rows 0 and 1 share the prompt [4, 9])
       -> input_ids [[4, 9, 1, 2, 5, 3]], position_ids [[0, 1, 2, 2, 0, 1]]
          predict_at [1, 1, 4] (both completions' first token is predicted at the shared prompt's last position),
          targets [1, 2, 3]
          layout: prompt_start [0, 0, 4], prompt_len [2, 2, 1], completion_start [2, 3, 5], completion_len [1, 1, 1],
                  owner [True, False, True]

   Bins then hold whole groups ("units", `bin_units`): a unit's tokens as the model sees them are p + sum(c_i)
   (`shared_load`); a unit over the budget is cut into chunks of rows, each chunk paying the prompt once.

       rows (prompt, completion) A: (4, 3), (4, 2), (4, 5); B: (6, 1), (6, 1); budget 12
       chunks: A (p 4, completions 5, 3 -> 12; 2 does not fit) -> [2, 0] (12) and [1] (6); B -> [3, 4] (8)
       first fit decreasing over 12, 8, 6 -> [[2, 0], [3, 4], [1]]   (B's 8 and A's 6 make 14 > 12)
"""
from __future__ import annotations

from typing import Callable, NamedTuple, Sequence

import torch

from rl.core.collate import position_ids
from rl.core.episode import BATCH_FIELDS, Batch


def first_fit_decreasing(lengths: Sequence[int], budget: int) -> list[list[int]]:
    """Row indices grouped into bins of at most `budget` tokens (a row above the budget alone), first-fit over rows
    sorted longest first (ties in row order). Bins come in the order they were opened; see the module example."""
    if budget < 1:
        raise ValueError(f"token budget {budget} must be at least 1")
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    bins: list[list[int]] = []
    loads: list[int] = []
    for i in order:
        n = int(lengths[i])
        for b, load in enumerate(loads):
            if load + n <= budget:
                bins[b].append(i)
                loads[b] += n
                break
        else:
            bins.append([i])
            loads.append(n)
    return bins


def split_bins(bins: list[list[int]], lengths: Sequence[int], count: int,
               load: Callable[[list[int]], int] | None = None, owners: Sequence[int] | None = None
               ) -> list[list[int]]:
    """`bins` split until there are `count` of them: the heaviest bin holding two rows or more is halved (its rows,
    longest first, dealt to the lighter half). Returns bins sorted by tokens, heaviest first (ties: earlier first).
    `load(rows)`: a bin's tokens (default the sum of `lengths`; with shared prompts `shared_load`, which a subset of
    rows never exceeds, so the budget still holds). `owners` (shared prompts, `prompt_owners`): a bin holding rows of
    several prompts is halved by whole prompt units (heaviest first), so each prompt stays in one half.
    Needs `count` <= the number of rows; see the module example."""
    rows = sum(len(b) for b in bins)
    if count > rows:
        raise ValueError(f"cannot make {count} micro-batches from {rows} rows")
    out = [list(b) for b in bins]
    if load is None:
        def load(b):
            return sum(int(lengths[i]) for i in b)
    while len(out) < count:
        k = max((j for j in range(len(out)) if len(out[j]) > 1), key=lambda j: load(out[j]))
        halves: list[list[int]] = [[], []]
        pieces = [[i] for i in out[k]]
        if owners is not None and len({owners[i] for i in out[k]}) > 1:
            pieces = [[i for i in out[k] if owners[i] == o] for o in dict.fromkeys(owners[i] for i in out[k])]
        for piece in sorted(pieces, key=lambda pc: -load(pc)):
            halves[0 if load(halves[0]) <= load(halves[1]) else 1].extend(piece)
        out[k:k + 1] = halves
    return sorted(out, key=load, reverse=True)


def balance_ranks(lengths: Sequence[int], world: int) -> list[list[int]]:
    """Rows (indices into `lengths`, all ranks' rows) dealt to `world` ranks, len(lengths) / world each, with about
    equal tokens: longest first, each to the rank with the fewest tokens that has room (ties: lower rank). Each
    rank's rows are returned in ascending index order. See the module example."""
    if world < 1 or len(lengths) % world:
        raise ValueError(f"{len(lengths)} rows cannot be dealt equally to {world} ranks")
    per = len(lengths) // world
    ranks: list[list[int]] = [[] for _ in range(world)]
    loads = [0] * world
    for i in sorted(range(len(lengths)), key=lambda i: -lengths[i]):
        r = min((r for r in range(world) if len(ranks[r]) < per), key=lambda r: loads[r])
        ranks[r].append(i)
        loads[r] += int(lengths[i])
    return [sorted(r) for r in ranks]


def balance_ranks_by_units(lengths: Sequence[int], prompt_lens: Sequence[int], owners: Sequence[int], world: int
                           ) -> list[list[int]]:
    """`balance_ranks` over whole prompt units (groups) when every unit has the same number of rows and the units
    deal evenly to `world` ranks (so rows per rank stay equal), each unit weighing its `shared_load`; else over rows.

    lengths [7, 6, 9, 8 | 3, 4, 5, 2] (groups of 4, prompts 2 and 1 -> shared loads 30 - 6 = 24 and 14 - 3 = 11),
    world 2 -> units to r0 and r1: [[0, 1, 2, 3], [4, 5, 6, 7]]; world 4 (2 units do not deal to 4) -> rows."""
    units = prompt_units(owners)
    if not units or len({len(u) for u in units}) != 1 or len(units) % world:
        return balance_ranks(lengths, world)
    dealt = balance_ranks([shared_load(u, lengths, prompt_lens, owners) for u in units], world)
    return [sorted(i for u in r for i in units[u]) for r in dealt]


def imbalance(loads: Sequence[float]) -> float:
    """max / mean of per-rank (or per-micro-batch) token counts: 1.0 is perfect balance. [9, 9] -> 1.0;
    [15, 3] -> 15 / 9 = 1.667; all zero -> 1.0."""
    mean = sum(loads) / max(len(loads), 1)
    return float(max(loads) / mean) if mean > 0 else 1.0


def select_rows(batch: Batch, rows: torch.Tensor) -> Batch:
    """The rows `rows` [n] (long) of `batch`, in that order (copies)."""
    return Batch(*(None if t is None else t.index_select(0, rows.to(t.device))
                   for t in (getattr(batch, f) for f in BATCH_FIELDS)))


class RowLayout(NamedTuple):
    """Where each of the n rows of a packed sequence lies, [n] each: its prompt [prompt_start, + prompt_len) (a shared
    copy for rows that do not own it), its completion [completion_start, + completion_len), and whether the row owns
    (outputs) the prompt copy. What rl/train/packed_attention.py's `sdpa_packed` runs row by row."""
    prompt_start: torch.Tensor
    prompt_len: torch.Tensor
    completion_start: torch.Tensor
    completion_len: torch.Tensor
    owner: torch.Tensor  # bool


def prompt_owners(input_ids: torch.Tensor, attention_mask: torch.Tensor, completion_length: int) -> torch.Tensor:
    """[n] index of the first row whose real prompt token ids equal each row's (the ids are compared, not group
    ids; a different length is a different prompt). input_ids, attention_mask [n, P + C].
    Prompts [[PAD, 4, 9], [4, 4, 9], [PAD, 4, 9]] -> [0, 1, 0]."""
    n = input_ids.shape[0]
    if n == 0:
        return torch.zeros(0, dtype=torch.long)
    P = input_ids.shape[1] - completion_length
    prompts = input_ids[:, :P].masked_fill(attention_mask[:, :P] == 0, -1)  # [n, P], padding -> -1
    _, inverse = torch.unique(prompts, dim=0, return_inverse=True)  # [n] id of each distinct prompt
    first = torch.full((int(inverse.max()) + 1,), n, dtype=torch.long, device=inverse.device)
    first = first.scatter_reduce(0, inverse, torch.arange(n, device=inverse.device), "amin")  # [distinct]
    return first[inverse]


def shared_load(rows: Sequence[int], lengths: Sequence[int], prompt_lens: Sequence[int],
                owners: Sequence[int]) -> int:
    """Tokens of `rows` packed with shared prompts: their lengths, less the prompt of every row whose owner's prompt
    is already counted. lengths [10, 8, 7], prompt_lens [6, 6, 3], owners [0, 0, 2] -> rows [0, 1, 2]: 25 - 6 = 19."""
    seen: set[int] = set()
    total = 0
    for i in rows:
        total += int(lengths[i]) - (int(prompt_lens[i]) if owners[i] in seen else 0)
        seen.add(owners[i])
    return total


def prompt_units(owners: Sequence[int]) -> list[list[int]]:
    """Rows grouped by prompt (their `prompt_owners` entry), units in the order of their first row.
    [0, 1, 0, 3, 1] -> [[0, 2], [1, 4], [3]]."""
    units: dict[int, list[int]] = {}
    for i, o in enumerate(owners):
        units.setdefault(int(o), []).append(i)
    return list(units.values())


def bin_units(lengths: Sequence[int], prompt_lens: Sequence[int], owners: Sequence[int], budget: int
              ) -> list[list[int]]:
    """Rows binned by prompt: each unit (rows sharing a prompt) cut into chunks of at most `budget` tokens counted with
    the prompt once (rows by decreasing completion length, each into the unit's first chunk with room; a row over
    the budget alone), then the chunks first-fit decreasing (`first_fit_decreasing` over their loads). See the
    module example (5.)."""
    chunks: list[list[int]] = []
    for unit in prompt_units(owners):
        p = int(prompt_lens[unit[0]])
        mine: list[list[int]] = []
        loads: list[int] = []
        for i in sorted(unit, key=lambda i: -(lengths[i] - prompt_lens[i])):
            c = int(lengths[i]) - p
            for k, load in enumerate(loads):
                if load + c <= budget:
                    mine[k].append(i)
                    loads[k] += c
                    break
            else:
                mine.append([i])
                loads.append(p + c)
        chunks += mine
    chunk_loads = [shared_load(ch, lengths, prompt_lens, owners) for ch in chunks]
    return [[i for k in b for i in chunks[k]] for b in first_fit_decreasing(chunk_loads, budget)]


def pack_rows(input_ids: torch.Tensor, attention_mask: torch.Tensor, completion_mask: torch.Tensor,
              share_prompts: bool = False) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, RowLayout]:
    """Padded rows -> one packed sequence. input_ids, attention_mask [n, P + C]; completion_mask [n, C].

    Returns (input_ids [1, L], position_ids [1, L], predict_at [M], targets [M], layout) where L = real tokens (with
    `share_prompts`, each distinct prompt once), M = counted completion tokens in row-major order (the order of
    `hidden[:, P - 1:-1][completion_mask > 0]` in the padded layout), predict_at the packed position whose hidden
    state predicts each of them (a completion's first token: its (shared) prompt's last position), layout the rows'
    `RowLayout`. See the module examples (4., 5.)."""
    n, T = input_ids.shape
    C = completion_mask.shape[1]
    P = T - C
    real = attention_mask > 0  # [n, T]
    needed = completion_mask > 0  # [n, C]
    if P < 1 or not bool(real[:, P - 1:T - 1][needed].all()) or not bool(real[:, P:][needed].all()):
        raise ValueError("a counted completion token is padding or has no real token before it (empty prompt?)")
    rows = torch.arange(n, device=input_ids.device)
    owners = prompt_owners(input_ids, attention_mask, C) if share_prompts else rows  # [n]
    owner = owners == rows  # [n]
    keep = real.clone()  # [n, T] tokens laid out: all real tokens but the prompts of rows that share another's
    keep[~owner, :P] = False
    index = (keep.flatten().cumsum(0) - 1).view(n, T)  # [n, T] packed position of each kept token
    index[:, :P] = index[owners, :P]  # prompts are left-padded to P: the owner's columns are the same tokens
    packed_ids = input_ids[keep].unsqueeze(0)  # [1, L]
    packed_pos = position_ids(attention_mask.long())[keep].unsqueeze(0)  # [1, L]
    predict_at = index[:, P - 1:T - 1][needed]  # [M]
    targets = input_ids[:, P:][needed]  # [M]
    prompt_len = real[:, :P].sum(-1)  # [n]
    completion_len = real[:, P:].sum(-1)  # [n]
    layout = RowLayout(prompt_start=index[:, P - 1] - prompt_len + 1, prompt_len=prompt_len,
                       completion_start=torch.where(completion_len > 0, index[:, P], index[:, P - 1] + 1),
                       completion_len=completion_len, owner=owner)
    return packed_ids, packed_pos, predict_at, targets, layout
