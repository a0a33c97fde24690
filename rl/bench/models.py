"""Random-init Qwen2-shaped models for the benchmarks, built offline and cached by their settings.

    python -m rl.bench.models                 # build (or find) every CPU preset; prints path and parameter count
    python -m rl.bench.models qwen2-22m       # one preset

Presets (`PRESETS`):

- `qwen2-22m`: Qwen2ForCausalLM, hidden 512, 8 layers, 8 query heads / 2 KV heads (head_dim 64, GQA 4:1 as in
  Qwen2.5), MLP 1,344 wide, tied embeddings, with the project's tiny tokenizer (464 tokens) so the r1_zero prompts and
  the rewards apply unchanged: 22,010,368 parameters. Qwen2's own MLP ratio (~5.4x hidden) would give ~40M at this
  width and depth; the MLP is narrowed (2.625x) to hit the ~22M target, everything else keeps Qwen2's layout
  (q/k/v bias, RMSNorm 1e-6, rope_theta 1e6, SwiGLU).
- `vocab-152k`: the same layout with Qwen2.5's vocabulary size (151,936), hidden 256, 2 layers, 4 heads / 2 KV heads,
  MLP 1,024, 32k positions: 40,864,000 parameters, 95% of them the (tied) embedding. For the learner memory benchmark,
  where the [tokens, vocab] logits dominate; it runs on random token ids (the tiny tokenizer is saved with it only
  because trl.GRPOTrainer needs a processing class).
- `qwen2.5-1.5b`: Qwen2.5-1.5B's shape (hidden 1,536, 28 layers, 12 heads / 2 KV heads, MLP 8,960, vocab 151,936,
  tied embeddings, rope_theta 1e6, 32k positions): 1,543,714,304 parameters, random weights, the tiny tokenizer. For
  the GPU check (rl/bench/gpu_check.py), where nothing can be downloaded; 6.2 GB on disk (float32).

Weights are drawn from `torch.manual_seed(spec.seed)` with transformers' default init, so a cache entry is a pure
function of its `BenchSpec`; entries are written to a temporary directory and renamed into place (a half-built entry is
never used), under `$R1_CACHE/bench/` like rl/tiny/build.py's.
"""
from __future__ import annotations

import hashlib
import json
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import torch


@dataclass(frozen=True)
class BenchSpec:
    """Everything that determines a benchmark model (its hash names the cache entry)."""

    hidden_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    intermediate_size: int
    vocab_size: int | None = None  # None: the tokenizer's length
    max_positions: int = 2048
    tie_word_embeddings: bool = True
    rope_theta: float = 1_000_000.0
    seed: int = 0

    def key(self, tokenizer_id: str = "") -> str:
        blob = json.dumps({**asdict(self), "tokenizer": tokenizer_id}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:12]


PRESETS: dict[str, BenchSpec] = {
    "qwen2-22m": BenchSpec(hidden_size=512, num_layers=8, num_heads=8, num_kv_heads=2, intermediate_size=1344),
    "vocab-152k": BenchSpec(hidden_size=256, num_layers=2, num_heads=4, num_kv_heads=2, intermediate_size=1024,
                            vocab_size=151_936, max_positions=32_768),
    "qwen2.5-1.5b": BenchSpec(hidden_size=1536, num_layers=28, num_heads=12, num_kv_heads=2, intermediate_size=8960,
                              vocab_size=151_936, max_positions=32_768),
}


GPU_ONLY = {"qwen2.5-1.5b"}  # built only when named (6.2 GB; the GPU check builds it itself)


def expected_num_params(spec: BenchSpec, vocab_size: int) -> int:
    """Parameter count of Qwen2ForCausalLM for `spec` (q/k/v with bias, o without, SwiGLU MLP, 2 RMSNorms a layer)."""
    h, i = spec.hidden_size, spec.intermediate_size
    kv = spec.num_kv_heads * (h // spec.num_heads)
    per_layer = (h * h + h) + 2 * (h * kv + kv) + h * h + 3 * h * i + 2 * h
    head = 0 if spec.tie_word_embeddings else vocab_size * h
    return vocab_size * h + spec.num_layers * per_layer + h + head


def default_cache_dir() -> Path:
    from rl.tiny.build import default_cache_dir as tiny_cache
    return tiny_cache()


def make_model(spec: BenchSpec, vocab_size: int, eos_token_id: int | None, pad_token_id: int | None):
    """A randomly initialised Qwen2ForCausalLM (float32) for `spec`."""
    from transformers import GenerationConfig, Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(spec.seed)
    config = Qwen2Config(
        vocab_size=vocab_size, hidden_size=spec.hidden_size, intermediate_size=spec.intermediate_size,
        num_hidden_layers=spec.num_layers, num_attention_heads=spec.num_heads, num_key_value_heads=spec.num_kv_heads,
        max_position_embeddings=spec.max_positions, rope_theta=spec.rope_theta, rms_norm_eps=1e-6,
        tie_word_embeddings=spec.tie_word_embeddings, use_sliding_window=False, bos_token_id=None,
        eos_token_id=eos_token_id, pad_token_id=pad_token_id, dtype="float32",
    )
    model = Qwen2ForCausalLM(config)
    model.generation_config = GenerationConfig(eos_token_id=eos_token_id, pad_token_id=pad_token_id)
    return model


def build_bench_model(spec: BenchSpec | str, cache_dir: Path | None = None, tokenizer_dir: str | None = None,
                      force: bool = False) -> Path:
    """Path of an HF model dir (config, safetensors, tokenizer) for `spec` (or a preset name), built once and cached.

    The tokenizer is copied from `tokenizer_dir` (default: the project's tiny base model, built on first use)."""
    if isinstance(spec, str):
        if spec not in PRESETS:
            raise ValueError(f"unknown benchmark model {spec!r}; presets: {', '.join(PRESETS)}")
        name, spec = spec, PRESETS[spec]
    else:
        name = "custom"
    if tokenizer_dir is None:
        from rl.tiny.sources import resolve_model_path
        tokenizer_dir = resolve_model_path("tiny")
    from rl.train.models import load_tokenizer
    from rl.tiny.build import publish_model_dir
    tokenizer = load_tokenizer(str(tokenizer_dir))
    tok_id = hashlib.sha256(Path(tokenizer_dir, "tokenizer.json").read_bytes()).hexdigest()[:12]
    out = Path(cache_dir or default_cache_dir()) / "bench" / f"{name}-{spec.key(tok_id)}"
    if out.exists() and not force:
        return out
    vocab = spec.vocab_size or len(tokenizer)
    model = make_model(spec, vocab, tokenizer.eos_token_id, tokenizer.pad_token_id)
    return publish_model_dir(out, model, tokenizer, "bench_spec.json",
                             {"name": name, "spec": asdict(spec), "vocab_size": vocab,
                              "num_params": sum(p.numel() for p in model.parameters()),
                              "tokenizer_from": str(tokenizer_dir)}, force)


def describe(path: Path) -> dict:
    """The cache entry's record: name, spec, vocab size, parameter count."""
    return json.loads((Path(path) / "bench_spec.json").read_text())


if __name__ == "__main__":
    for preset in sys.argv[1:] or [p for p in PRESETS if p not in GPU_ONLY]:
        path = build_bench_model(preset)
        info = describe(path)
        print(f"{preset}: {path} ({info['num_params']:,} parameters, vocab {info['vocab_size']:,})")
