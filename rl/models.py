"""Loading policy/reference models and tokenizers (I/O). `tiny` resolves to the project's cached tiny base model."""
from __future__ import annotations

from pathlib import Path

import torch

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def resolve_model_path(name_or_path: str) -> str:
    """`tiny` (the default tiny base, built on first use) or `tiny-init` (same tokenizer/architecture, untrained)."""
    if name_or_path in ("tiny", "tiny-init"):
        from rl.tiny.build import TinySpec, build_tiny_model
        return str(build_tiny_model(TinySpec(pretrain=name_or_path == "tiny")))
    return name_or_path


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


def is_local_model(path: str) -> bool:
    return Path(path).is_dir()
