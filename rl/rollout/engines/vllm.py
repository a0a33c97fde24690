"""The vLLM rollout engine: colocated (vLLM inside the learner's process) or server (`vllm serve` elsewhere).

    engine = VLLMEngine(model_path, tokenizer)                                   # colocate
    engine = VLLMEngine(model_path, tokenizer, mode="server",
                        server_url="http://vllm-node:8000")                      # server (see docs/vllm.md)
    groups = engine.generate(prompt_ids, SamplingParams(n=8, temperature=1.0, max_tokens=256))
    engine.release_memory()                                                      # sleep mode: before training
    engine.update_weights(unwrapped_model)                                       # after every optimizer step

Every vLLM call goes through rl/rollout/engines/vllm_adapter.py (the only module that knows vLLM's API and internals);
vLLM is imported lazily, so this module imports on machines without it. The server client (HTTP, streamed
completions, batched NCCL pushes, progress deadlines) is rl/rollout/engines/vllm_server.py.

Weight pushes stream (name, tensor) pairs: the learner's `full_named_parameters()` (rl/train/distributed.py
`iter_full_params`: one module at a time under DeepSpeed ZeRO-3 and FSDP, never the whole model gathered at once), or,
for a plain model, its own parameters. Under ZeRO-3/FSDP the gather is collective: every rank must call
`update_weights` at the same point.
"""
from __future__ import annotations

import time
import warnings
from collections.abc import Iterator
from typing import Literal

import torch

from rl.train.distributed import iter_full_params
from rl.rollout.engines import vllm_adapter as va
from rl.rollout.engines.vllm_server import ServerClient, VLLMServerError
from rl.core.episode import Completion, SamplingParams

__all__ = ["VLLMEngine", "VLLMServerError", "empty_learner_cache"]

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

    Colocate: `gpu_memory_utilization` is the fraction of the GPU vLLM may take (weights + KV cache). On CPU the KV
    cache is sized by VLLM_CPU_KVCACHE_SPACE (GiB, default 1 here).

    Sleep mode (`enable_sleep_mode=True`, GPU only) gives the GPU to the learner while it trains, one cycle per step:

        release_memory()   sleep(level=2): weights and KV cache freed  (level 1 with weights_follow=False)
        ... the learner trains ...
        update_weights()   empty_cache(), wake_up(["weights"]), load    (the KV cache stays asleep during the push)
        generate()         empty_cache(), wake_up(["kv_cache"]), generate, generate, ... (dynamic sampling, eval)

    Level 2 keeps no host copy of the weights because the push rewrites them all anyway; level 1 (weights to host
    memory) is for a caller that generates again without pushing. `empty_cache()` first returns the learner's cached
    but unused blocks (activations, gradients, gathered parameters) to the driver: vLLM maps its sleeping memory back
    with its own allocator, which cannot use memory PyTorch's caching allocator still holds. `generate` never sleeps
    by itself (the trainer calls `release_memory` once before training), so the rounds of one step share one wake-up.

    Server: `server_url` of a `vllm serve` (or `trl vllm-serve`) process started as in docs/vllm.md
    (rl/rollout/engines/vllm_server.py). `timeout_s` is the longest silence allowed (completions are streamed, so a long but
    progressing generation never times out); a dead server or a stalled NCCL transfer raises `VLLMServerError`.
    `weight_transfer="nccl"` (GPU; the `trl vllm-serve` protocol, the server must run with
    `--weight-transfer-config '{"backend": "nccl"}'`) or `"disk"` (any platform: safetensors written to
    `shared_dir`, a directory the server can read, then a layer-wise reload RPC). Requests: one per prompt when the
    prompts carry their own seeds (always, in server mode, with a seed), up to `max_in_flight` of them outstanding at
    once (rl/rollout/engines/vllm_server.py): the server batches only what it holds, so keep hundreds in flight (each request
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
        # called as the engine makes progress (colocated: each engine step; server: each streamed event or pushed
        # tensor): the rollout worker's silence deadline (rl/rollout/engines/worker.py)
        self.on_progress = None
        self._weights = "awake"  # awake | offloaded (level 1: valid in host memory) | discarded (level 2)
        self._kv_awake = True
        self._llm = None
        self._server: ServerClient | None = None
        if mode == "colocate":
            self._llm = va.make_llm(model_path, tokenizer_path=model_path, dtype=dtype, seed=seed,
                                    gpu_memory_utilization=gpu_memory_utilization, max_model_len=max_model_len,
                                    enable_sleep_mode=enable_sleep_mode, **vllm_kwargs)
        elif mode == "server":
            if not server_url:
                raise ValueError("mode='server' needs server_url (e.g. http://vllm-node:8000)")
            self._server = ServerClient(server_url, timeout_s=self.timeout_s, weight_transfer=weight_transfer,
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
                      max_tokens=params.max_tokens, greedy=params.greedy, eos_token_id=self.eos_token_id,
                      stop=tuple(params.stop))  # stop strings: the completing token kept, as the HF engine does
        if self.seed_mode == "per_request" or self._server is not None:
            # prompt i draws with seeds seed + i*n ... seed + i*n + n-1 (vLLM gives child j of a request seed + j)
            seeds = [None if params.seed is None else params.seed + i * params.n for i in range(len(prompts))]
        else:  # per_step: one reseed of the engine's generator for the whole call (the sampler's fast path)
            seeds = [None] * len(prompts)
        if self._llm is not None:
            self._wake_for_generation()
            if self.seed_mode == "per_step" and params.seed is not None:
                va.reseed_sampler(params.seed)
            raws = va.generate(self._llm, prompts, [va.sampling_params(seed=s, **common) for s in seeds],
                               on_step=self.on_progress)
        else:
            self._server.on_progress = self.on_progress
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
                if self._weights != "awake":  # only the weights: the KV cache is not needed for the push
                    empty_learner_cache()
                    va.wake_up(self._llm, ["weights"])
                    self._weights = "awake"
                va.reload_weights(self._llm, weights)
            else:
                self._server.on_progress = self.on_progress
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
    def release_memory(self, weights_follow: bool = True) -> None:
        """Sleep mode: free the engine's GPU memory for the learner (no-op without sleep mode, or asleep already).
        `weights_follow`: the caller pushes new weights before the next `generate` (GRPO does, every step), so the
        weights are dropped (level 2) instead of copied to host memory (level 1)."""
        if not self.enable_sleep_mode or self._llm is None or (self._weights != "awake" and not self._kv_awake):
            return
        level = 2 if weights_follow else 1
        va.sleep(self._llm, level=level)
        self._weights, self._kv_awake = ("discarded" if level == 2 else "offloaded"), False

    def _wake_for_generation(self):
        if self._weights == "discarded":
            raise RuntimeError("VLLMEngine: the weights were dropped by release_memory(weights_follow=True) and no "
                               "update_weights came since; push weights first (or release with weights_follow=False)")
        tags = (["weights"] if self._weights == "offloaded" else []) + ([] if self._kv_awake else ["kv_cache"])
        if tags:
            empty_learner_cache()
            va.wake_up(self._llm, tags)
            self._weights, self._kv_awake = "awake", True

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def empty_learner_cache() -> None:
    """Return the PyTorch caching allocator's unused blocks to the driver (before vLLM maps sleeping memory back)."""
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
