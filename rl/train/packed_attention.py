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
"""
from __future__ import annotations

import torch

NAME = "sdpa_packed"
ROW_KEYS = ("cu_seq_lens_q", "cu_seq_lens_k", "max_length_q", "max_length_k")


def sdpa_packed_attention(module, query, key, value, attention_mask, dropout: float = 0.0, scaling=None,
                          is_causal=None, **kwargs):
    """transformers' attention-function signature: query [1, heads, L, d], key/value [1, kv_heads, L, d] ->
    ([1, L, heads, d], None)."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    bounds = kwargs.get("cu_seq_lens_q")
    if bounds is None or query.shape[0] != 1 or key.shape[2] != query.shape[2]:
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                      is_causal=is_causal, **kwargs)
    rest = {k: v for k, v in kwargs.items() if k not in ROW_KEYS}
    bounds = bounds.tolist()
    rows = [sdpa_attention_forward(module, query[:, :, s:e], key[:, :, s:e], value[:, :, s:e], None, dropout=dropout,
                                   scaling=scaling, is_causal=True, **rest)[0]  # [1, l, heads, d]
            for s, e in zip(bounds[:-1], bounds[1:]) if e > s]
    return torch.cat(rows, dim=1), None


def register() -> None:
    """Make `sdpa_packed` a known attention implementation (idempotent)."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    AttentionInterface.register(NAME, sdpa_packed_attention)
    AttentionMaskInterface.register(NAME, sdpa_mask)


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
