"""A rollout engine in a process of its own (I/O): asynchronous GRPO generates the next batches there while the
learner trains.

    worker = RolloutWorker(EngineSpec(engine="hf", model_path=..., ...))   # spawns the process, loads the engine
    job = worker.submit(prompts, params)            # returns at once; the worker generates in the background
    worker.push_weights(version=1, weights=learner.full_named_parameters())   # queued behind earlier jobs
    groups, version, seconds = worker.result(job)   # the completions and the policy version that produced them
    worker.close()

The worker executes commands strictly in order (generate, weights, generate, ...), so a batch submitted before a
weight push is generated with the older weights: that order is what bounds staleness (rl/rollout/async_rollouts.py).

Failures never hang the learner: every wait polls the worker's liveness and a deadline (`timeout_s`). A worker that
dies (killed, out of memory) or raises gives `RolloutWorkerError` naming what it was doing; the worker itself exits
when its parent process disappears.

Weights travel through one shared-memory block (`WeightBuffer`): the learner writes every tensor into it and sends
only (name, dtype, shape, offset) through the queue; the worker copies them into its engine and acknowledges the
version, and the learner waits for that acknowledgement before writing the next version into the same block (by
then the worker has long applied it: pushes are one training step apart). No file descriptors are passed, so a
worker that dies mid-transfer leaves nothing half-shared behind.
"""
from __future__ import annotations

import os
import queue
import time
import traceback
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from rl.core.episode import SamplingParams


class RolloutWorkerError(RuntimeError):
    """The rollout worker died, raised, or did not answer in time."""


@dataclass
class EngineSpec:
    """Everything the worker needs to build its engine (picklable)."""

    engine: str  # hf | vllm
    model_path: str
    dtype: str = "float32"
    seed: int = 0
    max_model_len: int = 2048
    threads: int = 1  # torch threads in the worker (CPU)
    engine_kwargs: dict[str, Any] = field(default_factory=dict)  # extra VLLMEngine arguments


def _build_engine(spec: EngineSpec):
    from rl.train.models import load_causal_lm, load_tokenizer

    tokenizer = load_tokenizer(spec.model_path)
    if spec.engine == "hf":
        from rl.rollout.hf import HFEngine
        model = load_causal_lm(spec.model_path, spec.dtype).eval()
        return HFEngine(model, tokenizer), model
    if spec.engine == "vllm":
        from rl.rollout.vllm import VLLMEngine
        return VLLMEngine(spec.model_path, tokenizer, dtype=spec.dtype, seed=spec.seed,
                          max_model_len=spec.max_model_len, **spec.engine_kwargs), None
    raise ValueError(f"unknown rollout engine {spec.engine!r}")


class WeightBuffer:
    """Named tensors in one shared-memory block: `write` (learner) / `read` (worker). Layout entries are
    (name, dtype name, shape, byte offset, byte size); 64-byte aligned."""

    def __init__(self, name: str | None = None, size: int = 0):
        from multiprocessing import shared_memory
        # the worker is spawned by the learner and shares its resource tracker: the block is unlinked once, by
        # the learner (close(unlink=True)), or by the tracker if the learner dies
        self.shm = shared_memory.SharedMemory(name=name, create=name is None, size=max(size, 1))

    @staticmethod
    def layout_of(tensors: dict[str, torch.Tensor]) -> tuple[list, int]:
        layout, offset = [], 0
        for name, t in tensors.items():
            nbytes = t.numel() * t.element_size()
            layout.append((name, str(t.dtype).removeprefix("torch."), tuple(t.shape), offset, nbytes))
            offset += (nbytes + 63) // 64 * 64
        return layout, offset

    def write(self, tensors: dict[str, torch.Tensor], layout: list) -> None:
        for (name, _, _, offset, nbytes), t in zip(layout, tensors.values()):
            if nbytes:
                dst = torch.frombuffer(self.shm.buf, dtype=torch.uint8, count=nbytes, offset=offset)
                dst.copy_(t.detach().contiguous().view(-1).view(torch.uint8))

    def read(self, layout: list) -> dict[str, torch.Tensor]:
        """Views into the block (valid until the next write): copy them before acknowledging."""
        out = {}
        for name, dtype, shape, offset, nbytes in layout:
            count = nbytes // torch.empty(0, dtype=getattr(torch, dtype)).element_size()
            flat = torch.frombuffer(self.shm.buf, dtype=getattr(torch, dtype), count=count, offset=offset) \
                if nbytes else torch.empty(0, dtype=getattr(torch, dtype))
            out[name] = flat.view(shape)
        return out

    def close(self, unlink: bool = False) -> None:
        self.shm.close()
        if unlink:
            try:
                self.shm.unlink()
            except FileNotFoundError:
                pass


def _worker_main(spec: dict, commands, results, parent_pid: int) -> None:
    """The worker process: build the engine, then execute commands in order until "stop" or the parent is gone."""
    try:
        spec = EngineSpec(**spec)
        torch.set_num_threads(max(1, spec.threads))
        engine, model = _build_engine(spec)
        version = 0
        buffer = None
        results.put(("ready", os.getpid()))
        while True:
            try:
                cmd = commands.get(timeout=1.0)
            except queue.Empty:
                if os.getppid() != parent_pid:  # orphaned: the learner is gone
                    return
                continue
            kind = cmd[0]
            if kind == "stop":
                engine.close()
                if buffer is not None:
                    buffer.close()
                return
            if kind == "weights":
                _, version, block, layout = cmd
                if buffer is None or buffer.shm.name != block:
                    buffer = WeightBuffer(block)
                weights = buffer.read(layout)
                if model is not None:  # transformers engine: copy into its own model
                    with torch.no_grad():
                        params = dict(model.named_parameters())
                        for name, tensor in weights.items():
                            params[name].copy_(tensor)
                else:  # the engine copies them into its own weights (layer-wise reload)
                    engine.update_weights(None, iter(weights.items()))
                del weights
                results.put(("weights", version))
            elif kind == "generate":
                _, job, prompts, params = cmd
                t0 = time.perf_counter()
                groups = engine.generate(prompts, SamplingParams(**params))
                results.put(("generated", job, version, groups, time.perf_counter() - t0))
    except BaseException:  # noqa: BLE001 - reported to the learner, then exit
        results.put(("error", traceback.format_exc()))


class RolloutWorker:
    """Client side of the worker process. Not thread-safe; one per learner process."""

    def __init__(self, spec: EngineSpec, timeout_s: float = 600.0, start_timeout_s: float = 600.0):
        ctx = torch.multiprocessing.get_context("spawn")
        self.timeout_s = timeout_s
        self._commands, self._results = ctx.Queue(), ctx.Queue()
        self._process = ctx.Process(target=_worker_main, args=(asdict(spec), self._commands, self._results,
                                                               os.getpid()), daemon=True, name="rollout-worker")
        self._process.start()
        self._next_job = 0
        self._done: dict[int, tuple] = {}
        self._acked_version = 0
        self._pushed_version = 0
        self._buffer: WeightBuffer | None = None
        message = self._receive("starting its engine", start_timeout_s)
        if message[0] != "ready":
            raise RolloutWorkerError(f"rollout worker sent {message[0]!r} while starting")
        self.pid = message[1]

    def submit(self, prompts: list[list[int]], params: SamplingParams) -> int:
        job = self._next_job
        self._next_job += 1
        self._commands.put(("generate", job, prompts, asdict(params)))
        return job

    def push_weights(self, version: int, weights) -> None:
        """Queue new weights: `weights` yields checkpoint-named tensors (consumed here; collective under
        ZeRO-3/FSDP2). Waits until the worker applied the previous push, whose block this one reuses."""
        tensors = {name: t.detach().to("cpu") for name, t in weights}
        layout, size = WeightBuffer.layout_of(tensors)
        if self._pushed_version > self._acked_version:
            self._wait_for_version(self._pushed_version)
        if self._buffer is None or self._buffer.shm.size < size:
            if self._buffer is not None:
                self._buffer.close(unlink=True)
            self._buffer = WeightBuffer(size=size)
        self._buffer.write(tensors, layout)
        self._commands.put(("weights", version, self._buffer.shm.name, layout))
        self._pushed_version = version

    def _wait_for_version(self, version: int) -> None:
        while self._acked_version < version:
            self._handle(self._receive(f"loading weights version {version}", self.timeout_s))

    def _handle(self, message: tuple) -> None:
        if message[0] == "generated":
            self._done[message[1]] = message[2:]
        elif message[0] == "weights":
            self._acked_version = message[1]

    def result(self, job: int) -> tuple[list, int, float]:
        """Wait for a submitted job: (completions per prompt, policy version that generated them, seconds)."""
        while job not in self._done:
            self._handle(self._receive(f"generating job {job}", self.timeout_s))
        version, groups, seconds = self._done.pop(job)
        return groups, version, seconds

    def generate(self, prompts: list[list[int]], params: SamplingParams):
        """Blocking generate (RolloutEngine protocol), e.g. for evaluation: queued behind earlier jobs."""
        return self.result(self.submit(prompts, params))[0]

    def _receive(self, what: str, timeout_s: float) -> tuple:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                message = self._results.get(timeout=0.5)
            except queue.Empty:
                if not self._process.is_alive():
                    raise RolloutWorkerError(f"rollout worker (pid {self._process.pid}) died with exit code "
                                             f"{self._process.exitcode} while {what}") from None
                if time.monotonic() > deadline:
                    raise RolloutWorkerError(f"rollout worker (pid {self._process.pid}) did not answer in "
                                             f"{timeout_s:.0f}s while {what} (rollout.timeout_s)") from None
                continue
            if message[0] == "error":
                last = message[1].strip().splitlines()[-1]
                raise RolloutWorkerError(f"rollout worker failed while {what}: {last}\n{message[1]}")
            return message

    def close(self) -> None:
        if self._process.is_alive():
            try:
                self._commands.put(("stop",))
            except Exception:  # noqa: BLE001 - the queue may already be broken
                pass
            self._process.join(timeout=30)
        if self._process.is_alive():
            self._process.kill()
            self._process.join(timeout=10)
        for q in (self._commands, self._results):
            q.cancel_join_thread()
            q.close()
        if self._buffer is not None:
            self._buffer.close(unlink=True)
            self._buffer = None
