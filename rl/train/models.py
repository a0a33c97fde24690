"""Loading policy/reference models and tokenizers (I/O).

Named models that are built rather than found (the miniature world's `tiny`, `tiny-student`, ...) reach the loader as
*model sources*: a mapping from a name to a function that builds (or finds cached) the model directory, given by the
caller (the stages pass rl.tiny.sources.TINY_SOURCES, through its `resolve_model_path`). The machinery never imports
the tiny world itself (tests/test_layout.py).
"""
from __future__ import annotations

import os
from pathlib import Path
from types import MappingProxyType
from typing import Callable, Mapping

import torch

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


ModelSources = Mapping[str, Callable[[], "str | Path"]]
NO_SOURCES: ModelSources = MappingProxyType({})


def resolve_model_path(name_or_path: str, sources: ModelSources = NO_SOURCES) -> str:
    """A model directory for a recipe's `model.name_or_path`:

    - a name in `sources`: what its builder returns (e.g. rl.tiny.sources.TINY_SOURCES["tiny"] builds the tiny base
      model on first use and returns its cached directory);
    - a run directory: its `model/` if SFT wrote one, else its latest checkpoint;
    - anything else (a model dir, a hub id) as it is.
    """
    if name_or_path in sources:
        return str(sources[name_or_path]())
    path = Path(name_or_path)
    if path.is_dir() and not (path / "config.json").is_file() and not (path / "adapter_config.json").is_file():
        if (path / "model" / "config.json").is_file():
            return str(path / "model")
        from rl.train.checkpoint import latest_checkpoint
        latest = latest_checkpoint(path)
        if latest is not None:
            return str(latest)
    return name_or_path


def weights_fingerprint(model_path: str, edge_bytes: int = 1 << 20) -> str:
    """A short fingerprint of the weights in a local model directory: sha256 over each weight file's name, size and
    first and last `edge_bytes` (reading 2 MiB per file, not 15 GB). Two checkpoints of one run differ in it (their
    tensors differ from the first bytes on), so does a directory retrained in place; a hub id that is not a local
    directory is its own fingerprint. E.g. "runs/r1" resolved to checkpoint-40, then r1 trained on to
    checkpoint-80: same name, different fingerprint."""
    import hashlib

    root = Path(model_path)
    if not root.is_dir():
        return model_path
    digest = hashlib.sha256()
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix in (".safetensors", ".bin", ".pt"))
    for f in files:
        size = f.stat().st_size
        digest.update(f"{f.relative_to(root)}:{size}:".encode())
        with open(f, "rb") as fh:
            digest.update(fh.read(edge_bytes))
            if size > edge_bytes:
                fh.seek(max(edge_bytes, size - edge_bytes))
                digest.update(fh.read(edge_bytes))
    return digest.hexdigest()[:16]


def _hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes", "on")


def check_model_source(name_or_path: str, key: str = "model.name_or_path", sources: ModelSources = NO_SOURCES) -> None:
    """A one-line ConfigError, before anything is loaded or written, when `name_or_path` cannot be a model:

    - a name in `sources` (e.g. `tiny`): always fine (built on first use);
    - an existing directory: it must be a model (config.json / adapter_config.json), or a run directory with a
      `model/` or a checkpoint;
    - otherwise it must be a hub id (`org/name`), and while offline (HF_HUB_OFFLINE=1) one in the local cache:
      `runs/x/model` (not a hub id) -> "model.name_or_path 'runs/x/model': no such directory".
    """
    from rl.config.recipe import ConfigError

    if name_or_path in sources:
        return
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        resolved = Path(resolve_model_path(str(path)))
        if not ((resolved / "config.json").is_file() or (resolved / "adapter_config.json").is_file()):
            raise ConfigError(f"{key} {name_or_path!r} is a directory without a model (no config.json, model/ or "
                              f"checkpoint-*)")
        return
    from huggingface_hub.utils import HFValidationError, validate_repo_id
    try:
        validate_repo_id(name_or_path)
        is_hub_id = not name_or_path.startswith((".", "~")) and name_or_path.count("/") <= 1
    except HFValidationError:
        is_hub_id = False
    if not is_hub_id or path.exists():
        raise ConfigError(f"{key} {name_or_path!r}: no such directory")
    if _hub_offline():
        from huggingface_hub import try_to_load_from_cache
        if not isinstance(try_to_load_from_cache(name_or_path, "config.json"), str):
            raise ConfigError(f"{key} {name_or_path!r}: no such directory, and no cached copy of that hub model "
                              f"while offline (HF_HUB_OFFLINE=1)")


def load_tokenizer(path: str):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(path)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    tok.padding_side = "left"  # not saved by transformers 5.x: set on every load
    return tok


def load_causal_lm(path: str, dtype: str = "float32", attn_implementation: str | None = None):
    from transformers import AutoModelForCausalLM

    kwargs = {"dtype": DTYPES[dtype]}
    if attn_implementation:
        kwargs["attn_implementation"] = attn_implementation
    return AutoModelForCausalLM.from_pretrained(path, **kwargs)


def load_policy_and_reference(path: str, model_cfg, beta: float):
    """(policy, reference | None) as the GRPO learner takes them (rl/train/learner.py).

    Policy: float32 master weights (`model.dtype` is the compute dtype: autocast, FSDP2's param dtype or DeepSpeed's
    bf16). With `model.lora` only the adapters train, so the frozen base is loaded in the compute dtype (half the
    memory at bf16; rl/train/lora.py keeps the adapters in float32, as peft and TRL do) and there is no second model:
    the reference is the base with the adapters off.

    Reference (beta > 0, no LoRA): loaded exactly as the policy (float32) and run under the same mixed precision
    (rl/train/distributed.py `prepare_reference`), so at step 0 it computes what the policy computes and the KL is 0.
    A bf16 copy run without autocast differs in every norm and residual add (8-layer random Llama: mean |dlogp|
    1.8e-3, k3 KL 2.8e-6 at identical weights), and beta > 0 trained on that bias."""
    lora = model_cfg.lora.enabled
    policy = load_causal_lm(path, model_cfg.dtype if lora else "float32", model_cfg.attn_implementation)
    reference = (load_causal_lm(path, "float32", model_cfg.attn_implementation) if beta > 0 and not lora
                 else None)
    return policy, reference


POSITION_KEYS = ("max_position_embeddings", "n_positions", "max_seq_len", "seq_length")


def rope_scaled(path: str) -> bool:
    """Whether the model's config extends its positions with a RoPE scaling (yarn, linear, dynamic, ...)."""
    from transformers import AutoConfig

    try:
        config = AutoConfig.from_pretrained(path)
    except (OSError, ValueError):
        return False
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    rope = getattr(text, "rope_parameters", None) or getattr(text, "rope_scaling", None) or {}  # transformers 5 / 4
    return rope.get("rope_type", rope.get("type", "default")) not in ("default", None)


def context_length(path: str) -> int | None:
    """The number of positions the model at `path` has, from its config alone (no weights are read); None when the
    config names none (the check is then skipped)."""
    from transformers import AutoConfig

    try:
        config = AutoConfig.from_pretrained(path)
    except (OSError, ValueError):  # no config.json (e.g. a PEFT adapter dir): the model loader reports it
        return None
    for cfg in (config, getattr(config, "text_config", None)):
        for key in POSITION_KEYS:
            value = getattr(cfg, key, None) if cfg is not None else None
            if isinstance(value, int) and value > 0:
                return value
    return None


def check_context_length(path: str, max_prompt_length: int, max_completion_length: int) -> None:
    """One-line ConfigError when a prompt plus its completion cannot fit the model's positions (checked before any
    weights are loaded or any engine starts: past its positions a model emits garbage or the engine refuses late)."""
    from rl.config.recipe import ConfigError

    positions = context_length(path)
    if positions is not None and max_prompt_length + max_completion_length > positions:
        raise ConfigError(f"rollout.max_prompt_length={max_prompt_length} + rollout.max_completion_length="
                          f"{max_completion_length} = {max_prompt_length + max_completion_length} exceeds the "
                          f"{positions} positions of {path} (max_position_embeddings): shorten them or use a model "
                          f"with a longer context")


def is_local_model(path: str) -> bool:
    return Path(path).is_dir()
