"""A KV cache for the transformers engine's decoding loop (rl/rollout/engines/hf.py) that writes each step in place.

transformers' `DynamicCache` grows every layer's keys and values with `torch.cat` at every decoding step: step t copies
all t cached positions of every row, so a completion of L tokens copies O(L^2) positions per layer (16% of the tiny
workload's generation time in a cProfile of `python -m rl.bench.trl_side_by_side --profile`). `preallocated_cache(n)`
is a `DynamicCache` whose layers hold one buffer [B, H, n, D] allocated at the prefill: a step writes its position
into the buffer and attention reads the view [B, H, t, D] of the positions written so far. Same keys and values, same
attention inputs (`tests/rollout/test_kv_cache.py`: equal tokens and logprobs to DynamicCache's). A step past `n`
positions still works: the buffer doubles (one copy).

Dropping finished rows (`batch_select_indices`) and sharing a prompt's prefill among its samples
(`batch_repeat_interleave`) select or repeat rows of the buffer, as DynamicCache does with its tensors.
"""
from __future__ import annotations

import functools

import torch
from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer


class PreallocatedLayer(DynamicLayer):
    """A full-attention cache layer over a buffer of `capacity` positions (grown by doubling if exceeded).
    `keys`/`values` are views [B, H, length, D] of the buffers, as DynamicLayer's tensors are [B, H, length, D]."""

    def __init__(self, capacity: int):
        super().__init__()
        self.capacity = capacity
        self.length = 0

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs
               ) -> tuple[torch.Tensor, torch.Tensor]:
        """Write [B, H, q, D] new states at positions length..length+q-1; return the views of all positions."""
        q = key_states.shape[-2]
        if not self.is_initialized:
            self.dtype, self.device = key_states.dtype, key_states.device
            cap = max(self.capacity, q)
            self._k = key_states.new_empty(*key_states.shape[:2], cap, key_states.shape[-1])  # [B, H, cap, D]
            self._v = value_states.new_empty(*value_states.shape[:2], cap, value_states.shape[-1])  # [B, H, cap, Dv]
            self.is_initialized = True
        elif self.length + q > self._k.shape[-2]:  # past the capacity: double the buffers (one copy)
            grow = max(self._k.shape[-2], q)
            self._k = torch.cat([self._k, self._k.new_empty(*self._k.shape[:2], grow, self._k.shape[-1])], dim=-2)
            self._v = torch.cat([self._v, self._v.new_empty(*self._v.shape[:2], grow, self._v.shape[-1])], dim=-2)
        self._k[:, :, self.length:self.length + q] = key_states
        self._v[:, :, self.length:self.length + q] = value_states
        self.length += q
        self._views()
        return self.keys, self.values

    def _views(self) -> None:
        self.keys, self.values = self._k[:, :, :self.length], self._v[:, :, :self.length]

    def get_seq_length(self) -> int:
        return self.length

    def crop(self, tokens_to_remove: int) -> None:
        """Forget the last `tokens_to_remove` positions (a negative count, as DynamicLayer's non-deprecated form)."""
        self.length = max(0, self.length - abs(tokens_to_remove))
        if self.is_initialized:
            self._views()

    def batch_repeat_interleave(self, repeats: int) -> None:
        if self.length > 0:
            self._k = self._k.repeat_interleave(repeats, dim=0)
            self._v = self._v.repeat_interleave(repeats, dim=0)
            self._views()

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        if self.length > 0:
            self._k, self._v = self._k[indices], self._v[indices]
            self._views()

    def reorder_cache(self, beam_idx: torch.LongTensor) -> None:
        self.batch_select_indices(beam_idx.to(self.device))


def preallocated_cache(capacity: int) -> DynamicCache:
    """A DynamicCache whose layers (created lazily, one per attention layer) are PreallocatedLayer(capacity): pass
    capacity = prompt width + max new tokens to allocate each layer's keys and values once."""
    cache = DynamicCache()
    cache.layer_class_to_replicate = functools.partial(PreallocatedLayer, capacity)
    return cache
