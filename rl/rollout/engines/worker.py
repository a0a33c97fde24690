"""A rollout engine in a process of its own (I/O): asynchronous GRPO generates the next batches there while the
learner trains.

    worker = RolloutWorker(EngineSpec(engine="hf", model_path=..., ...))   # spawns the process, loads the engine
    job = worker.submit(prompts, params)            # returns at once; the worker generates in the background
    worker.push_weights(version=1, weights=learner.full_named_parameters())   # queued behind earlier jobs
    groups, version, seconds = worker.result(job)   # the completions and the policy version that produced them
    worker.close()

The worker executes commands strictly in order (generate, weights, generate, ...), so a batch submitted before a
weight push is generated with the older weights: that order is what bounds staleness (rl/rollout/episodes/async_rollouts.py).

Failures never hang the learner: every wait polls the worker's liveness and a deadline on silence (`timeout_s`, the
recipe's `rollout.timeout_s`): the longest the worker may go without sending anything. While it works the worker
reports progress: its engine ticks once per decoding step (transformers: one token for every row; vLLM colocated:
one engine step; server mode: every streamed event), each tensor applied during a push ticks, and a heartbeat thread
forwards "progress" at most every `heartbeat_s` (1 s, or a quarter of `timeout_s` if that is shorter) while ticks keep
coming. So a long but healthy 8k-token batch never times out however long it takes, and a worker stuck in one
place (a hung kernel, a deadlocked engine) sends nothing and fails `timeout_s` later. A worker that dies (killed,
out of memory) or raises gives `RolloutWorkerError` naming what it was doing; the worker itself exits when its
parent process disappears.

Weights travel in pieces through one fixed-size shared-memory bucket (rl/rollout/engines/weight_stream.py): the learner
fills it, sends the layout on a queue of its own and waits until the worker's receiving thread has copied the chunk
into its staging tensors, then refills it; the engine's live weights change only when the "weights" command comes
up in the command queue, so the batch being generated meanwhile keeps its version. The staging tensors are host
memory (one copy of the model in the engine's dtype), never the engine's GPU: vLLM sizes its pool from
`gpu_memory_utilization` before any push, and the transformers engine would otherwise hold the model twice on the
GPU. Applying a version copies each staged tensor from host memory into the engine's own weights (transformers:
straight into each parameter; vLLM: its layer-wise reload of host tensors; server mode: one tensor at a time to the
GPU for the NCCL broadcast), so a push adds no model-sized allocation on the worker's GPU; the peaks are in
docs/performance.md. The learner waits for the
previous version's acknowledgement before streaming the next into the staging tensors (by then the worker has long
applied it: pushes are one training step apart). No file descriptors are passed, so a worker that dies
mid-transfer leaves nothing half-shared behind.

Where the worker runs (its one GPU, or the CPU) and which worker pushes in server mode: rl/rollout/engines/placement.py.
`start_rollout_worker` is the learner's entry point: placement, the /dev/shm check, the engine's dtype.
"""
from __future__ import annotations

import contextlib
import os
import queue
import time
from dataclasses import asdict, replace

import torch

from rl.core.episode import SamplingParams
from rl.rollout.engines.weight_stream import BucketWriter, WeightBucket
from rl.rollout.engines.worker_process import EngineSpec, _worker_main

__all__ = ["EngineSpec", "RolloutWorker", "RolloutWorkerError", "start_rollout_worker"]


class RolloutWorkerError(RuntimeError):
    """The rollout worker died, raised, or made no progress for `timeout_s`."""


@contextlib.contextmanager
def _environment(env: dict[str, str] | None):
    """os.environ replaced by `env` while the worker process is spawned (a spawned child copies it at start)."""
    if env is None:
        yield
        return
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(env)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


class RolloutWorker:
    """Client side of the worker process. Not thread-safe; one per learner process."""

    def __init__(self, spec: EngineSpec, timeout_s: float = 600.0, start_timeout_s: float = 600.0,
                 env: dict[str, str] | None = None):
        """`env`: the worker process's environment (rl/rollout/engines/placement.py `worker_env`); None = the learner's."""
        ctx = torch.multiprocessing.get_context("spawn")
        # several heartbeats per deadline, so that one late heartbeat is not taken for silence
        spec = replace(spec, heartbeat_s=min(spec.heartbeat_s, timeout_s / 4))
        self.spec = spec
        self.timeout_s = timeout_s
        self.placement = self.gate_store = None  # set by start_rollout_worker
        self._commands, self._chunks, self._results = ctx.Queue(), ctx.Queue(), ctx.Queue()
        self._process = ctx.Process(target=_worker_main, args=(asdict(spec), self._commands, self._chunks,
                                                               self._results, os.getpid()),
                                    daemon=True, name="rollout-worker")
        with _environment(env):
            self._process.start()
        self._next_job = 0
        self._done: dict[int, tuple] = {}
        self._acked_version = 0
        self._pushed_version = 0
        self._bucket: WeightBucket | None = None
        self._acked_chunk: tuple[int, int] | None = None
        self.last_push: dict[str, int] = {}  # chunks, peak_bytes (the most any chunk used), bytes of the last push
        self.push_wait_s = 0.0  # seconds the last push_weights waited for the worker to apply the version before
        message = self._receive("starting its engine", start_timeout_s)
        if message[0] != "ready":
            raise RolloutWorkerError(f"rollout worker sent {message[0]!r} while starting")
        self.pid = message[1]

    def submit(self, prompts: list[list[int]], params: SamplingParams) -> int:
        job = self._next_job
        self._next_job += 1
        self._commands.put(("generate", job, prompts, asdict(params)))
        return job

    def submit_episodes(self, batch: list[tuple], params: SamplingParams, first_group_id: int = 0) -> int:
        """Whole multi-turn episodes of the (index, row) pairs, run in the worker (EngineSpec.episode_runner);
        `result(job)` returns the runner's output in place of the completions."""
        job = self._next_job
        self._next_job += 1
        self._commands.put(("episodes", job, batch, asdict(params), first_group_id))
        return job

    def push_weights(self, version: int, weights) -> None:
        """Stream new weights: `weights` yields checkpoint-named tensors (consumed here; collective under
        ZeRO-3/FSDP2), in bucket-sized chunks; returns once the worker has staged all of them. The worker applies
        them after the jobs submitted before this call. Waits first until the worker applied the previous push."""
        t0 = time.time()
        if self._pushed_version > self._acked_version:
            self._wait_for_version(self._pushed_version)
        self.push_wait_s = time.time() - t0  # learner idle: the worker had not taken the previous version yet
        if not self.spec.pushes:  # server mode, rank > 0: rank 0's worker pushes; take part in the gathers only
            for _ in weights:
                pass
            self._commands.put(("weights", version, 0))
            self._pushed_version = version
            return
        if self._bucket is None:
            self._bucket = WeightBucket(size=self.spec.bucket_bytes)

        def flush(layout):
            index = writer.chunks
            self._chunks.put(("chunk", version, index, self._bucket.name, layout))
            while self._acked_chunk != (version, index):
                self._handle(self._receive(f"receiving chunk {index} of weights version {version}", self.timeout_s))

        writer = BucketWriter(self._bucket, flush, wire_dtype=getattr(torch, self.spec.dtype))
        names = set()
        for name, tensor in weights:
            writer.add(name, tensor)
            names.add(name)
        writer.finish()
        self.last_push = {"chunks": writer.chunks, "peak_bytes": writer.peak, "bytes": writer.bytes}
        self._commands.put(("weights", version, len(names)))
        self._pushed_version = version

    def engine_weights(self) -> dict[str, torch.Tensor] | None:
        """The transformers engine's parameters as the worker holds them, after the commands queued before (None
        for vLLM). For tests and debugging: the whole model crosses the queue."""
        self._commands.put(("state",))
        while True:
            message = self._receive("sending its weights", self.timeout_s)
            if message[0] == "state":
                return message[1]
            self._handle(message)

    def _wait_for_version(self, version: int) -> None:
        while self._acked_version < version:
            self._handle(self._receive(f"loading weights version {version}", self.timeout_s))

    def _handle(self, message: tuple) -> None:
        if message[0] == "generated":
            self._done[message[1]] = message[2:]
        elif message[0] == "weights":
            self._acked_version = message[1]
        elif message[0] == "chunk":
            self._acked_chunk = (message[1], message[2])

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
        """The worker's next message other than "progress"; `timeout_s` is the longest silence allowed: every
        message, "progress" included, starts it again (a long job that keeps progressing never times out)."""
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                message = self._results.get(timeout=0.5)
            except queue.Empty:
                if not self._process.is_alive():
                    raise RolloutWorkerError(f"rollout worker (pid {self._process.pid}) died with exit code "
                                             f"{self._process.exitcode} while {what}") from None
                if time.monotonic() > deadline:
                    raise RolloutWorkerError(f"rollout worker (pid {self._process.pid}) made no progress for "
                                             f"{timeout_s:g}s while {what} (rollout.timeout_s is the longest "
                                             f"silence allowed)") from None
                continue
            if message[0] == "error":
                last = message[1].strip().splitlines()[-1]
                raise RolloutWorkerError(f"rollout worker failed while {what}: {last}\n{message[1]}")
            if message[0] == "progress":
                deadline = time.monotonic() + timeout_s
                continue
            return message

    def staged_bytes(self) -> dict[str, int]:
        """Bytes of staged weights the worker holds per device type ("cpu": host memory), after the commands
        queued before. For tests and debugging."""
        self._commands.put(("staging",))
        while True:
            message = self._receive("reporting its staging memory", self.timeout_s)
            if message[0] == "staging":
                return message[1]
            self._handle(message)

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
        for q in (self._commands, self._chunks, self._results):
            q.cancel_join_thread()
            q.close()
        if self._bucket is not None:
            self._bucket.close(unlink=True)
            self._bucket = None


def start_rollout_worker(cfg, model_path: str, seed: int, max_model_len: int, rank: int = 0, local_rank: int = 0,
                         local_world: int = 1, world: int = 1, episodes: tuple[str, dict] | None = None
                         ) -> RolloutWorker:
    """The asynchronous mode's engine for one learner process: a RolloutWorker on the device the placement gives
    (rl/rollout/engines/placement.py), its engine's weights in the recipe's dtype (`model.dtype`), after checking /dev/shm
    has room for the push buckets of every worker on the node. Server mode with several ranks: the workers meet at
    a push gate hosted by rank 0 (rl/rollout/engines/version_gate.py; collective: every rank calls this at the same point).
    On CPU the cores are split between the worker (rollout.worker_threads, default half of this process's share)
    and the learner. `episodes`: (runner "module:function", its picklable spec) for multi-turn episodes run in the
    worker (rl/rollout/episodes/async_episodes.py)."""
    import shutil

    from rl.rollout.engines.placement import check_shared_memory, place_worker, worker_env
    r = cfg.rollout
    server = r.engine == "vllm" and r.vllm_mode == "server"
    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    where = place_worker(local_rank, local_world, gpus, r.worker_devices, rank=rank, server=server)
    gate, gate_store = None, None
    if server and world > 1:  # before any check that could fail on one rank only
        from rl.rollout.engines.version_gate import host_gate, share_address
        address = None
        if rank == 0:
            gate_store, address = host_gate(os.environ.get("MASTER_ADDR", "127.0.0.1"))
        host, port = share_address(address, rank)
        gate = (host, port, world, float(r.timeout_s))
    bucket = r.push_bucket_mb * 2 ** 20
    if where.pushes and os.path.isdir("/dev/shm"):  # server mode: rank 0's worker is the only one with a bucket
        check_shared_memory(bucket, 1 if server else local_world, shutil.disk_usage("/dev/shm").free)
    threads = 1
    if gpus == 0:
        cores = max(1, (os.cpu_count() or 2) // local_world)  # this process's share of the node's cores
        threads = r.worker_threads or max(1, cores // 2)
        torch.set_num_threads(max(1, cores - threads))
    extra = {} if r.engine == "hf" else dict(
        gpu_memory_utilization=r.vllm_gpu_memory_utilization, mode=r.vllm_mode, server_url=r.vllm_server_url,
        timeout_s=r.timeout_s, seed_mode=r.seed_mode)
    if r.stream and r.engine == "vllm":  # vLLM settings of stream mode (rl/rollout/engines/vllm_stream.py)
        from rl.rollout.engines.vllm_stream import STREAM_VLLM_KWARGS, STREAM_VLLM_CPU_KWARGS
        extra.update({**STREAM_VLLM_KWARGS, **(STREAM_VLLM_CPU_KWARGS if where.gpu_index is None else {})})
    spec = EngineSpec(engine=r.engine, model_path=model_path, dtype=cfg.model.dtype, seed=seed,
                      max_model_len=max_model_len, threads=threads, engine_kwargs=extra,
                      device="cpu" if where.gpu_index is None else "cuda:0", pushes=where.pushes, bucket_bytes=bucket,
                      gate=gate, stream=r.stream, episode_runner=episodes[0] if episodes else None,
                      episode_spec=episodes[1] if episodes else None)
    worker_class = RolloutWorker
    if r.stream:  # groups as they complete, weights between decode steps (rl/rollout/engines/stream_worker.py)
        from rl.rollout.engines.stream_worker import StreamWorker as worker_class
    worker = worker_class(spec, timeout_s=r.timeout_s, env=worker_env(where, dict(os.environ)))
    worker.placement, worker.gate_store = where, gate_store  # rank 0 hosts the gate's store while the run lasts
    return worker
