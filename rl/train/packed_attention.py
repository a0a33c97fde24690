"""Row-by-row attention for packed micro-batches on `sdpa` (CPU, and any GPU without flash-attention).

transformers runs packed rows (position ids restarting on every row, no attention mask) through `sdpa` with a
block-diagonal [L, L] mask: the right result, but the kernel still visits all L^2 (query, key) pairs of the packed
sequence, (l_1 + ... + l_n)^2, where each row alone needs l_i^2. A micro-batch of four 1,000-token rows then pays for
16M pairs instead of 4M, which on CPU ate what packing saved in the MLPs (rl/bench/packing.py).

`sdpa_packed` is `sdpa` registered under its own name (transformers' AttentionInterface / AttentionMaskInterface): the
same mask function and, for every call without row boundaries, the same attention function, so generation and padded
forwards are unchanged. When the policy's packed forward passes the row boundaries (`cu_seq_lens_q`, the cumulative
lengths flash-attention's varlen kernel takes; rl/train/policy.py), it runs sdpa once per row with `is_causal=True`:
each row's attention exactly as it is alone, l_1^2 + ... + l_n^2 pairs. With flash-attention the same boundaries go to
its varlen kernel (transformers' own path); eager and flex use the block-diagonal mask.

    cu_seq_lens_q = [0, 3, 5]: rows [0, 3) and [3, 5) of the packed sequence -> sdpa(q[:, :, 0:3], ...) and
    sdpa(q[:, :, 3:5], ...), each causal, concatenated along the sequence: [1, 5, heads, head_dim]

Rows of similar length share one sdpa call (`row_buckets`): each is right-padded to the bucket's longest row (padding
repeats the row's last token) and the bucket runs as a batch [k, heads, longest, head_dim] with `is_causal=True`.
Causal attention never lets a real query see a padded key (padding comes after it), and padded queries' outputs are
dropped, so every real position gets its row-alone result and no gradient reaches the padding. A row joins a bucket
when padding it costs at most ROW_BATCH_PAIRS more (query, key) pairs, the price of a call: one call per micro-batch
of 32 rows of 27-66 tokens instead of 32 (the tiny workload's packed backward was 4x the padded one with one call per
row), while a 1,000-token row never shares a call with a 500-token one.

Shared prompts (`train.share_prompts`, rl/core/packing.py `pack_rows(share_prompts=True)`): the rows of a GRPO group
keep one copy of their prompt in the packed sequence, and the policy passes the rows' `RowLayout` as `shared_rows`
(transformers 5.x hands any extra keyword of `base_model(...)` down to the attention function for Llama and Qwen2, as
it does `cu_seq_lens_q`). Each row then becomes a "virtual row", the gather of [its prompt's positions] + [its
completion's positions], bucketed as above; the prompt's owner queries and outputs all its positions (causal), the
other rows query and output only their completions' (`COMPLETION_QUERIES`: a bottom-right causal mask, query t of the
completion seeing the prompt and completion steps <= t), so every packed position is output once. The MLPs,
projections and the LM head run once per prompt, and attention queries each prompt once.

    prompt [0, 2), completions [2, 3) and [3, 5) (row 1 not the owner) -> virtual rows [0, 1, 2] and [0, 1, 3, 4]:
    row 0 queries and outputs positions 0, 1, 2 (causal); row 1 queries 3, 4 over keys 0, 1, 3, 4 with the mask
    [[1, 1, 1, 0], [1, 1, 1, 1]] and outputs them
"""
from __future__ import annotations

import torch

NAME = "sdpa_packed"
ROW_KEYS = ("cu_seq_lens_q", "cu_seq_lens_k", "max_length_q", "max_length_k")
ROW_BATCH_PAIRS = 128 * 128  # extra (query, key) pairs a row may be padded by to share a call (about one call's cost)


def row_buckets(lengths: list[int], slack_pairs: int = ROW_BATCH_PAIRS) -> list[list[int]]:
    """Rows (indices into `lengths`) grouped for one attention call each: by decreasing length, a row joins the
    current bucket while longest^2 - length^2 <= slack_pairs (the pairs padding it to the bucket's longest row adds),
    else starts the next bucket. Empty rows are left out.

    Example: lengths [3, 66, 27, 1000, 0], slack 4356 (66^2) -> [[3], [1, 2, 0]]: 1000^2 - 66^2 > 4356, while
    66^2 - 27^2 and 66^2 - 3^2 are <= 4356. Slack 0 -> one bucket per distinct length: [[3], [1], [2], [0]].
    """
    order = sorted((i for i, n in enumerate(lengths) if n > 0), key=lambda i: -lengths[i])
    buckets: list[list[int]] = []
    for i in order:
        if buckets and lengths[buckets[-1][0]] ** 2 - lengths[i] ** 2 <= slack_pairs:
            buckets[-1].append(i)
        else:
            buckets.append([i])
    return buckets


SHARED_KEY = "shared_rows"  # the policy's packed forward with shared prompts passes the rows' RowLayout under this name
# shared prompts: the rows that do not own the prompt query their completion only (a bottom-right causal mask over
# [prompt] + [completion]); False: their whole virtual row, causally, the prompt's outputs dropped (the simpler form)
COMPLETION_QUERIES = True


def sdpa_packed_attention(module, query, key, value, attention_mask, dropout: float = 0.0, scaling=None,
                          is_causal=None, **kwargs):
    """transformers' attention-function signature: query [1, heads, L, d], key/value [1, kv_heads, L, d] ->
    ([1, L, heads, d], None). Row by row when given `cu_seq_lens_q` or `shared_rows` (rl/core/packing.py
    `RowLayout`), else plain sdpa."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    bounds, layout = kwargs.get("cu_seq_lens_q"), kwargs.get(SHARED_KEY)
    if (bounds is None and layout is None) or query.shape[0] != 1 or key.shape[2] != query.shape[2]:
        rest = {k: v for k, v in kwargs.items() if k != SHARED_KEY}
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                      is_causal=is_causal, **rest)
    rest = {k: v for k, v in kwargs.items() if k not in ROW_KEYS and k != SHARED_KEY}
    if layout is not None:  # virtual rows: [prompt copy] + [completion]; the owner outputs both, the others the latter
        prompt_start, prompt_len, comp_start, comp_len, owner = (t.tolist() for t in layout)
    else:  # rows [start, end): a "prompt" of the whole row and no completion
        bounds = bounds.tolist()
        prompt_start, comp_start = bounds[:-1], bounds[1:]
        prompt_len = [e - s for s, e in zip(bounds[:-1], bounds[1:])]
        comp_len, owner = [0] * len(prompt_len), [True] * len(prompt_len)
    n = len(prompt_len)
    # the owner (or an unshared row) queries its whole virtual row, causally; with COMPLETION_QUERIES the other rows
    # query their completion only (bottom-right causal over [prompt] + [completion]), else their whole virtual row
    tail = [not owner[r] and COMPLETION_QUERIES for r in range(n)]
    lengths = [p + c if (o or c) else 0 for p, c, o in zip(prompt_len, comp_len, owner)]  # nothing to output: skip
    outputs, positions = [], []  # per bucket: [m, heads, d] outputs of its real positions, [m] their packed positions
    for part in (False, True):
        part_lengths = [lengths[r] if tail[r] == part else 0 for r in range(n)]
        for bucket in row_buckets(part_lengths, ROW_BATCH_PAIRS):
            col = lambda values: torch.tensor([values[r] for r in bucket])[:, None]  # noqa: E731  [k, 1]
            p, length = col(prompt_len), col(lengths)
            first_out = col([0 if owner[r] else prompt_len[r] for r in range(n)])  # [k, 1] first step it outputs
            q0 = first_out if part else torch.zeros_like(p)  # [k, 1] first step it queries

            def packed_index(s):  # steps [k, m] of the virtual rows -> packed positions [k, m]
                s = torch.minimum(s, length - 1)  # padding repeats the row's last token (a valid index)
                return torch.where(s < p, col(prompt_start) + s, col(comp_start) + s - p).to(query.device)
            k_steps = torch.arange(int(length.max()))[None]  # [1, Lk]
            q_steps = q0 + torch.arange(int((length - q0).max()))[None]  # [k, Lq]
            k_idx, q_idx = packed_index(k_steps), packed_index(q_steps)  # [k, Lk], [k, Lq]
            q = query[0][:, q_idx].transpose(0, 1)  # [k, heads, Lq, d]
            k, v = (t[0][:, k_idx].transpose(0, 1) for t in (key, value))  # [k, kv_heads, Lk, d]
            # causal: a row's query at step t sees its steps <= t (padded queries repeat the last step's row)
            last = torch.minimum(q_steps, length - 1)[:, None, :, None]  # [k, 1, Lq, 1]
            mask = (k_steps[:, None, None, :] <= last).to(query.device) if part else None  # [k, 1, Lq, Lk]
            out = sdpa_attention_forward(module, q, k, v, mask, dropout=dropout, scaling=scaling, is_causal=not part,
                                         **rest)[0]  # [k, Lq, heads, d]
            real = ((q_steps < length) & (q_steps >= first_out)).to(query.device)  # [k, Lq] positions it outputs
            outputs.append(out[real])  # [m, heads, d], rows in bucket order, steps in order
            positions.append(q_idx[real])  # [m]
    order = torch.argsort(torch.cat(positions))  # [L] -> back to packed order (every position output exactly once)
    return torch.cat(outputs)[order].unsqueeze(0), None  # [1, L, heads, d]


def register() -> None:
    """Make `sdpa_packed` a known attention implementation (idempotent)."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    AttentionInterface.register(NAME, sdpa_packed_attention)
    AttentionMaskInterface.register(NAME, sdpa_mask)


def is_row_attention(lm: torch.nn.Module) -> bool:
    """Whether `lm` runs `sdpa_packed` (the only attention that takes shared prompts)."""
    config = lm.config.get_text_config() if hasattr(lm.config, "get_text_config") else lm.config
    return getattr(config, "_attn_implementation", None) == NAME


def use_row_attention(lm: torch.nn.Module) -> bool:
    """Switch a model that runs `sdpa` to `sdpa_packed` (in place; not saved: transformers does not write the
    attention implementation into config.json). Returns whether it did."""
    config = lm.config.get_text_config() if hasattr(lm.config, "get_text_config") else lm.config
    if getattr(config, "_attn_implementation", None) != "sdpa":
        return False
    register()
    lm.set_attn_implementation(NAME)
    return True


def row_boundaries(attention_mask: torch.Tensor) -> dict[str, torch.Tensor | int]:
    """[n, T] attention mask -> the packed sequence's row boundaries as flash-attention's varlen keywords:
    cu_seq_lens_q/k [n + 1] int32 (0, l_1, l_1 + l_2, ...), max_length_q/k. Rows [[0, 1, 1], [1, 1, 1]] ->
    cu [0, 2, 5], max 3."""
    lengths = attention_mask.sum(-1).to(torch.int32)  # [n]
    cu = torch.nn.functional.pad(lengths.cumsum(0, dtype=torch.int32), (1, 0))  # [n + 1]
    longest = int(lengths.max())
    return {"cu_seq_lens_q": cu, "cu_seq_lens_k": cu, "max_length_q": longest, "max_length_k": longest}
