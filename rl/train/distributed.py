"""Every accelerate / DeepSpeed / FSDP specific of the learner, in one place (I/O adapter).

Targets accelerate 1.15.0, deepspeed 0.19.8 and torch 2.13 (FSDP2 `fully_shard`). The learner (rl/train/learner.py) is
written once for all strategies; what differs between them lives here:

* `make_accelerator(cfg)`: mixed precision from `model.dtype` (bf16 = float32 master weights + bf16 autocast, never
  bf16 weights under AdamW: at lr 1e-6 most bf16 updates round away) and gradient accumulation = micro-batches per
  step, so `accelerator.accumulate` syncs gradients (DDP, FSDP2) and steps DeepSpeed's engine on the last one only.
  The process group's timeout is the recipe's `train.dist_timeout_s` (`process_group_kwargs`).
* `gather_objects`: every rank's list, in rank order, on every rank (the sharded evaluation's all-gather).
* `configure_deepspeed`: the DeepSpeed config's `auto` values that accelerate can only fill from a DataLoader
  (we have none): micro-batch size, accumulation steps, gradient clipping.
* `loss_scale_for_backward`: accelerate divides the loss by the accumulation steps (DeepSpeed's engine does the same
  itself); our per-micro-batch losses are already normalised for the whole step, so they are multiplied back.
* The LR scheduler is NOT passed to `accelerator.prepare`: accelerate's `AcceleratedScheduler.step` steps
  `num_processes` times per optimizer step (accelerate/scheduler.py, made for DataLoader-scaled schedules), so a
  linear schedule would end after 1/num_processes of the run. The learner steps a plain LambdaLR, built on the
  optimizer's param_groups before `prepare` (DeepSpeed's ZeRO optimizers and FSDP2 keep those same dicts).
* `fsdp2_fp32_reduce_and_outputs`: FSDP2 + bf16 with verl's MixedPrecisionPolicy (bf16 params, float32 gradient
  reduction, no output cast: the logprobs and entropy the root forward returns stay float32) instead of accelerate's.
* `low_precision_trainable`: the weights-dtype guard, which accepts ZeRO-3's bf16 partitions (DeepSpeed keeps their
  float32 masters in the optimizer).
* `head_gather`: the LM-head weight whole during the chunked logprob pass (ZeRO-3 partitions it outside its module).
* `prepare_reference`: the frozen reference model sharded like the policy (ZeRO-3: TRL's prepare_deepspeed;
  FSDP2: accelerate's fsdp2_prepare_model, which broadcasts rank 0's weights under cpu_ram_efficient_loading).
* `iter_full_params`: full parameters one module at a time for the rollout engine, under every strategy.
* `check_supported`: FSDP1 is refused (one line, pointing to FSDP2): it needs an accelerator device even to start,
  so no path of it could be shown to work here, and its root unit (embed_tokens, final norm, lm_head) is the one
  an unwrapped-model weight push silently skips.
* `full_state_dict`: the consolidated weights for a Hugging Face checkpoint (collective under ZeRO-3 / FSDP2).
"""
from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import torch

MIXED_PRECISION = {"float32": "no", "bfloat16": "bf16", "float16": "fp16"}
WRAPPER_PREFIXES = ("_checkpoint_wrapped_module.", "_orig_mod.")


def make_accelerator(cfg):
    """The run's Accelerator: mixed precision from `model.dtype`, accumulation from the batch / micro-batch sizes.
    A launcher's `--mixed_precision` is overridden by the recipe (the recipe is the run).

    Without a GPU (CI, laptops) the same launch configs run on CPU processes over gloo: DeepSpeed and FSDP need
    `cpu=False` (accelerate drops both plugins under `cpu=True`) and an explicit gloo backend; FSDP additionally
    needs `enable_fsdp_on_cpu`, DeepSpeed `skip_deepspeed_shm_build` (below)."""

    from accelerate import Accelerator

    cuda = torch.cuda.is_available()
    deepspeed, fsdp = (os.environ.get(f"ACCELERATE_USE_{k}", "false").lower() == "true" for k in ("DEEPSPEED", "FSDP"))
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if not cuda and deepspeed:
        skip_deepspeed_shm_build()
    handler = process_group_kwargs(cfg.train.dist_timeout_s, gloo=not cuda and world > 1)
    if not cuda and fsdp and world > 1:
        enable_fsdp_on_cpu(handler.timeout)
    accelerator = Accelerator(cpu=not cuda and not (deepspeed or fsdp),
                              mixed_precision=MIXED_PRECISION[cfg.model.dtype],
                              gradient_accumulation_steps=micro_batches_per_step(cfg), kwargs_handlers=[handler])
    fsdp2_fp32_reduce_and_outputs(accelerator)
    return accelerator


def process_group_kwargs(timeout_s: float, gloo: bool):
    """accelerate's InitProcessGroupKwargs for the run's process group: `train.dist_timeout_s` as the timeout of
    every collective, and the gloo backend for CPU processes (`gloo`; accelerate would pick NCCL's default otherwise).
    torch's default timeout is 10 min for NCCL: a rank that waits longer for the others (in a barrier while rank 0
    writes and fsyncs a checkpoint, in the evaluation's gather while a slower rank finishes its share) makes the
    watchdog abort the job. A single process creates no process group and ignores this.

    Example: (1800, gloo=True) -> InitProcessGroupKwargs(backend="gloo", timeout=timedelta(seconds=1800)).
    """
    import datetime

    from accelerate.utils import InitProcessGroupKwargs

    if not timeout_s > 0:
        raise ValueError(f"train.dist_timeout_s must be > 0 seconds, got {timeout_s}")
    timeout = datetime.timedelta(seconds=timeout_s)
    return InitProcessGroupKwargs(backend="gloo", timeout=timeout) if gloo else InitProcessGroupKwargs(timeout=timeout)


def process_group_timeout_s() -> float | None:
    """The timeout (seconds) the default process group really has, None without one (read back from its backend,
    for the start-up summary and the tests). torch 2.13: `ProcessGroup._get_backend(device).options._timeout`
    (private: None, not an error, where a torch version moves it; read back on gloo only, NCCL untested here)."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return None
    device = torch.device("cuda" if "nccl" in str(dist.get_backend()) else "cpu")
    try:
        backend = dist.distributed_c10d._get_default_group()._get_backend(device)
        return backend.options._timeout.total_seconds()
    except (AttributeError, RuntimeError):
        return None


def gather_objects(items: list) -> list:
    """Every rank's list, concatenated in rank order, on every rank (an all-gather of picklable objects; collective).
    The sharded evaluation's gather (rl/rollout/episodes/evaluation.py `evaluate_greedy`): rank r's items follow rank r-1's.

    Example: rank 0 holds [a, b, c], rank 1 [d, e] -> both get [a, b, c, d, e]."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return list(items)
    parts: list = [None] * dist.get_world_size()
    dist.all_gather_object(parts, list(items))
    return [item for part in parts for item in part]


def fsdp2_fp32_reduce_and_outputs(accelerator) -> None:
    """FSDP2 mixed precision: bf16 compute, float32 gradient reduction, outputs left as the forward made them.

    accelerate 1.15 builds the FSDP2 policy in `FullyShardedDataParallelPlugin.set_mixed_precision`
    (accelerate/utils/dataclasses.py, called from AcceleratorState) as MixedPrecisionPolicy(param_dtype=bf16,
    reduce_dtype=bf16, output_dtype=bf16). Two things go wrong for RL with that:

    * output_dtype=bf16 casts the root forward's outputs, and our root forward *returns logprobs and entropy*
      (rl/train/policy.py computes them in float32 inside it): they came back rounded to 8 mantissa bits, |error| up
      to 0.03 nats, so a ratio - 1 of 1e-3 became 0 and a k3 KL of 5e-7 became 0;
    * reduce_dtype=bf16 reduce-scatters and accumulates gradients over micro-batches in bf16.

    verl's choice is used instead: MixedPrecisionPolicy(param_dtype=bf16, reduce_dtype=float32, output_dtype=None).
    The plugin attribute is replaced after the Accelerator exists and before `prepare` (fsdp2_prepare_model reads it
    there, for the policy and for the reference model alike). Targets accelerate 1.15.0 / torch 2.13; re-check on an
    upgrade (tests/e2e/test_strategies.py checks the dtypes). No-op for anything but FSDP2 with mixed precision."""
    plugin = getattr(accelerator.state, "fsdp_plugin", None)
    if strategy(accelerator) != "fsdp2" or plugin is None or accelerator.mixed_precision == "no":
        return
    from torch.distributed.fsdp import MixedPrecisionPolicy

    param_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}[accelerator.mixed_precision]
    plugin.mixed_precision_policy = MixedPrecisionPolicy(param_dtype=param_dtype, reduce_dtype=torch.float32,
                                                         output_dtype=None)


def low_precision_trainable(accelerator, model: torch.nn.Module) -> list[str]:
    """The 16-bit dtypes of trainable weights that AdamW would update in 16 bits (empty list: all fine).

    Weights must be float32 masters: at lr 1e-6 most bf16 updates round away. One exception, as in TRL: under
    DeepSpeed ZeRO-3 accelerate installs `HfDeepSpeedConfig` (whatever `zero3_init_flag` says), so
    `from_pretrained(..., float32)` runs inside `deepspeed.zero.Init`, which stores the partitions in the DeepSpeed
    config's compute dtype (bf16). DeepSpeed's ZeRO-3 optimizer then keeps float32 master partitions of exactly
    these parameters (`fp32_partitioned_groups_flat`) and copies them back after each step, so updates accumulate
    in float32. 16-bit ZeRO-3 partitions are therefore accepted when DeepSpeed's bf16/fp16 mode is on."""
    plugin = getattr(accelerator.state, "deepspeed_plugin", None)
    ds = plugin.deepspeed_config if plugin is not None else {}
    ds_masters = any(str(ds.get(k, {}).get("enabled", False)).lower() == "true" for k in ("bf16", "fp16"))
    return sorted({str(p.dtype) for p in model.parameters()
                   if p.requires_grad and p.dtype != torch.float32 and not (ds_masters and is_zero3_param(p))})


def skip_deepspeed_shm_build() -> None:
    """deepspeed 0.19.8 on CPU JIT-compiles a shared-memory all-reduce op (`deepspeed_shm_comm`, ~1 min with g++ and
    ninja, cached in ~/.cache/torch_extensions) when its comm backend starts (deepspeed/comm/torch.py
    `TorchBackend.__init__` -> `build_shm_op`). It serves DeepSpeed's CPU inference all-reduce only; training here
    communicates over gloo. `build_shm_op` returning None is DeepSpeed's own "op unavailable" path. CPU only; the
    one place this project touches DeepSpeed internals. Re-check on a DeepSpeed upgrade.

    Also sets DS_ACCELERATOR=cpu (unless set) before DeepSpeed is first imported: DeepSpeed's documented override,
    which spares every rank the expected "Setting accelerator to CPU. If you have GPU ..." warning of its
    auto-detection (the launcher process, which imports DeepSpeed before our code runs, still prints it once)."""
    import importlib

    os.environ.setdefault("DS_ACCELERATOR", "cpu")
    importlib.import_module("deepspeed.comm.torch").build_shm_op = lambda: None


def enable_fsdp_on_cpu(timeout=None) -> None:
    """accelerate 1.15 turns an FSDP plugin into DistributedType.FSDP only when PartialState reports a multi-device
    type (accelerate/state.py, AcceleratorState); on CPU it reports MULTI_CPU (cpu=True: the plugin is silently
    ignored, plain DDP runs) or NO (cpu=False). This initialises PartialState with gloo (device stays cpu) and relabels
    it MULTI_GPU before the Accelerator builds AcceleratorState, which then selects FSDP; everything after that
    (fully_shard, clipping, save_state, get_state_dict) is accelerate's and torch's own code. CPU only; the one place
    this project touches accelerate's internal state. Re-check on an accelerate upgrade."""
    from accelerate.state import PartialState
    from accelerate.utils import DistributedType

    # the process group is created here, before the Accelerator: it gets the recipe's timeout here or never
    state = PartialState(cpu=False, backend="gloo", **({"timeout": timeout} if timeout is not None else {}))
    if state.num_processes > 1 and state.distributed_type == DistributedType.NO:
        PartialState._shared_state["distributed_type"] = DistributedType.MULTI_GPU


def check_supported(accelerator) -> None:
    """One-line error for a launch this project does not support (before any model is loaded)."""
    from rl.config.recipe import ConfigError

    kind = strategy(accelerator)
    if kind not in SUPPORTED:
        raise ConfigError(f"accelerate launch config selects {kind}, which this project does not support: use "
                          f"FSDP2 (fsdp_version: 2, recipes/accelerate/fsdp2.yaml) or DeepSpeed ZeRO "
                          f"(recipes/accelerate/zero3.yaml)")


def micro_batches_per_step(cfg) -> int:
    return cfg.train.batch_size // cfg.train.micro_batch_size


SUPPORTED = ("single", "ddp", "zero1", "zero2", "zero3", "fsdp2")


def strategy(accelerator) -> str:
    """single | ddp | zero1 | zero2 | zero3 | fsdp2 (| fsdp1, refused by `check_supported`)."""
    from accelerate.utils import DistributedType

    kind = accelerator.distributed_type
    if kind == DistributedType.DEEPSPEED:
        return f"zero{accelerator.state.deepspeed_plugin.zero_stage}"
    if kind == DistributedType.FSDP:
        return f"fsdp{accelerator.state.fsdp_plugin.fsdp_version}"
    return "single" if accelerator.num_processes == 1 else "ddp"


def configure_deepspeed(accelerator, micro_batch_size: int, accumulation_steps: int, max_grad_norm: float) -> None:
    """Fill the DeepSpeed config values that accelerate takes from a DataLoader (none here). No-op otherwise."""
    plugin = getattr(accelerator.state, "deepspeed_plugin", None)
    if plugin is None:
        return
    ds = plugin.deepspeed_config
    ds["train_micro_batch_size_per_gpu"] = micro_batch_size
    ds["gradient_accumulation_steps"] = accumulation_steps
    ds["train_batch_size"] = micro_batch_size * accumulation_steps * accelerator.num_processes
    ds["gradient_clipping"] = max_grad_norm


def loss_scale_for_backward(accelerator) -> float:
    """accelerator.backward (and DeepSpeed's engine) divide by the accumulation steps; undo it."""
    return float(accelerator.gradient_accumulation_steps)


def is_zero3_param(p: torch.Tensor) -> bool:
    return hasattr(p, "ds_id") and hasattr(p, "ds_status")


def head_gather(weight: torch.Tensor):
    """A context in which a ZeRO-3 partitioned weight is whole (a null context for anything else, or when the
    weight is already available, e.g. tied to embed_tokens inside its own module's forward)."""
    if not is_zero3_param(weight):
        return contextlib.nullcontext()
    import deepspeed
    from deepspeed.runtime.zero.partition_parameters import ZeroParamStatus

    if weight.ds_status == ZeroParamStatus.AVAILABLE:
        return contextlib.nullcontext()
    return deepspeed.zero.GatheredParameters([weight], modifier_rank=None)


def initialize_root(accelerator, model: torch.nn.Module) -> None:
    """FSDP2 sets up its root module lazily, at the root's first forward; a first forward of an inner module (the
    transformers engine decoding with the inner causal LM before any training pass) fails with "FSDP requires a
    single root module". One no-grad forward of one token through the prepared root, on every rank, at start-up."""
    if strategy(accelerator) != "fsdp2":
        return
    one = torch.ones(1, 2, dtype=torch.long, device=accelerator.device)
    with torch.no_grad():
        model(one, one, torch.ones(1, 1, device=accelerator.device))


def prepare_reference(accelerator, module: torch.nn.Module) -> torch.nn.Module:
    """The frozen reference model placed like the policy: DeepSpeed-initialised (sharded under ZeRO-3), FSDP2-sharded,
    or simply moved to the device (single, DDP)."""
    module = module.eval().requires_grad_(False)
    kind = strategy(accelerator)
    if kind.startswith("zero"):  # DeepSpeed's bf16 casts the module itself, for the policy and the reference alike
        from trl.models.utils import prepare_deepspeed
        return prepare_deepspeed(module, accelerator)
    if kind == "fsdp2":
        # accelerate's own preparation, as for the policy: with fsdp_cpu_ram_efficient_loading only rank 0 loaded
        # real weights and this broadcasts them (TRL's prepare_fsdp does not: the other ranks' shards would be
        # whatever from_pretrained left there); it also keeps tied embeddings tied.
        from accelerate.utils.fsdp_utils import fsdp2_prepare_model
        return autocast_like_policy(accelerator, fsdp2_prepare_model(accelerator, module).eval())
    return autocast_like_policy(accelerator, module.to(accelerator.device))


def autocast_like_policy(accelerator, module: torch.nn.Module) -> torch.nn.Module:
    """`module`'s forward under the autocast `accelerator.prepare` puts around the policy's forward (single, DDP,
    FSDP2 with bf16/fp16; nothing otherwise), so a float32 reference computes exactly as the policy at equal weights
    (its KL at step 0 is 0). Not `accelerator.prepare_model(evaluation_mode=True)`: that would register the
    reference with accelerate, and save_state would write it into every checkpoint."""
    if not accelerator.native_amp:
        return module
    forward = module.forward

    def autocast_forward(*args, **kwargs):
        with accelerator.autocast():
            return forward(*args, **kwargs)
    module.forward = autocast_forward
    return module


def shards_parameters(accelerator) -> bool:
    """Whether every forward of the model is a collective (parameters gathered on the fly)."""
    return strategy(accelerator) in ("zero3", "fsdp2")


class DecodeSync:
    """Lock-step decoding for the transformers engine when parameters are sharded (ZeRO-3, FSDP): ranks agree on
    the number of decoding loops and steps, so every rank runs every collective forward (see rl/rollout/engines/hf.py)."""

    def __init__(self, accelerator):
        self.device = accelerator.device

    def _all_reduce(self, value: int, op) -> int:
        t = torch.tensor([value], device=self.device)
        torch.distributed.all_reduce(t, op=op)
        return int(t.item())

    def max_int(self, n: int) -> int:
        return self._all_reduce(n, torch.distributed.ReduceOp.MAX)

    def all_true(self, flag: bool) -> bool:
        return bool(self._all_reduce(int(flag), torch.distributed.ReduceOp.MIN))


def clean_name(name: str, prefix: str = "") -> str:
    """A parameter name as the Hugging Face checkpoint spells it: wrapper segments and `prefix` removed."""
    for part in WRAPPER_PREFIXES:
        name = name.replace(part, "")
    name = name.removeprefix("module.")
    return name.removeprefix(prefix)


def iter_full_params(model: torch.nn.Module, prefix: str = "") -> Iterator[tuple[str, torch.Tensor]]:
    """Yield (checkpoint name, full tensor) for every parameter, gathering at most one module at a time.

    Pass the *prepared* model (the outermost wrapper); `prefix` (e.g. "lm.") is removed from the names.

    * plain / DDP / ZeRO-1,2: the parameters themselves (no copies);
    * FSDP2: `DTensor.full_tensor()` per parameter (collective); the root group (embed_tokens, final norm, lm_head)
      is a parameter group like the others, nothing is skipped;
    * ZeRO-3: per module, `deepspeed.zero.GatheredParameters(its own params)`, yielding clones (the gathered buffers
      are released when the context exits, while the consumer may still hold the tensor).
    Tied parameters are yielded once (named_parameters de-duplicates), which vLLM expects for tied embeddings.
    Collective under ZeRO-3 / FSDP2: every rank must iterate to the end.
    """
    if any(is_zero3_param(p) for p in model.parameters()):
        import deepspeed

        seen: set[int] = set()
        for mod_name, module in model.named_modules():
            params = [(n, p) for n, p in module.named_parameters(recurse=False) if id(p) not in seen]
            if not params:
                continue
            seen.update(id(p) for _, p in params)
            with deepspeed.zero.GatheredParameters([p for _, p in params], modifier_rank=None):
                for n, p in params:
                    yield clean_name(f"{mod_name}.{n}" if mod_name else n, prefix), p.data.detach().clone()
        return
    for name, p in model.named_parameters():
        t = p.detach()
        if type(t).__name__ == "DTensor":
            t = t.full_tensor()
        yield clean_name(name, prefix), t


def trainable_full_params(accelerator, model: torch.nn.Module, prefix: str = "") -> dict[str, torch.Tensor]:
    """{checkpoint name: full float32 tensor on the CPU} of the trainable parameters only (LoRA's adapters), without
    gathering the frozen rest. Collective under DeepSpeed and FSDP2 (every rank calls it; all ranks get the tensors):

    * DeepSpeed (ZeRO-1/2/3): the optimizer's float32 masters (`safe_get_full_fp32_param`); under bf16 the module
      holds bf16 copies of them, and an adapter saved from those would be rounded to 8 mantissa bits;
    * FSDP2: `DTensor.full_tensor()` of each trainable parameter (float32 shards);
    * single / DDP: the parameters themselves."""
    deepspeed = strategy(accelerator).startswith("zero")
    out = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        if deepspeed:
            from deepspeed.utils import safe_get_full_fp32_param
            t = safe_get_full_fp32_param(p)
        else:
            t = p.detach()
            if type(t).__name__ == "DTensor":
                t = t.full_tensor()
        out[clean_name(name, prefix)] = t.detach().float().cpu().clone()
    return out


def full_state_dict(accelerator, model: torch.nn.Module, prefix: str = "") -> dict[str, torch.Tensor]:
    """Consolidated weights with checkpoint names (collective; complete on the main process). Under ZeRO-3 this
    needs `stage3_gather_16bit_weights_on_model_save` (accelerate's `zero3_save_16bit_model: true`)."""
    state = accelerator.get_state_dict(model)
    return {clean_name(k, prefix): v for k, v in (state or {}).items()}
