"""Peak ALLOCATED CPU tensor memory of a block of code (not RSS), from the CPU allocator's own event stream.

    with PeakMemory() as mem:
        loss = f(x); loss.backward()
    mem.peak_bytes      # max over the block of (bytes allocated - bytes freed) since it began: the peak above the
                        # baseline at entry; what existed before (weights, optimizer state) is not counted
    mem.end_bytes       # the same balance at exit (e.g. .grad tensors created in the block and still alive)

How: `torch.profiler.profile(profile_memory=True)` makes c10's CPU allocator report every allocation and free
(size, pointer, time) while the block runs; the events are sorted by time and summed. This sees every tensor storage
the allocator hands out, including temporaries *inside* one aten op (e.g. the `exp(x - max)` buffer of logsumexp)
and autograd's saved tensors and gradients, which a TorchDispatchMode that only sees op outputs would miss. It does
not see memory that libraries take outside c10's allocator (oneDNN/MKL scratch, Python objects), nor caching: on CPU
a freed block really is freed. Frees of tensors that existed before the block count negatively, so `end_bytes` can be
below zero. Validated in tests/bench/test_bench_harness.py: `torch.empty(1000, 1000)` reads 4,000,000 bytes.

The profiler costs some time per op (it records op events too), so use it for memory, never for timing.
"""
from __future__ import annotations

import torch


def _walk(nodes):
    stack = list(nodes)
    while stack:
        node = stack.pop()
        yield node
        stack.extend(node.children)


class PeakMemory:
    """Context manager; after exit: `peak_bytes`, `end_bytes`, `num_allocations`, `largest_allocation`."""

    def __init__(self, device: str = "cpu"):
        self.device = device
        self.peak_bytes = self.end_bytes = self.num_allocations = self.largest_allocation = 0

    def __enter__(self) -> "PeakMemory":
        from torch.profiler import ProfilerActivity, profile
        self._prof = profile(activities=[ProfilerActivity.CPU], profile_memory=True, record_shapes=False,
                             with_stack=False)
        self._prof.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self._prof.__exit__(*exc)
        if exc[0] is not None:
            return
        from torch._C._profiler import _EventType
        events = [(e.start_time_ns, e.extra_fields.alloc_size)
                  for e in _walk(self._prof.profiler.kineto_results.experimental_event_tree())
                  if e.tag == _EventType.Allocation and str(e.extra_fields.device).startswith(self.device)]
        events.sort(key=lambda t: t[0])
        live = peak = 0
        for _, size in events:
            live += size
            peak = max(peak, live)
        self.peak_bytes, self.end_bytes = peak, live
        sizes = [s for _, s in events if s > 0]
        self.num_allocations = len(sizes)
        self.largest_allocation = max(sizes, default=0)
        del self._prof


def self_check() -> dict[str, int]:
    """Known cases: a [1000, 1000] float32 tensor (4,000,000 bytes); the same freed inside the block (peak stays,
    end returns to 0); logsumexp over a [1000, 1000] input (an op-internal temporary the size of its input)."""
    with PeakMemory() as alloc:
        a = torch.empty(1000, 1000)
    with PeakMemory() as freed:
        b = torch.empty(1000, 1000)
        del b
    x = torch.randn(1000, 1000)
    with PeakMemory() as lse:
        torch.logsumexp(x, dim=-1)
    del a, x
    return {"alloc_peak": alloc.peak_bytes, "alloc_end": alloc.end_bytes, "freed_peak": freed.peak_bytes,
            "freed_end": freed.end_bytes, "logsumexp_peak": lse.peak_bytes}
