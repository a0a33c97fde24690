"""The inside of a rollout worker process (rl/rollout/engines/worker.py is the learner's side): build the engine from
an `EngineSpec`, execute commands in order (generate, weights, ...), receive weight chunks into host staging tensors
on a thread of its own, apply a staged version into the engine, and report progress (`_Heartbeat`) so that the
learner's deadline is one on silence, not on the job's length.
"""
from __future__ import annotations

import os
import queue
import threading
import time
import traceback
from dataclasses import dataclass, field
from typing import Any

import torch

from rl.core.episode import SamplingParams
from rl.rollout.engines.weight_stream import WeightBucket, copy_chunk


@dataclass
class EngineSpec:
    """Everything the worker needs to build its engine (picklable)."""

    engine: str  # hf | vllm
    model_path: str
    dtype: str = "float32"
    seed: int = 0
    max_model_len: int = 2048
    threads: int = 1  # torch threads in the worker (CPU)
    device: str = "cpu"  # the engine's device inside the worker (cuda:0 = the one GPU its CUDA_VISIBLE_DEVICES names)
    pushes: bool = True  # False: server mode on a rank other than 0 (that rank's worker pushes to the server)
    bucket_bytes: int = 32 * 2 ** 20  # shared-memory bucket of a push (rollout.push_bucket_mb)
    heartbeat_s: float = 1.0  # the most seconds between two "progress" messages while the engine makes progress
    # "module:function" building (engine, model or None) from this spec instead of hf/vllm (tests, custom engines)
    engine_factory: str | None = None
    # (host, port, workers, timeout_s) of the push gate: server mode with several ranks (rl/rollout/engines/version_gate.py)
    gate: tuple | None = None
    engine_kwargs: dict[str, Any] = field(default_factory=dict)  # extra VLLMEngine arguments
    # multi-turn episodes run whole in the worker ("episodes" command): "module:function" building the runner from
    # (episode_spec, engine, model_path), rl/rollout/episodes/async_episodes.py; None: single-turn batches only
    episode_runner: str | None = None
    episode_spec: dict | None = None
    stream: bool = False  # rollout.stream: groups as they complete, weights between decode steps (stream_worker.py)


def _load(path: str):
    """The object a "module:function" string names."""
    import importlib
    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name)


def _build_engine(spec: EngineSpec):
    if spec.engine_factory:
        return _load(spec.engine_factory)(spec)
    from rl.train.models import load_causal_lm, load_tokenizer

    tokenizer = load_tokenizer(spec.model_path)
    if spec.engine == "hf":
        from rl.rollout.engines.hf import HFEngine
        # the recipe's dtype (model.dtype), as vLLM loads it: bf16 weights sample like the bf16 learner computes
        model = load_causal_lm(spec.model_path, spec.dtype).to(spec.device).eval()
        return HFEngine(model, tokenizer), model
    if spec.engine == "vllm":
        from rl.rollout.engines.vllm import VLLMEngine
        return VLLMEngine(spec.model_path, tokenizer, dtype=spec.dtype, seed=spec.seed,
                          max_model_len=spec.max_model_len, **spec.engine_kwargs), None
    raise ValueError(f"unknown rollout engine {spec.engine!r}")


def _receive_chunks(chunks, results, staging: dict) -> None:
    """The worker's receiving thread: copy each chunk out of the learner's bucket into `staging` (host memory),
    acknowledge it."""
    bucket = None
    try:
        while True:
            cmd = chunks.get()
            if cmd is None:
                break
            _, version, index, block, layout = cmd
            if bucket is None or bucket.name != block:
                bucket = WeightBucket(block)
            copy_chunk(bucket, layout, staging, "cpu")  # never the engine's device (module docstring)
            results.put(("chunk", version, index))
    except BaseException:  # noqa: BLE001 - reported to the learner
        results.put(("error", traceback.format_exc()))
    finally:
        if bucket is not None:
            bucket.close()


def _ticking(items, tick):
    """`items`, calling tick() before each (a push's tensors count as progress)."""
    for item in items:
        tick()
        yield item


def _apply(engine, model, staging: dict, count: int, version: int, tick=lambda: None) -> None:
    """The staged weights (host memory) into the engine (`count` tensors were sent; 0: nothing to apply here)."""
    if not count:
        return
    if len(staging) != count:  # every chunk of this version was acknowledged before the command was sent
        raise RuntimeError(f"weights version {version}: {len(staging)} tensors staged, {count} sent")
    if model is not None:  # transformers engine: host -> device straight into its own parameters (no device copy)
        with torch.no_grad():
            params = dict(model.named_parameters())
            for name, tensor in _ticking(staging.items(), tick):
                params[name].copy_(tensor)
    else:  # the engine copies them into its own weights (layer-wise reload of host tensors; server: NCCL/disk)
        engine.update_weights(None, _ticking(staging.items(), tick))


class _Heartbeat:
    """The worker's progress clock: `tick()` (this worker's own progress; cheap: called per decoding step), `relay()`
    (another rank's progress seen at the push gate), and a daemon thread that sends ("progress", ticks) at most every
    `every_s` seconds, only when something ticked since the last message; own progress also goes to `publish` (the
    gate's shared counter), relayed progress does not (rl/rollout/engines/version_gate.py)."""

    def __init__(self, results, every_s: float):
        self.ticks, self.own, self._sent, self._published = 0, 0, 0, 0
        self.publish = None
        self._results, self._every_s = results, every_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="worker-heartbeat")
        self._thread.start()

    def tick(self) -> None:
        self.own += 1
        self.ticks += 1

    def relay(self) -> None:
        self.ticks += 1

    def _run(self) -> None:
        while not self._stop.wait(self._every_s):
            ticks, own = self.ticks, self.own
            if ticks != self._sent:
                self._sent = ticks
                self._results.put(("progress", ticks))
            if own != self._published and self.publish is not None:
                self._published = own
                try:
                    self.publish()
                except Exception:  # noqa: BLE001 - the gate's own wait reports a broken store
                    pass

    def stop(self) -> None:
        self._stop.set()


def _worker_main(spec: dict, commands, chunks, results, parent_pid: int) -> None:
    """The worker process: build the engine, then execute commands in order until "stop" or the parent is gone."""
    try:
        spec = EngineSpec(**spec)
        torch.set_num_threads(max(1, spec.threads))
        engine, model = _build_engine(spec)
        heartbeat = _Heartbeat(results, spec.heartbeat_s)
        engine.on_progress = heartbeat.tick  # the engine ticks once per decoding step
        runner = None  # the episode machinery (tools, sandboxes), built once around the engine
        if spec.episode_runner:
            runner = _load(spec.episode_runner)(spec.episode_spec, engine, spec.model_path)
        version = 0
        staging: dict[str, torch.Tensor] = {}  # the next version (host memory), streamed in while the engine generates
        receiver = threading.Thread(target=_receive_chunks, args=(chunks, results, staging),
                                    daemon=True, name="weight-receiver")
        receiver.start()
        gate = None
        if spec.gate is not None:
            from rl.rollout.engines.version_gate import VersionGate
            host, port, workers, timeout_s = spec.gate
            gate = VersionGate(host, port, workers, leader=spec.pushes, timeout_s=timeout_s, parent_pid=parent_pid,
                               on_progress=heartbeat.relay)
            heartbeat.publish = gate.publish
        results.put(("ready", os.getpid()))
        while not spec.stream:
            try:
                cmd = commands.get(timeout=1.0)
            except queue.Empty:
                if os.getppid() != parent_pid:  # orphaned: the learner is gone
                    return
                continue
            kind = cmd[0]
            if kind == "stop":
                heartbeat.stop()
                chunks.put(None)
                receiver.join(timeout=10)
                if runner is not None:
                    runner.close()  # its sandbox pool
                engine.close()
                return
            if kind == "weights":
                _, version, count = cmd
                if gate is not None:  # server mode, several ranks: every worker at this point, rank 0's pushes
                    gate.cross(version, lambda: _apply(engine, model, staging, count, version, heartbeat.tick))
                else:
                    _apply(engine, model, staging, count, version, heartbeat.tick)
                results.put(("weights", version))
            elif kind == "state":  # the transformers engine's weights, as the engine holds them (tests, debugging)
                results.put(("state", {n: p.detach().cpu().clone() for n, p in model.named_parameters()}
                             if model is not None else None))
            elif kind == "staging":  # bytes of staged weights per device type (tests: host memory only)
                held: dict[str, int] = {}
                for t in staging.values():
                    held[t.device.type] = held.get(t.device.type, 0) + t.numel() * t.element_size()
                results.put(("staging", held))
            elif kind == "generate":
                _, job, prompts, params = cmd
                t0 = time.perf_counter()
                groups = engine.generate(prompts, SamplingParams(**params))
                results.put(("generated", job, version, groups, time.perf_counter() - t0))
            elif kind == "episodes":  # whole multi-turn episodes, every turn with this one version
                _, job, batch, params, first_group_id = cmd
                if runner is None:
                    raise RuntimeError("an episodes command reached a rollout worker started without an episode "
                                       "spec (EngineSpec.episode_runner)")
                t0 = time.perf_counter()
                out = runner.run(batch, SamplingParams(**params), first_group_id)
                results.put(("generated", job, version, out, time.perf_counter() - t0))
        from rl.rollout.engines.stream_worker import stream_commands
        stream_commands(engine, commands, results, lambda count, v: _apply(engine, model, staging, count, v,
                                                                            heartbeat.tick), heartbeat.tick, parent_pid)
        heartbeat.stop()
        chunks.put(None)
        receiver.join(timeout=10)
        engine.close()
    except BaseException:  # noqa: BLE001 - reported to the learner, then exit
        results.put(("error", traceback.format_exc()))
