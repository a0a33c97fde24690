"""Stream mode of the rollout worker (`rollout.stream: true`): groups come back as they complete, and weights change
between decode steps.

    worker = StreamWorker(EngineSpec(engine="vllm", model_path=...))   # a RolloutWorker whose process streams
    job = worker.submit(prompts, params)            # its prompts join the sequences already decoding
    worker.push_weights(version=1, weights=...)     # applied between two decode steps, not after the jobs before it
    job, prompt, completions, idle_s, busy_s = worker.next_group()   # the next group finished, whichever job

The process side (`stream_commands`, run by rl/rollout/engines/worker_process.py when `EngineSpec.stream`) never
blocks on a job: between two decode steps it reads every waiting command (a "generate" queues the job's sequences,
a "weights" applies the staged version at once and acknowledges it), then asks the engine for one decode step.
Running sequences keep going with the new weights; the engine records the version of every token
(`Completion.versions`) and the logprob it sampled each token with. A group (the n completions of one prompt) is
sent as soon as its last sequence finishes (rl/core/streaming.py `GroupAssembler`), with the seconds the engine
has spent waiting for work (`idle_s`: no sequence to decode) and decoding (`busy_s`) so far.

A streaming engine has, besides `update_weights` and `close`:

    submit(job, prompts, params)   queue the job's len(prompts) x params.n sequences (FIFO)
    step() -> [((job, prompt, sample), Completion), ...]   one decode step of every running sequence (joining
                                   queued ones into free slots first); the sequences that finished in it
    pending() -> int               sequences queued or running
    version                        set by the worker after each weights version it applies (stamped on tokens)

Engines: the paced engine of rl/bench/long_tail.py, and vLLM colocated (rl/rollout/engines/vllm_stream.py wraps the
engine's `LLM`: add_request / step). The transformers engine and vLLM server mode cannot stream; the recipe check
refuses them (rl/config/off_policy.py).
"""
from __future__ import annotations

import collections
import os
import queue
import time
from dataclasses import replace

from rl.core.episode import SamplingParams
from rl.core.streaming import GroupAssembler
from rl.rollout.engines.worker import RolloutWorker, RolloutWorkerError
from rl.rollout.engines.worker_process import EngineSpec

__all__ = ["StreamWorker", "stream_commands", "streaming_engine"]


class StreamWorker(RolloutWorker):
    """The learner's side of a streaming worker: `submit` and `push_weights` as RolloutWorker's, `next_group()`
    instead of `result(job)`, and a blocking `generate` (evaluation) that waits for its own job's groups."""

    def __init__(self, spec: EngineSpec, timeout_s: float = 600.0, start_timeout_s: float = 600.0,
                 env: dict[str, str] | None = None):
        self._groups: collections.deque = collections.deque()
        super().__init__(replace(spec, stream=True), timeout_s, start_timeout_s, env)

    def _handle(self, message: tuple) -> None:
        if message[0] == "group":
            self._groups.append(message[1:])
        else:
            super()._handle(message)

    def next_group(self) -> tuple:
        """(job, prompt index in the job, its n completions, engine idle s, engine busy s), in completion order."""
        while not self._groups:
            self._handle(self._receive("generating (streamed groups)", self.timeout_s))
        return self._groups.popleft()

    def drain(self) -> None:
        """Take in every message the worker has already sent (never waits): the groups a step can choose from."""
        while True:
            try:
                message = self._results.get_nowait()
            except queue.Empty:
                return
            if message[0] == "error":
                last = message[1].strip().splitlines()[-1]
                raise RolloutWorkerError(f"rollout worker failed while generating (streamed): {last}\n{message[1]}")
            if message[0] != "progress":
                self._handle(message)

    def ready(self) -> int:
        """Groups received and not yet taken by next_group."""
        return len(self._groups)

    def result(self, job: int):
        raise RuntimeError("a streaming worker returns groups (next_group), not whole jobs")

    def generate(self, prompts: list[list[int]], params: SamplingParams):
        """Blocking generate (evaluation): this job's groups in prompt order; other jobs' groups stay queued."""
        if not prompts:  # a rank with no evaluation prompts of its own
            return []
        job = self.submit(prompts, params)
        mine: dict[int, list] = {}
        while len(mine) < len(prompts):
            for g in [g for g in self._groups if g[0] == job]:
                self._groups.remove(g)
                mine[g[1]] = g[2]
            if len(mine) < len(prompts):
                self._handle(self._receive(f"generating job {job} (streamed)", self.timeout_s))
        return [mine[i] for i in range(len(prompts))]


def streaming_engine(engine):
    """The engine itself if it streams, vLLM colocated wrapped for streaming, else a one-line RuntimeError."""
    if hasattr(engine, "submit") and hasattr(engine, "step"):
        return engine
    if getattr(engine, "_llm", None) is not None:
        from rl.rollout.engines.vllm_stream import VLLMStream
        return VLLMStream(engine)
    raise RuntimeError(f"{type(engine).__name__} cannot stream (rollout.stream needs vLLM colocated or a "
                       f"streaming engine)")


def stream_commands(engine, commands, results, apply, tick, parent_pid: int) -> None:
    """The worker process in stream mode, until "stop" (returns) or the parent is gone. `apply(count, version)`
    loads the staged weights into the engine (rl/rollout/engines/worker_process.py `_apply`); `tick()` is the
    heartbeat's progress (once per decode step)."""
    engine = streaming_engine(engine)
    engine.version = 0
    groups = GroupAssembler()
    idle_s = busy_s = 0.0
    while True:
        while True:  # every waiting command, before the next decode step; block only when there is nothing to decode
            busy = engine.pending() > 0
            t0 = time.perf_counter()
            try:
                cmd = commands.get_nowait() if busy else commands.get(timeout=1.0)
            except queue.Empty:
                if busy:
                    break
                idle_s += time.perf_counter() - t0
                if os.getppid() != parent_pid:  # orphaned: the learner is gone
                    return
                continue
            if not busy:
                idle_s += time.perf_counter() - t0
            kind = cmd[0]
            if kind == "stop":
                return
            if kind == "weights":  # between two decode steps: running sequences continue with these weights
                _, version, count = cmd
                apply(count, version)
                engine.version = version
                results.put(("weights", version))
            elif kind == "generate":
                _, job, prompts, params = cmd
                params = SamplingParams(**params)
                groups.expect(job, len(prompts), params.n)
                engine.submit(job, prompts, params)
            else:
                raise RuntimeError(f"command {kind!r} is not available in stream mode")
        t0 = time.perf_counter()
        finished = engine.step()
        tick()
        busy_s += time.perf_counter() - t0
        for (job, prompt, sample), completion in finished:
            group = groups.add(job, prompt, sample, completion)
            if group is not None:
                results.put(("group", job, prompt, group, idle_s, busy_s))
