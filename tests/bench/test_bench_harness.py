"""The benchmark harness itself (rl/bench): the memory tracker reads known allocations exactly, and the model builder
makes the shapes and parameter counts it claims. No timing here; the benchmarks run with `make bench`."""
from __future__ import annotations

import json

import pytest
import torch

from rl.bench.models import PRESETS, BenchSpec, build_bench_model, expected_num_params
from rl.bench.tracker import PeakMemory, self_check


def test_tracker_known_allocations():
    got = self_check()
    assert got["alloc_peak"] == got["alloc_end"] == 4_000_000  # [1000, 1000] float32
    assert got["freed_peak"] == 4_000_000 and got["freed_end"] == 0
    # logsumexp keeps an input-sized exp() buffer inside the op: seen, unlike op outputs alone (4,000 bytes)
    assert 4_000_000 <= got["logsumexp_peak"] < 4_100_000


def test_tracker_baseline_and_backward():
    w = torch.randn(1000, 250, requires_grad=True)  # before the block: not counted
    with PeakMemory() as mem:
        y = w * 2  # 1 MB, kept
        y.sum().backward()  # creates w.grad: 1 MB
    assert mem.end_bytes == 2_000_000
    assert 2_000_000 <= mem.peak_bytes < 2_100_000
    del y
    with PeakMemory() as mem:
        (w * 2).sum().backward()  # the product is freed after sum (not saved for backward), then w.grad += 2
    assert mem.peak_bytes < 2_000_000 and mem.end_bytes == 0  # the existing grad is accumulated into in place


def test_presets_claimed_sizes():
    assert expected_num_params(PRESETS["qwen2-22m"], vocab_size=464) == 22_010_368  # tiny tokenizer: 464 tokens
    assert expected_num_params(PRESETS["vocab-152k"], vocab_size=151_936) == 40_864_000


@pytest.mark.parametrize("tie", [True, False])
def test_builder_shapes_and_count(tmp_path, micro_model_dir, tie):
    spec = BenchSpec(hidden_size=32, num_layers=2, num_heads=4, num_kv_heads=2, intermediate_size=48,
                     vocab_size=None if tie else 1000, max_positions=64, tie_word_embeddings=tie)
    path = build_bench_model(spec, cache_dir=tmp_path, tokenizer_dir=str(micro_model_dir))
    assert build_bench_model(spec, cache_dir=tmp_path, tokenizer_dir=str(micro_model_dir)) == path  # cached
    from transformers import AutoModelForCausalLM, AutoTokenizer
    model = AutoModelForCausalLM.from_pretrained(path)
    vocab = len(AutoTokenizer.from_pretrained(path)) if tie else 1000
    assert type(model).__name__ == "Qwen2ForCausalLM"
    assert model.config.vocab_size == vocab and model.config.num_key_value_heads == 2
    assert sum(p.numel() for p in model.parameters()) == expected_num_params(spec, vocab)
    assert json.loads((path / "bench_spec.json").read_text())["num_params"] == expected_num_params(spec, vocab)
    assert model.model.layers[0].self_attn.k_proj.weight.shape == (16, 32)  # 2 KV heads x head_dim 8
    assert not list(tmp_path.glob("bench/.tmp-*"))  # atomic: no leftovers
