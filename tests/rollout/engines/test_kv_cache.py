"""The engine's in-place KV cache (rl/rollout/engines/kv_cache.py) == transformers' DynamicCache: the same keys and
values after every cache operation the decoding loop uses, and the same generated tokens and sampling logprobs."""
import pytest
import torch
from transformers import DynamicCache, Qwen2Config, Qwen2ForCausalLM
from transformers.cache_utils import DynamicLayer

import rl.rollout.engines.kv_cache as kv_cache
from rl.core.episode import SamplingParams
from rl.rollout.engines.hf import HFEngine
from rl.rollout.engines.kv_cache import PreallocatedLayer
from rl.train.models import load_causal_lm, load_tokenizer


def test_layer_matches_dynamic_layer_through_every_operation():
    """prefill 5 positions of 2 rows, repeat each row 3x (6 rows), 6 one-token steps (capacity 8 = 5 + 3: the buffer
    doubles at the 4th step), drop rows {1, 4}, 1 more step, crop 2 positions: keys/values equal at every stage."""
    g = torch.Generator().manual_seed(0)
    ours, ref = PreallocatedLayer(capacity=8), DynamicLayer()

    def step(b: int, q: int) -> None:
        k, v = torch.randn(b, 2, q, 4, generator=g), torch.randn(b, 2, q, 3, generator=g)  # [B, H, q, D], Dv = 3
        ko, vo = ours.update(k, v)
        kr, vr = ref.update(k, v)
        assert torch.equal(ko, kr) and torch.equal(vo, vr) and ours.get_seq_length() == ref.get_seq_length()

    step(2, 5)
    ours.batch_repeat_interleave(3), ref.batch_repeat_interleave(3)
    assert torch.equal(ours.keys, ref.keys) and ours.keys.shape == (6, 2, 5, 4)
    for _ in range(6):
        step(6, 1)
    assert ours.get_seq_length() == 11 and ours._k.shape[-2] == 16  # 8 doubled once
    keep = torch.tensor([0, 2, 3, 5])
    ours.batch_select_indices(keep), ref.batch_select_indices(keep)
    assert torch.equal(ours.values, ref.values)
    step(4, 1)
    ours.crop(-2), ref.crop(-2)
    assert torch.equal(ours.keys, ref.keys) and torch.equal(ours.values, ref.values) and ours.get_seq_length() == 10


def _qwen2_gqa(vocab: int) -> torch.nn.Module:
    """A random 2-layer Qwen2 with grouped-query attention (4 query heads over 2 KV heads), float32, eval."""
    torch.manual_seed(0)
    cfg = Qwen2Config(vocab_size=vocab, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
                      attn_implementation="sdpa")
    return Qwen2ForCausalLM(cfg).eval()


@pytest.mark.parametrize("arch", ["llama", "qwen2-gqa"])
def test_generation_equals_dynamic_cache(micro_model_dir, monkeypatch, arch):
    """64 completions (8 prompts of 3..10 tokens x n = 8, left padding differs), 16 new tokens at temperature 1:
    rows finish at different steps, so finished rows are dropped from the cache mid-way; tokens equal exactly,
    logprobs to 1e-6, against the same loop on transformers' DynamicCache."""
    tok = load_tokenizer(str(micro_model_dir))
    model = load_causal_lm(str(micro_model_dir)).eval() if arch == "llama" else _qwen2_gqa(len(tok))
    g = torch.Generator().manual_seed(1)
    prompts = [torch.randint(5, len(tok), (n,), generator=g).tolist() for n in range(3, 11)]
    params = SamplingParams(n=8, temperature=1.0, max_tokens=16, seed=3)
    ours = HFEngine(model, tok).generate(prompts, params)
    monkeypatch.setattr(kv_cache, "preallocated_cache", lambda capacity: DynamicCache())
    ref = HFEngine(model, tok).generate(prompts, params)
    ours_flat, ref_flat = [c for grp in ours for c in grp], [c for grp in ref for c in grp]
    assert [c.completion_ids for c in ours_flat] == [c.completion_ids for c in ref_flat]
    for a, b in zip(ours_flat, ref_flat):
        torch.testing.assert_close(torch.tensor(a.logprobs), torch.tensor(b.logprobs), rtol=0, atol=1e-6)
    lengths = {len(c.completion_ids) for c in ours_flat}
    assert len(lengths) > 1  # rows finished at different steps: the row-dropping path ran
