"""Weights from the learner to a rollout worker process in bounded pieces: one shared-memory bucket of a fixed size,
refilled until the whole model has passed through it.

    learner:  for (name, tensor) in learner.full_named_parameters():      # one module at a time under ZeRO-3/FSDP2
                  writer.add(name, tensor)                                  # copied into the bucket; full -> flush
              writer.finish()
    flush:    ("chunk", version, index, layout) to the worker; wait for its ("chunk", version, index) acknowledgement
    worker:   copy_chunk(bucket, layout, staging)                          # bucket -> the worker's staging tensors

Host memory per push is the bucket (`rollout.push_bucket_mb`, 32 MiB by default) plus whatever one step of the
learner's iterator holds (one module's gathered tensors under ZeRO-3; nothing under DDP: the parameters themselves,
copied from the GPU straight into the bucket). The former design built a CPU dict of the whole model and then a
shared-memory block of the whole model (two host copies per rank: ~6 GB at 1.5B bf16 per rank, and a SIGBUS in
Docker's 64 MB /dev/shm).

Tensors travel in the engine's dtype (`wire_dtype`: the worker's weights are in the recipe's dtype, so a float32
master is rounded once, on the learner's device). A tensor larger than the bucket (an embedding of 151,936 x 1,536
in bf16 is 467 MB) is split into flat element ranges. Each piece starts at a 64-byte aligned offset.

Layout entry of one piece: (name, dtype name, full shape, first element, number of elements, byte offset in the
bucket). Worked example, bucket 256 bytes, float32 tensors a [10], b [100], c [3]:

    chunk 0: a[0:10] at byte 0 (40 B), b[0:48] at byte 64 (48 x 4 = 192 B: the bucket is full at 256)
    chunk 1: b[48:100] at byte 0 (208 B; the next aligned offset, 256, leaves no room)
    chunk 2: c[0:3] at byte 0

On the worker side the pieces land in staging tensors in host memory (allocated once and reused; never on the
engine's GPU, where vLLM sized its pool before any push), not in the engine's live weights: the worker is generating
the next batch with the previous version meanwhile, and applies the staged version when the "weights" command comes
up in its queue, host tensor by host tensor (rl/rollout/engines/worker.py).
"""
from __future__ import annotations

from typing import Callable

import torch

ALIGN = 64


def _align(n: int) -> int:
    return (n + ALIGN - 1) // ALIGN * ALIGN


class WeightBucket:
    """One shared-memory block of `size` bytes (`name=None`: create it; else attach to the learner's)."""

    def __init__(self, name: str | None = None, size: int = 0):
        from multiprocessing import shared_memory
        # the worker is spawned by the learner and shares its resource tracker: the block is unlinked once, by
        # the learner (close(unlink=True)), or by the tracker if the learner dies
        self.shm = shared_memory.SharedMemory(name=name, create=name is None, size=max(size, 1))

    @property
    def name(self) -> str:
        return self.shm.name

    @property
    def size(self) -> int:
        return self.shm.size

    def view(self, dtype: torch.dtype, offset: int, count: int) -> torch.Tensor:
        return torch.frombuffer(self.shm.buf, dtype=dtype, count=count, offset=offset)

    def close(self, unlink: bool = False) -> None:
        self.shm.close()
        if unlink:
            try:
                self.shm.unlink()
            except FileNotFoundError:
                pass


class BucketWriter:
    """Learner side: packs tensors into `bucket`, calling `flush(layout)` each time it is full and at `finish`.
    `flush` must return only once the reader has copied the chunk out (the next chunk overwrites it)."""

    def __init__(self, bucket: WeightBucket, flush: Callable[[list], None], wire_dtype: torch.dtype | None = None):
        self.bucket, self.flush, self.wire_dtype = bucket, flush, wire_dtype
        self.size = bucket.size
        self.layout: list = []
        self.used = 0  # bytes of the current chunk
        self.chunks = 0  # chunks flushed so far
        self.peak = 0  # the most bytes any chunk used
        self.bytes = 0  # payload bytes written

    def add(self, name: str, tensor: torch.Tensor) -> None:
        t = tensor.detach()
        if self.wire_dtype is not None and t.dtype != self.wire_dtype:
            t = t.to(self.wire_dtype)  # on the tensor's own device (one module at a time)
        flat, esize = t.reshape(-1), t.element_size()
        dtype = str(t.dtype).removeprefix("torch.")
        if flat.numel() == 0:
            self.layout.append((name, dtype, tuple(t.shape), 0, 0, 0))
            return
        start = 0
        while start < flat.numel():
            offset = _align(self.used)
            room = (self.size - offset) // esize if offset < self.size else 0
            if room <= 0:
                self._flush()
                continue
            take = min(room, flat.numel() - start)
            dst = self.bucket.view(torch.uint8, offset, take * esize)
            dst.copy_(flat[start:start + take].contiguous().view(torch.uint8))  # device -> shared memory
            self.layout.append((name, dtype, tuple(t.shape), start, take, offset))
            self.used = offset + take * esize
            self.bytes += take * esize
            start += take

    def finish(self) -> None:
        if self.layout:
            self._flush()

    def _flush(self) -> None:
        if not self.layout:
            raise ValueError(f"a push bucket of {self.size} bytes cannot hold one aligned element")
        self.peak = max(self.peak, self.used)
        self.flush(self.layout)
        self.chunks += 1
        self.layout, self.used = [], 0


def copy_chunk(bucket: WeightBucket, layout: list, staging: dict[str, torch.Tensor],
               device: torch.device | str = "cpu") -> None:
    """Worker side: copy one chunk's pieces out of the bucket into `staging` (name -> full tensor on `device`,
    allocated at first sight). Returns once the bucket may be overwritten."""
    device = torch.device(device)
    for name, dtype, shape, start, count, offset in layout:
        dt = getattr(torch, dtype)
        if name not in staging:
            staging[name] = torch.empty(shape, dtype=dt, device=device)
        if count:
            staging[name].view(-1)[start:start + count].copy_(bucket.view(dt, offset, count))
    if device.type == "cuda":
        torch.cuda.synchronize(device)  # the host -> device copies have read the bucket
