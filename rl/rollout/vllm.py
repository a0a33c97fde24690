"""The vLLM rollout engine: colocated (vLLM inside the learner's process) or server (`vllm serve` elsewhere).

    engine = VLLMEngine(model_path, tokenizer)                                   # colocate
    engine = VLLMEngine(model_path, tokenizer, mode="server",
                        server_url="http://vllm-node:8000")                      # server (see docs/vllm.md)
    groups = engine.generate(prompt_ids, SamplingParams(n=8, temperature=1.0, max_tokens=256))
    engine.update_weights(unwrapped_model)                                       # after every optimizer step

Every vLLM call goes through rl/rollout/vllm_adapter.py (the only module that knows vLLM's API and internals);
vLLM is imported lazily, so this module imports on machines without it.

Weight pushes stream (name, tensor) pairs: the learner's `full_named_parameters()` (rl/train/distributed.py
`iter_full_params`: one module at a time under DeepSpeed ZeRO-3 and FSDP, never the whole model gathered at once), or,
for a plain model, its own parameters. Under ZeRO-3/FSDP the gather is collective: every rank must call
`update_weights` at the same point.
"""
from __future__ import annotations

import os
import shutil
import tempfile
import time
import warnings
from collections.abc import Iterator
from typing import Literal

import torch

from rl.train.distributed import iter_full_params
from rl.rollout import vllm_adapter as va
from rl.core.episode import Completion, SamplingParams

Mode = Literal["colocate", "server"]


# ------------------------------------------------------------------------------------------------------- engine

class VLLMEngine:
    """RolloutEngine on vLLM. See the module docstring and docs/vllm.md.

    Seeds (`seed_mode`): `per_step` (default) reseeds the engine's sampler once per `generate` call with the call's
    seed: reproducible for the same prompts in the same order, and the sampler keeps its fast batched path.
    `per_request` gives prompt i of a call the seeds seed + i*n ... (vLLM seeds child j with seed + j): a prompt's
    samples then do not depend on which other prompts share the call (N processes == 1 process exactly), at the cost
    of vLLM's per-request generator path. Server mode always seeds per request: the server admits the requests of a
    call asynchronously (and may serve several learner processes), so a per-call reseed would not reproduce.

    Colocate: `gpu_memory_utilization` is the fraction of the GPU vLLM may take (weights + KV cache); with
    `enable_sleep_mode=True` (GPU only) the engine sleeps (weights to host memory, KV cache freed) between `generate`
    calls, i.e. while the learner trains, and wakes up at the next `generate`. On CPU the KV cache is sized by
    VLLM_CPU_KVCACHE_SPACE (GiB, default 1 here).

    Server: `server_url` of a `vllm serve` (or `trl vllm-serve`) process started as in docs/vllm.md. Every HTTP call
    has a `timeout_s` deadline; a dead server or a stalled NCCL transfer raises `VLLMServerError` instead of hanging.
    `weight_transfer="nccl"` (GPU; the `trl vllm-serve` protocol, the server must run with
    `--weight-transfer-config '{"backend": "nccl"}'`) or `"disk"` (any platform: safetensors written to
    `shared_dir`, a directory the server can read, then a layer-wise reload RPC). Requests: one per prompt when the
    prompts carry their own seeds (always, in server mode, with a seed), up to `max_in_flight` of them outstanding at
    once (rl/rollout/in_flight.py): the server batches only what it holds, so keep hundreds in flight (each request
    is n sequences).

    Tensor parallelism (colocate): pass `tensor_parallel_size=k` (through `**vllm_kwargs` to `vllm.LLM`) to shard a
    teacher too big for one GPU; a server sets it on its own command line (`server_command(tensor_parallel_size=)`).
    """

    def __init__(self, model_path: str, tokenizer, *, dtype: str = "float32", seed: int = 0,
                 gpu_memory_utilization: float = 0.3, max_model_len: int = 1024, enable_sleep_mode: bool = False,
                 mode: Mode = "colocate", server_url: str | None = None, timeout_s: float = 600.0,
                 weight_transfer: Literal["auto", "nccl", "disk"] = "auto", shared_dir: str | None = None,
                 seed_mode: Literal["per_step", "per_request"] = "per_step", max_in_flight: int = 256,
                 **vllm_kwargs):
        if seed_mode not in ("per_step", "per_request"):
            raise ValueError(f"unknown seed_mode {seed_mode!r} (per_step | per_request)")
        self.seed_mode = seed_mode
        self.tokenizer = tokenizer
        self.eos_token_id = tokenizer.eos_token_id
        self.mode = mode
        self.timeout_s = float(timeout_s)
        self.enable_sleep_mode = enable_sleep_mode
        self.last_push_seconds: float | None = None
        self._warned_truncation = False
        self._asleep = False
        self._llm = None
        self._server: _ServerClient | None = None
        if mode == "colocate":
            self._llm = va.make_llm(model_path, tokenizer_path=model_path, dtype=dtype, seed=seed,
                                    gpu_memory_utilization=gpu_memory_utilization, max_model_len=max_model_len,
                                    enable_sleep_mode=enable_sleep_mode, **vllm_kwargs)
        elif mode == "server":
            if not server_url:
                raise ValueError("mode='server' needs server_url (e.g. http://vllm-node:8000)")
            self._server = _ServerClient(server_url, timeout_s=self.timeout_s, weight_transfer=weight_transfer,
                                         shared_dir=shared_dir, max_in_flight=max_in_flight)
        else:
            raise ValueError(f"unknown vLLM mode {mode!r} (colocate | server)")

    # -------------------------------------------------------------------------------------------------- generate
    def generate(self, prompts: list[list[int]], params: SamplingParams) -> list[list[Completion]]:
        if not prompts:
            return []
        if not params.greedy and (params.top_p < 1.0 or (params.top_k or 0) > 0) and not self._warned_truncation:
            warnings.warn(f"VLLMEngine: {va.logprob_caveat}", stacklevel=2)
            self._warned_truncation = True
        common = dict(n=params.n, temperature=params.temperature, top_p=params.top_p, top_k=params.top_k,
                      max_tokens=params.max_tokens, greedy=params.greedy, eos_token_id=self.eos_token_id)
        if self.seed_mode == "per_request" or self._server is not None:
            # prompt i draws with seeds seed + i*n ... seed + i*n + n-1 (vLLM gives child j of a request seed + j)
            seeds = [None if params.seed is None else params.seed + i * params.n for i in range(len(prompts))]
        else:  # per_step: one reseed of the engine's generator for the whole call (the sampler's fast path)
            seeds = [None] * len(prompts)
        if self._llm is not None:
            self._wake()
            if self.seed_mode == "per_step" and params.seed is not None:
                va.reseed_sampler(params.seed)
            raws = va.generate(self._llm, prompts, [va.sampling_params(seed=s, **common) for s in seeds])
            self._sleep()
        else:
            raws = self._server.generate(prompts, [va.server_sampling_fields(seed=s, **common) for s in seeds],
                                         params.n)
        out = []
        for p, group in zip(prompts, raws, strict=True):
            if len(group) != params.n:
                raise RuntimeError(f"vLLM returned {len(group)} completions for a prompt, expected {params.n}")
            out.append([Completion(prompt_ids=list(p), completion_ids=r.token_ids,
                                   text=self.tokenizer.decode(r.token_ids, skip_special_tokens=True),
                                   finish_reason=r.finish_reason, logprobs=r.logprobs) for r in group])
        return out

    # -------------------------------------------------------------------------------------------- update_weights
    def update_weights(self, model: torch.nn.Module,
                       weights: Iterator[tuple[str, torch.Tensor]] | None = None) -> None:
        """Push `weights` (checkpoint-named full tensors, e.g. `Learner.full_named_parameters()`), or a plain
        model's own parameters. Collective under ZeRO-3/FSDP (call it on every rank); in server mode only rank 0
        talks to the server (the others only help gather)."""
        t0 = time.perf_counter()
        with torch.no_grad():
            weights = iter_full_params(model) if weights is None else weights
            if self._llm is not None:
                self._wake()
                va.reload_weights(self._llm, weights)
                self._sleep()
            else:
                self._server.push(weights)
        self.last_push_seconds = time.perf_counter() - t0

    def close(self) -> None:
        if self._llm is not None:
            va.shutdown(self._llm)
            self._llm = None
        if self._server is not None:
            self._server.close()
            self._server = None

    # --------------------------------------------------------------------------------------------------- sleeping
    def _sleep(self):
        if self.enable_sleep_mode and not self._asleep:
            va.sleep(self._llm, level=1)
            self._asleep = True

    def _wake(self):
        if self._asleep:
            va.wake_up(self._llm)
            self._asleep = False

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


# ------------------------------------------------------------------------------------------------ server client

class VLLMServerError(RuntimeError):
    pass


def _is_main_rank() -> bool:
    return not (torch.distributed.is_available() and torch.distributed.is_initialized()) \
        or torch.distributed.get_rank() == 0


class _ServerClient:
    """HTTP client of `vllm serve` (dev mode). Health check at construction; a deadline on every call; up to
    `max_in_flight` generation requests outstanding (the connection pool is sized to match, so every one keeps its
    connection)."""

    def __init__(self, base_url: str, *, timeout_s: float, weight_transfer: str, shared_dir: str | None,
                 max_in_flight: int = 256):
        import requests

        if max_in_flight < 1:
            raise ValueError(f"max_in_flight={max_in_flight} must be at least 1")
        self.requests = requests
        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s
        self.max_in_flight = max_in_flight
        self.session = requests.Session()
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
        url = f"{self.base_url}{path}"
        try:
            r = self.session.request(method, url, timeout=self.timeout_s, **kw)
        except self.requests.Timeout as e:
            raise VLLMServerError(f"vLLM server call {path} timed out after {self.timeout_s:.0f}s "
                                  f"(server overloaded, dead, or a weight transfer stalled)") from e
        except self.requests.ConnectionError as e:
            raise VLLMServerError(f"vLLM server at {self.base_url} unreachable during {path}: the server died or "
                                  f"the network is down") from e
        if r.status_code != 200:
            hint = " (is the server running with VLLM_SERVER_DEV_MODE=1?)" if r.status_code == 404 else ""
            raise VLLMServerError(f"vLLM server {path}: HTTP {r.status_code}{hint}: {r.text[:500]}")
        return r.json() if r.content else {}

    def _get(self, path):
        return self._call("GET", path)

    def _post(self, path, body=None):
        return self._call("POST", path, json=body if body is not None else {})

    # --------------------------------------------------------------------------------------------- generate
    def generate(self, prompts, fields_per_prompt, n):
        # One request for all prompts when the fields agree (no seed); else one request per prompt, concurrently.
        if all(f == fields_per_prompt[0] for f in fields_per_prompt):
            batches = [(list(range(len(prompts))), fields_per_prompt[0])]
        else:
            batches = [([i], f) for i, f in enumerate(fields_per_prompt)]

        def run(batch):
            idx, fields = batch
            choices = self._post("/v1/completions",
                                 va.completions_payload(self.model, [prompts[i] for i in idx], fields))["choices"]
            if len(choices) != len(idx) * n:
                raise VLLMServerError(f"vLLM server returned {len(choices)} choices, expected {len(idx) * n}")
            choices = sorted(choices, key=lambda c: c["index"])  # index = prompt_index * n + j
            return [[va.parse_completion_choice(c) for c in choices[k * n:(k + 1) * n]] for k in range(len(idx))]

        from rl.rollout.in_flight import map_in_flight

        out: list = [None] * len(prompts)
        results = map_in_flight(run, batches, self.max_in_flight)  # in batch order, whatever order they finish in
        for (idx, _), res in zip(batches, results):
            for i, group in zip(idx, res):
                out[i] = group
        return out

    # ------------------------------------------------------------------------------------------------- push
    def push(self, weights: Iterator[tuple[str, torch.Tensor]]):
        if self.weight_transfer == "disk":
            self._push_disk(weights)
        elif self.weight_transfer == "nccl":
            self._push_nccl(weights)
        else:
            raise ValueError(f"unknown weight_transfer {self.weight_transfer!r}")

    def _push_disk(self, weights):
        from safetensors.torch import save_file

        if not _is_main_rank():
            for _ in weights:  # take part in the collective gathers only
                pass
            return
        tensors = dict(va.iter_state_for_disk(weights))
        # a fresh directory per push (atomic from the server's point of view)
        d = os.path.join(self.shared_dir, f"push_{time.time_ns()}")
        os.makedirs(d)
        save_file(tensors, os.path.join(d, "model.safetensors"))
        try:
            self._post("/collective_rpc", va.reload_from_disk_rpc(d))
            self._post("/reset_prefix_cache")
        finally:
            shutil.rmtree(d, ignore_errors=True)

    def _push_nccl(self, weights):
        if not _is_main_rank():
            for _ in weights:
                pass
            return
        from concurrent.futures import ThreadPoolExecutor
        from concurrent.futures import TimeoutError as FutTimeout

        if self._nccl is None:
            self._nccl = va.nccl_client(self.base_url, self.timeout_s)
            self._run_with_deadline(lambda: self._nccl.init_communicator(device=torch.cuda.current_device()),
                                    "NCCL weight-transfer init")
        # trl's protocol announces (name, dtype, shape) first: gather once for metadata would double the gathers, so
        # the tensors are materialised one module at a time and sent in chunks of one module.
        pool = ThreadPoolExecutor(max_workers=1)
        try:
            def send_all():
                with self._nccl.weight_update():
                    for name, t in weights:
                        self._nccl.update_named_param(name, t)
            fut = pool.submit(send_all)
            try:
                fut.result(timeout=self.timeout_s)
            except FutTimeout as e:
                raise VLLMServerError(f"NCCL weight push to {self.base_url} did not finish in {self.timeout_s:.0f}s "
                                      f"(NCCL stalled or server died); the training process should be restarted") from e
            self._post("/reset_prefix_cache")
        finally:
            pool.shutdown(wait=False)

    def _run_with_deadline(self, fn, what):
        from concurrent.futures import ThreadPoolExecutor
        from concurrent.futures import TimeoutError as FutTimeout

        pool = ThreadPoolExecutor(max_workers=1)
        try:
            return pool.submit(fn).result(timeout=self.timeout_s)
        except FutTimeout as e:
            raise VLLMServerError(f"{what} with {self.base_url} did not finish in {self.timeout_s:.0f}s") from e
        finally:
            pool.shutdown(wait=False)

    def close(self):
        if self._nccl is not None:
            try:
                self._nccl.close_communicator()
            except Exception:
                pass
        self.session.close()
        if self._own_dir:
            shutil.rmtree(self._own_dir, ignore_errors=True)
