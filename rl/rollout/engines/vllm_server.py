"""The learner's client of a rollout server (`vllm serve` in dev mode, or `trl vllm-serve`): generation over HTTP
and weight pushes (NCCL broadcast or safetensors on a shared disk). Used by `VLLMEngine(mode="server")`
(rl/rollout/engines/vllm.py).

Two rules shape this module:

* **Deadlines measure silence, not length.** `timeout_s` is the longest the server may go without making progress.
  Completions are streamed (`"stream": true`, server-sent events), and every event on any of a call's streams counts as
  progress, so a healthy server generating 8k-token chains of thought for many concurrent requests (some of them
  queued behind others, silent until a slot frees) never trips it, however long the whole call takes; a server that
  stops sending for `timeout_s` raises `VLLMServerError` (one line) instead of hanging. A non-streamed completion would
  send nothing until it is done, which turns any read timeout into a limit on the total length. Weight pushes count a
  tensor handed to the transfer as progress, the same way.
* **One transfer per push.** The NCCL push uses trl's `VLLMClient.update_named_params(metadata, tensors)`: one
  `/update_weights` request announcing every (name, dtype, shape), then the tensors streamed through one packed
  broadcast (vLLM's `packed_nccl_broadcast_producer`: a few fixed-size buffers, so bounded memory), all between one
  `/start_weight_update` and one `/finish_weight_update`. The announcement needs the metadata before the first tensor,
  and the learner's tensors come from a gathering generator that can be walked only once per push, so the first
  push records the metadata as it goes, sending in chunks of at most `push_chunk_bytes` (a 1.5B model's float32
  master weights in 1 GiB chunks: 6 calls instead of one per tensor, ~338), and every later push is one call with the
  recorded metadata (TRL walks the parameters an extra time instead, which is one more full gather under ZeRO-3).
  A later push whose tensors differ from the recorded ones fails with one line naming the tensor. The disk push
  writes one safetensors file and makes one reload RPC.
"""
from __future__ import annotations

import os
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Iterator

import torch

from rl.rollout.engines import vllm_adapter as va


class VLLMServerError(RuntimeError):
    pass


def is_main_rank() -> bool:
    return not (torch.distributed.is_available() and torch.distributed.is_initialized()) \
        or torch.distributed.get_rank() == 0


class Progress:
    """When anything last happened (monotonic seconds), shared by the threads of one call."""

    def __init__(self, on_tick=None):
        self.last = time.monotonic()
        self.on_tick = on_tick  # also told of every tick (the rollout worker's heartbeat, rl/rollout/engines/worker.py)

    def tick(self):
        self.last = time.monotonic()
        if self.on_tick is not None:
            self.on_tick()

    def silent_s(self) -> float:
        return time.monotonic() - self.last


def tensor_metadata(name: str, t: torch.Tensor) -> tuple[str, str, list[int]]:
    """(name, dtype, shape) as `update_named_params` announces it (vLLM dtype names: "bfloat16")."""
    return name, str(t.dtype).removeprefix("torch."), list(t.shape)


def on_transfer_device(t: torch.Tensor) -> torch.Tensor:
    """A tensor where the NCCL broadcast reads it: host tensors (a rollout worker's staged weights) move to the
    current GPU one at a time, as vLLM's packed broadcast takes them, never the whole model at once."""
    if t.device.type == "cpu" and torch.cuda.is_available():
        return t.to(torch.cuda.current_device())
    return t


class ServerClient:
    """HTTP client of a rollout server. Health check at construction; see the module docstring for the deadlines."""

    POLL_S = 0.05  # how often a waiting call looks at the progress clock

    def __init__(self, base_url: str, *, timeout_s: float, weight_transfer: str, shared_dir: str | None,
                 push_chunk_bytes: int = 1 << 30, max_in_flight: int = 256):
        import requests

        self.requests = requests
        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s
        self.push_chunk_bytes = push_chunk_bytes
        if max_in_flight < 1:
            raise ValueError(f"max_in_flight={max_in_flight} must be at least 1")
        self.max_in_flight = max_in_flight
        self.session = requests.Session()
        # the pool sized to the requests in flight: every one keeps its connection (rollout.vllm_max_in_flight)
        adapter = requests.adapters.HTTPAdapter(pool_connections=1, pool_maxsize=max_in_flight)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)
        self._wait_healthy(timeout_s)
        self.model = self._get("/v1/models")["data"][0]["id"]
        if weight_transfer == "auto":
            weight_transfer = "nccl" if torch.cuda.is_available() else "disk"
        self.weight_transfer = weight_transfer
        self.shared_dir = shared_dir
        self._own_dir = None
        self._nccl = None
        self._metadata: list[tuple[str, str, list[int]]] | None = None  # recorded by the first NCCL push
        self.push_calls = 0  # update_named_params calls so far (the tests count them)
        self.on_progress = None  # called on every tick of a call's progress clock (set by VLLMEngine)
        if weight_transfer == "disk" and shared_dir is None:
            self._own_dir = self.shared_dir = tempfile.mkdtemp(prefix="vllm_push_")  # same-host server only

    # ------------------------------------------------------------------------------------------------- http
    def _wait_healthy(self, total_s: float):
        deadline = time.monotonic() + total_s
        last = None
        while time.monotonic() < deadline:
            try:
                r = self.session.get(f"{self.base_url}/health", timeout=min(10.0, total_s))
                if r.status_code == 200:
                    return
                last = f"HTTP {r.status_code}"
            except self.requests.RequestException as e:
                last = repr(e)
            time.sleep(1.0)
        raise VLLMServerError(f"vLLM server at {self.base_url} is not healthy after {total_s:.0f}s ({last}). Start "
                              f"it as shown in docs/vllm.md, and check host/port/firewall.")

    def _call(self, method: str, path: str, **kw):
        """A short request (health, models, cache reset, RPCs): `timeout_s` for the connection and the reply."""
        url = f"{self.base_url}{path}"
        try:
            r = self.session.request(method, url, timeout=self.timeout_s, **kw)
        except self.requests.Timeout as e:
            raise VLLMServerError(f"vLLM server call {path} timed out after {self.timeout_s:g}s "
                                  f"(server overloaded, dead, or a weight transfer stalled)") from e
        except self.requests.ConnectionError as e:
            raise VLLMServerError(f"vLLM server at {self.base_url} unreachable during {path}: the server died or "
                                  f"the network is down") from e
        self._check_status(path, r)
        return r.json() if r.content else {}

    def _check_status(self, path, r):
        if r.status_code != 200:
            hint = " (is the server running with VLLM_SERVER_DEV_MODE=1?)" if r.status_code == 404 else ""
            raise VLLMServerError(f"vLLM server {path}: HTTP {r.status_code}{hint}: {r.text[:500]}")

    def _get(self, path):
        return self._call("GET", path)

    def _post(self, path, body=None):
        return self._call("POST", path, json=body if body is not None else {})

    # --------------------------------------------------------------------------------------------- generate
    def generate(self, prompts, fields_per_prompt, n):
        """One streamed request for all prompts when their fields agree (no seed); else one per prompt, at most
        `max_in_flight` in flight (open-r1 keeps ~1,000). Returns one list of n RawCompletions per prompt, in order."""
        if not prompts:
            return []
        if all(f == fields_per_prompt[0] for f in fields_per_prompt):
            batches = [(list(range(len(prompts))), fields_per_prompt[0])]
        else:
            batches = [([i], f) for i, f in enumerate(fields_per_prompt)]
        progress, live = Progress(self.on_progress), {}
        results: list = [None] * len(batches)
        errors: list[BaseException] = []
        todo = list(range(len(batches)))
        lock, done = threading.Lock(), threading.Event()
        running = [min(self.max_in_flight, len(batches))]

        def worker():
            try:
                while not errors:
                    with lock:
                        if not todo:
                            return
                        k = todo.pop(0)
                    try:
                        results[k] = self._stream_batch(prompts, batches[k], n, progress, live, k)
                    except BaseException as e:  # handed to the caller's thread
                        errors.append(e)
                        done.set()
            finally:
                with lock:
                    running[0] -= 1
                    if running[0] == 0:
                        done.set()

        # daemon threads: a stream blocked on a silent server must not keep the process alive after the error
        threads = [threading.Thread(target=worker, daemon=True, name=f"vllm-stream-{i}")
                   for i in range(running[0])]
        for t in threads:
            t.start()
        while not done.wait(self.POLL_S):
            if progress.silent_s() > self.timeout_s:
                unfinished = sum(r is None for r in results)
                self._abort(live)
                raise VLLMServerError(f"vLLM server at {self.base_url} sent nothing for {self.timeout_s:g}s while "
                                      f"generating ({unfinished} of {len(batches)} requests unfinished): the server "
                                      f"is stalled or dead (rollout.timeout_s is the longest silence allowed)")
        if errors:
            self._abort(live)
            raise errors[0]
        out: list = [None] * len(prompts)
        for (idx, _), res in zip(batches, results):
            for i, group in zip(idx, res):
                out[i] = group
        return out

    def _stream_batch(self, prompts, batch, n, progress: Progress, live: dict, k: int):
        idx, fields = batch
        path = "/v1/completions"
        body = {**va.completions_payload(self.model, [prompts[i] for i in idx], fields), "stream": True}
        try:
            # no read timeout of its own: the caller watches the shared progress clock and aborts the streams
            r = self.session.post(f"{self.base_url}{path}", json=body, stream=True, timeout=(self.timeout_s, None))
            live[k] = r
            progress.tick()
            self._check_status(path, r)
            choices = va.collect_stream(self._events(r, progress))
        except ValueError as e:
            raise VLLMServerError(f"vLLM server at {self.base_url}: {e}") from None
        except (self.requests.ConnectionError, self.requests.Timeout) as e:
            raise VLLMServerError(f"vLLM server at {self.base_url} unreachable during {path}: the server died or "
                                  f"the network is down") from e
        finally:
            r = live.pop(k, None)
            if r is not None:
                r.close()  # after [DONE]: the rest of the chunked body (its terminator) is not read
        if len(choices) != len(idx) * n:
            raise VLLMServerError(f"vLLM server returned {len(choices)} choices, expected {len(idx) * n}")
        choices = sorted(choices, key=lambda c: c["index"])  # index = prompt_index * n + j
        return [[va.parse_completion_choice(c) for c in choices[j * n:(j + 1) * n]] for j in range(len(idx))]

    @staticmethod
    def _events(r, progress: Progress) -> Iterator[str]:
        """The `data:` payloads of a server-sent-event stream; each line read is progress."""
        for line in r.iter_lines():
            progress.tick()
            if line.startswith(b"data:"):
                yield line[5:].strip().decode()

    @staticmethod
    def _abort(live: dict):
        """Unblock the streams still reading (shutting the socket down wakes a blocked recv; closing alone may not)."""
        for r in list(live.values()):
            try:
                sock = r.raw.connection.sock if r.raw.connection is not None else None
                if sock is not None:
                    sock.shutdown(socket.SHUT_RDWR)
            except (AttributeError, OSError):
                pass
            try:
                r.close()
            except Exception:  # best effort: the error being raised is the one that matters
                pass

    # ------------------------------------------------------------------------------------------------- push
    def push(self, weights: Iterator[tuple[str, torch.Tensor]]):
        if not is_main_rank():
            for _ in weights:  # take part in the collective gathers only
                pass
            return
        if self.weight_transfer == "disk":
            self._push_disk(weights)
        elif self.weight_transfer == "nccl":
            self._push_nccl(weights)
        else:
            raise ValueError(f"unknown weight_transfer {self.weight_transfer!r}")

    def _push_disk(self, weights):
        from safetensors.torch import save_file

        tensors = dict(va.iter_state_for_disk(weights))
        d = os.path.join(self.shared_dir, f"push_{time.time_ns()}")  # a fresh directory per push (atomic for it)
        os.makedirs(d)
        save_file(tensors, os.path.join(d, "model.safetensors"))
        try:
            self._post("/collective_rpc", va.reload_from_disk_rpc(d))
            self._post("/reset_prefix_cache")
        finally:
            shutil.rmtree(d, ignore_errors=True)

    def _push_nccl(self, weights):
        if self._nccl is None:
            self._nccl = va.nccl_client(self.base_url, self.timeout_s)
            self._with_progress(lambda progress: self._nccl.init_communicator(
                device=torch.cuda.current_device() if torch.cuda.is_available() else "cpu"),
                                "NCCL weight-transfer init")
        if self._metadata is None:
            self._with_progress(lambda progress: self._first_push(weights, progress), "the first NCCL weight push")
        else:
            self._with_progress(lambda progress: self._streamed_push(weights, progress), "an NCCL weight push")
        self._post("/reset_prefix_cache")

    def _first_push(self, weights, progress: Progress):
        """Record the metadata while sending chunks of at most push_chunk_bytes (one update_named_params each)."""
        metadata, chunk, size = [], [], 0
        with self._nccl.weight_update():
            for name, t in weights:
                progress.tick()
                t = on_transfer_device(t)
                metadata.append(tensor_metadata(name, t))
                chunk.append((name, t))
                size += t.numel() * t.element_size()
                if size >= self.push_chunk_bytes:
                    self._send(chunk)
                    chunk, size = [], 0
            if chunk:
                self._send(chunk)
        self._metadata = metadata

    def _send(self, chunk):
        self.push_calls += 1
        self._nccl.update_named_params([tensor_metadata(name, t) for name, t in chunk], iter(chunk))

    def _streamed_push(self, weights, progress: Progress):
        """One update_named_params: the recorded metadata, then every tensor through one packed broadcast."""
        expected = self._metadata

        def checked():
            i = 0
            for name, t in weights:
                progress.tick()
                got = tensor_metadata(name, t)
                if i >= len(expected) or got != expected[i]:
                    want = expected[i] if i < len(expected) else "nothing (the first push ended here)"
                    raise VLLMServerError(f"weight push: tensor {i} is {got}, the first push announced {want}; the "
                                          f"server now waits on a broken transfer: restart the run")
                i += 1
                yield name, on_transfer_device(t)
            if i != len(expected):
                raise VLLMServerError(f"weight push sent {i} tensors, the first push {len(expected)}: restart the run")

        self.push_calls += 1
        self._nccl.update_named_params(expected, checked())

    def _with_progress(self, fn, what: str):
        """Run fn(progress) in a daemon thread; VLLMServerError when it goes `timeout_s` without progress."""
        progress, box = Progress(self.on_progress), {}

        def target():
            try:
                box["value"] = fn(progress)
            except BaseException as e:
                box["error"] = e

        t = threading.Thread(target=target, daemon=True, name="vllm-push")
        t.start()
        while t.is_alive():
            t.join(self.POLL_S)
            if t.is_alive() and progress.silent_s() > self.timeout_s:
                raise VLLMServerError(f"{what} to {self.base_url} made no progress for {self.timeout_s:g}s (NCCL "
                                      f"stalled or server died); the training process should be restarted")
        if "error" in box:
            raise box["error"]
        return box.get("value")

    def close(self):
        if self._nccl is not None:
            try:
                self._nccl.close_communicator()
            except Exception:
                pass
        self.session.close()
        if self._own_dir:
            shutil.rmtree(self._own_dir, ignore_errors=True)
