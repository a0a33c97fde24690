"""LoRA for GRPO (peft 0.21): adapters on the policy, the base as reference, merged weights for the rollout engine.

    model.lora: {enabled: true, r: 8, alpha: 16, dropout: 0.0, target_modules: [all-linear], learning_rate: null}

The defaults learn (current practice, "LoRA Without Regret"): adapters on every linear layer, MLPs included, at
10x `train.learning_rate` unless `model.lora.learning_rate` says otherwise (a recipe states the full fine-tuning
rate; the start-up line `start_up_notice` says which rate the adapters get).

What `apply_lora` does to the transformers model the learner was given (in place, through `peft.get_peft_model`):
each target `nn.Linear` W becomes a `peft.tuners.lora.Linear` holding `base_layer` (W, frozen), `lora_A` [r, in] and
`lora_B` [out, r] (trainable; B starts at 0, so step 0 is exactly the base model), and computes

    y = W x + scale * B (A x),        scale = alpha / r

Every other parameter is frozen. The frozen base is loaded in the compute dtype `model.dtype` (bf16: half the
memory of float32, rl/train/models.py `load_policy_and_reference`); peft creates the adapters in float32
(`autocast_adapter_dtype`), the weights AdamW updates. The learner wraps the same model object (`LoraPolicy.lm`) in CausalLMLogprobs, so
DDP / DeepSpeed / FSDP2 see one module tree; the optimizer is built on the trainable parameters only, so AdamW holds
state for the adapters alone (2 moments of r * (in + out) values per target layer instead of in * out).

Reference model (beta > 0): the policy itself with its adapters switched off (`peft_model.disable_adapter()`), as TRL
does: no second copy of the model.

The rollout engine gets the merged weights under the base model's parameter names. `merge_stream` consumes the
learner's `(name, full tensor)` stream (rl/train/distributed.py `iter_full_params`: one module at a time under every
strategy) and, per LoRA layer, yields `<layer>.weight = W + scale * B @ A` as a new tensor (the trained adapter and W
are not touched; nothing is merged in place). Worked example, a 2 x 2 layer with r = 1, alpha = 2 (scale 2):

    W = [[1, 0],     A = [[1, 2]]     B = [[3],      B @ A = [[3, 6],     W + 2 B @ A = [[ 7, 12],
         [0, 1]]                           [4]]               [4, 8]]                    [ 8, 17]]

For the transformers engine nothing is pushed: it shares the learner's modules and applies the adapters on the fly
(two small extra matmuls per target layer). vLLM (colocated, server, async worker) receives the merged stream, the same
bytes as a full fine-tune's push; vLLM's own LoRA adapters would push only A and B but need `enable_lora`, a
max rank fixed at start-up, and a per-request `LoRARequest` (not wired; see docs/performance.md).

Checkpoints: the adapter tensors are gathered alone (rl/train/distributed.py `trainable_full_params`: under ZeRO-3
/ FSDP2 the frozen base is not gathered to rank 0 at each save), from the float32 masters (under DeepSpeed's bf16 the
module holds bf16 copies of A and B; the optimizer's float32 partitions are what trains). `write_adapter` writes
peft's adapter files (adapter_config.json naming the base model, adapter_model.safetensors) in place of a full Hugging
Face model, so rl/export.py merges and reload-checks it like a LoRA SFT checkpoint. Under single / DDP, `keep_state_small` makes accelerate's `save_state` keep only the adapters
(the base is reloaded from `model.name_or_path` on resume) and loads them back with a strict name check; under
DeepSpeed / FSDP2 `state/` holds the whole model as the strategy shards it (correct, not small).
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from pathlib import Path

import torch

ADAPTER = "default"  # peft's adapter name; appears in parameter names as lora_A.default.weight
_PARTS = ("base_layer.weight", f"lora_A.{ADAPTER}.weight", f"lora_B.{ADAPTER}.weight")
_BIAS = "base_layer.bias"  # a biased target layer's bias: not touched by LoRA, pushed under the base name


def peft_config(section):
    """A peft LoraConfig from the recipe's `model.lora` (rl/config/grpo.py LoraSection)."""
    from peft import LoraConfig

    targets = section.target_modules
    return LoraConfig(r=section.r, lora_alpha=section.alpha, lora_dropout=section.dropout, bias="none",
                      target_modules="all-linear" if list(targets) == ["all-linear"] else list(targets),
                      task_type="CAUSAL_LM")


def start_up_notice(section, train_learning_rate: float, trainable: int, total: int) -> str:
    """The line rl/grpo.py prints when LoRA is on: targets, the adapters' learning rate and where it comes from.
    E.g. r 16, alpha 32, [all-linear], learning_rate null, train.learning_rate 2e-4, 1.2M of 100M parameters ->
    "LoRA r 16, alpha 32 on [all-linear]: 1,200,000 of 100,000,000 parameters train, at lr 0.002 (10x
    train.learning_rate 0.0002; set model.lora.learning_rate to choose)"."""
    from rl.config.grpo import LORA_LR_FACTOR

    lr = section.effective_learning_rate(train_learning_rate)
    source = (f"{LORA_LR_FACTOR:g}x train.learning_rate {train_learning_rate:g}; set model.lora.learning_rate to "
              f"choose" if section.learning_rate is None else "model.lora.learning_rate")
    return (f"LoRA r {section.r}, alpha {section.alpha:g} on [{', '.join(section.target_modules)}]: {trainable:,} of "
            f"{total:,} parameters train, at lr {lr:g} ({source})")


def apply_lora(model: torch.nn.Module, section) -> "LoraPolicy":
    """Inject adapters into `model` (in place; everything else frozen) and return the handle the learner keeps."""
    from peft import get_peft_model
    from peft.tuners.lora import Linear as LoraLinear
    from peft.tuners.tuners_utils import BaseTunerLayer

    try:
        peft_model = get_peft_model(model, peft_config(section))
    except ValueError as e:  # e.g. "Target modules {...} not found in the base model"
        raise ValueError(f"model.lora.target_modules: {str(e).splitlines()[0]}") from None
    layers = {name: m for name, m in peft_model.get_base_model().named_modules() if isinstance(m, BaseTunerLayer)}
    for name, m in layers.items():
        if type(m) is not LoraLinear or m.fan_in_fan_out or m.use_dora.get(ADAPTER):
            raise ValueError(f"model.lora.target_modules: {name} ({type(m.base_layer).__name__}) is not an "
                             f"nn.Linear; the merged weight push supports only those")
    return LoraPolicy(peft_model, {name: float(m.scaling[ADAPTER]) for name, m in layers.items()})


def merge_stream(named: Iterable[tuple[str, torch.Tensor]], scales: dict[str, float]
                 ) -> Iterator[tuple[str, torch.Tensor]]:
    """`(name, tensor)` with LoRA names -> the same with base-model names and merged weights (see the module doc).

    For a layer L in `scales`, the three tensors `L.base_layer.weight`, `L.lora_A.default.weight`,
    `L.lora_B.default.weight` (in any order, any interleaving) become one `L.weight` = W + scale * B @ A, computed in
    float32 and returned in W's dtype; the layer's bias `L.base_layer.bias` (Qwen2's q/k/v projections have one) is
    LoRA-free and passes unchanged as `L.bias`; every other tensor passes through unchanged. At most one layer's
    three tensors are held at a time when the stream comes module by module (as iter_full_params yields it)."""
    pending: dict[str, dict[str, torch.Tensor]] = {}
    for name, tensor in named:
        layer, part = _split(name, scales)
        if layer is None:
            yield name, tensor
            continue
        if part == _BIAS:
            yield f"{layer}.bias", tensor
            continue
        parts = pending.setdefault(layer, {})
        parts[part] = tensor
        if len(parts) == len(_PARTS):
            del pending[layer]
            w, a, b = (parts[p] for p in _PARTS)  # [out, in], [r, in], [out, r]
            merged = w.float() + scales[layer] * (b.float() @ a.float())  # a new tensor: w, a, b stay as they are
            yield f"{layer}.weight", merged.to(w.dtype)
    if pending:
        raise RuntimeError(f"LoRA merge: incomplete layers at the end of the stream: {sorted(pending)[:3]}")


def _split(name: str, scales: dict[str, float]) -> tuple[str | None, str | None]:
    for part in (*_PARTS, _BIAS):
        if name.endswith("." + part) and name[:-len(part) - 1] in scales:
            return name[:-len(part) - 1], part
    if "lora_" in name:  # e.g. a dropout-free adapter of another name: refuse rather than push it as a base weight
        raise RuntimeError(f"LoRA merge: unexpected adapter tensor {name}")
    return None, None


class LoraPolicy:
    """The learner's LoRA handle. `lm` is the transformers model with the adapters inside (what the learner trains,
    the transformers engine decodes with, and `peft_model.get_base_model()` returns); `scales[layer] = alpha / r`."""

    def __init__(self, peft_model, scales: dict[str, float]):
        self.peft_model = peft_model
        self.lm = peft_model.get_base_model()
        self.scales = scales
        self.trainable = {n for n, p in self.lm.named_parameters() if p.requires_grad}  # lm-relative names

    def adapter_disabled(self) -> contextlib.AbstractContextManager:
        """The base model: inside this context every LoRA layer computes W x only (the reference policy)."""
        return self.peft_model.disable_adapter()

    def merged(self, named: Iterable[tuple[str, torch.Tensor]]) -> Iterator[tuple[str, torch.Tensor]]:
        return merge_stream(named, self.scales)

    def write_adapter(self, directory: Path, weights: dict[str, torch.Tensor]) -> None:
        """peft's adapter files from consolidated, lm-relative `weights` (rl/train/distributed.py full_state_dict):
        adapter_config.json (base_model_name_or_path = the base the run loaded) + adapter_model.safetensors."""
        adapter = {f"base_model.model.{n}": weights[n] for n in sorted(self.trainable)}
        self.peft_model.save_pretrained(str(directory), state_dict=adapter, safe_serialization=True)

    def keep_state_small(self, accelerator, prepared: torch.nn.Module) -> None:
        """Single process / DDP: accelerate's save_state writes only the adapters of `prepared` (the frozen base is
        reloaded from the recipe's model on resume) and load_state loads them back, refusing a name mismatch."""
        from safetensors.torch import load_file

        from rl.train.distributed import clean_name, strategy
        if strategy(accelerator) not in ("single", "ddp"):
            return
        keep = self.trainable

        def lm_name(key: str) -> str:
            return clean_name(key, "lm.")

        def save_hook(models, weights, output_dir):
            for i, model in enumerate(models):
                if model is prepared:
                    weights[i] = {k: v for k, v in weights[i].items() if lm_name(k) in keep}

        def load_hook(models, input_dir):
            for i, model in enumerate(models):
                if model is not prepared:
                    continue
                path = Path(input_dir) / ("model.safetensors" if i == 0 else f"model_{i}.safetensors")
                state = load_file(str(path))
                names = {lm_name(k) for k in state}
                if names != keep:
                    raise RuntimeError(f"{path}: adapter names differ from this run's LoRA layers "
                                       f"(missing {sorted(keep - names)[:3]}, unexpected {sorted(names - keep)[:3]}): "
                                       f"was it saved with the same model.lora settings?")
                model.load_state_dict(state, strict=False)
                models.pop(i)  # loaded here; accelerate would demand the frozen base weights too
                return

        accelerator.register_save_state_pre_hook(save_hook)
        accelerator.register_load_state_pre_hook(load_hook)
