"""Shared prompts in packed micro-batches (train.share_prompts, issue 31): rows of a group keep one copy of their
prompt; the same logprobs, loss, gradients and training as unshared packing and as padded rows."""
import sys
from pathlib import Path

import pytest
import torch

from rl.core.collate import collate
from rl.core.episode import Completion, Episode
from rl.core.packing import pack_rows
from rl.train import packed_attention
from rl.train.models import load_causal_lm, load_tokenizer
from rl.train.packed_attention import sdpa_packed_attention, use_row_attention
from rl.train.policy import CausalLMLogprobs

sys.path.insert(0, str(Path(__file__).parent))
from test_learner import make_learner  # noqa: E402
from test_packing import forward_backward, weights_of  # noqa: E402


def group_batch(pad_token_id, T=8, group=4, vocab=300, seed=0, odd=True):
    """T rows in groups of `group` sharing a prompt (group g: prompt of 2 + g tokens), interleaved (row k in group
    k % (T // group)), completion lengths 1..T; `odd`: one more row (1 completion token) with a prompt of its own.
    Advantages random."""
    g = torch.Generator().manual_seed(seed)
    groups = T // group
    prompts = [torch.randint(5, vocab, (2 + j,), generator=g).tolist() for j in range(groups + 1)]
    episodes = []
    for k in range(T + int(odd)):
        j = k % groups if k < T else groups  # the odd row: the last prompt, alone
        c = torch.randint(5, vocab, (k % T + 1,), generator=g).tolist()
        episodes.append(Episode(j, {}, Completion(prompts[j], c, "", "stop", [0.0] * len(c)),
                                advantage=float(torch.randn(1, generator=g))))
    return collate(episodes, pad_token_id)


def qwen2_gqa_dir(tmp_path_factory):
    """A 2-layer Qwen2 (q/k/v biases) with 4 query heads over 2 KV heads (grouped-query attention)."""
    from transformers import Qwen2Config, Qwen2ForCausalLM
    path = tmp_path_factory.mktemp("qwen2gqa")
    torch.manual_seed(0)
    Qwen2ForCausalLM(Qwen2Config(vocab_size=300, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                                 num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                                 tie_word_embeddings=True)).save_pretrained(path)
    return path


@pytest.mark.parametrize("arch", ["llama", "qwen2-gqa"])
@pytest.mark.parametrize("slack", [None, 0], ids=["buckets", "row-by-row"])
@pytest.mark.parametrize("completion_queries", [True, False], ids=["completion-queries", "virtual-rows"])
def test_shared_equals_unshared_equals_padded(micro_model_dir, tmp_path_factory, arch, slack, completion_queries,
                                              monkeypatch):
    """Groups of 4 (interleaved) + one odd row, completions of 1..8 tokens: per-token logprobs, entropy, the loss and
    every parameter's gradient agree (fp32, 1e-5) padded / packed / packed with shared prompts, and the shared
    sequence is shorter by the 3 repeated copies of each of the 2 groups' prompts (2 and 3 tokens): 3 * 5 = 15.
    Both forms of the non-owner rows' attention (completion queries with a bottom-right mask, or whole virtual rows);
    with buckets, rows of both groups (prompts of 2 and 3) share a call."""
    monkeypatch.setattr(packed_attention, "COMPLETION_QUERIES", completion_queries)
    if slack is not None:
        monkeypatch.setattr(packed_attention, "ROW_BATCH_PAIRS", slack)
    path = micro_model_dir if arch == "llama" else qwen2_gqa_dir(tmp_path_factory)
    batch = group_batch(pad_token_id=0)
    lm = load_causal_lm(str(path))
    assert use_row_attention(lm)
    policy = CausalLMLogprobs(lm)
    ids_unshared = pack_rows(batch.input_ids, batch.attention_mask, batch.completion_mask)[0]
    ids_shared = pack_rows(batch.input_ids, batch.attention_mask, batch.completion_mask, share_prompts=True)[0]
    assert ids_unshared.shape[1] - ids_shared.shape[1] == 15
    padded = forward_backward(policy, batch, packed=False)
    packed = forward_backward(policy, batch, packed=True)
    policy.zero_grad(set_to_none=True)
    lp, ent = policy(batch.input_ids, batch.attention_mask, batch.completion_mask, 1.0, with_entropy=True,
                     packed=True, share_prompts=True)
    loss = (lp * batch.advantages[:, None] * batch.completion_mask).sum()
    loss.backward()
    shared = (lp.detach(), ent, loss.detach(),
              torch.cat([p.grad.flatten() for p in policy.parameters() if p.grad is not None]))
    assert padded[3].abs().max() > 1e-3  # a real gradient
    assert (padded[0] != 0).sum() == int(batch.completion_mask.sum()) == 36 + 1  # 1 + ... + 8 and the odd row's 1
    for name, want, a, b in zip(("logprobs", "entropy", "loss", "grads"), padded, packed, shared):
        scale = max(float(want.abs().max()), 1.0) if name == "grads" else 1.0
        assert (a - want).abs().max().item() <= 1e-5 * scale, name
        assert (b - want).abs().max().item() <= 1e-5 * scale, name


@pytest.mark.parametrize("completion_queries", [True, False], ids=["completion-queries", "virtual-rows"])
def test_shared_attention_by_hand(completion_queries, monkeypatch):
    """The packed-attention docstring example: prompt [0, 2), completions [2, 3) (owner) and [3, 5). Outputs and the
    gradients of q, k, v equal sdpa over the mask in which positions 3, 4 see the prompt 0, 1 and each other causally
    but not position 2 (the other completion)."""
    from rl.core.packing import RowLayout
    monkeypatch.setattr(packed_attention, "COMPLETION_QUERIES", completion_queries)
    layout = RowLayout(*(torch.tensor(v) for v in ([0, 0], [2, 2], [2, 3], [1, 2])), owner=torch.tensor([True, False]))
    g = torch.Generator().manual_seed(0)
    q = torch.randn(1, 4, 5, 8, generator=g, requires_grad=True)  # [1, heads, L, d]
    k, v = (torch.randn(1, 2, 5, 8, generator=g, requires_grad=True) for _ in range(2))  # [1, kv_heads, L, d]
    module = torch.nn.Module()
    module.num_key_value_groups = 2
    weights = torch.randn(1, 5, 4, 8, generator=g)
    got, _ = sdpa_packed_attention(module, q, k, v, None, shared_rows=layout)  # [1, 5, 4, 8]
    (got * weights).sum().backward()
    got_grads = [t.grad.clone() for t in (q, k, v)]
    for t in (q, k, v):
        t.grad = None
    mask = torch.tensor([[1, 0, 0, 0, 0],   # prompt token 0
                         [1, 1, 0, 0, 0],   # prompt token 1
                         [1, 1, 1, 0, 0],   # completion of row 0
                         [1, 1, 0, 1, 0],   # completion of row 1, token 0: the prompt and itself
                         [1, 1, 0, 1, 1]], dtype=torch.bool)
    want = torch.nn.functional.scaled_dot_product_attention(q, k.repeat_interleave(2, 1), v.repeat_interleave(2, 1),
                                                            attn_mask=mask).transpose(1, 2)
    (want * weights).sum().backward()
    torch.testing.assert_close(got, want, atol=1e-6, rtol=0)
    for a, t in zip(got_grads, (q, k, v)):
        torch.testing.assert_close(a, t.grad, atol=1e-6, rtol=0)


def grouped_make_batch(tok, n=8, seed=0):
    """n rows in groups of 4 sharing a prompt (3-4 tokens), completions of 2-7 tokens: what a GRPO step trains on."""
    g = torch.Generator().manual_seed(seed)
    vocab = len(tok)
    prompts = [torch.randint(5, vocab, (3 + j % 2,), generator=g).tolist() for j in range(n // 4)]
    episodes = []
    for i in range(n):
        c = torch.randint(5, vocab, (2 + (i * 5) % 6,), generator=g).tolist()
        episodes.append(Episode(i // 4, {}, Completion(prompts[i // 4], c, "", "stop", [0.0] * len(c)),
                                advantage=float(torch.randn(1, generator=g))))
    return collate(episodes, tok.pad_token_id)


# LoRA: the adapters train at 10x the rate (1e-2) and AdamW moves a component with a near-zero gradient by about the
# rate whatever its float noise, so the merged weights after 3 steps differ by up to 6.9e-6 shared and 1.7e-6 unshared
# (measured) while loss and grad norm agree to 1e-6 / 1e-5: weights to 1e-5 there; the adapters' gradients themselves
# are compared to 1e-5 in test_lora_shared_equals_padded_gradients.
SHARED_CASES = [({"algorithm.loss": "dapo"}, 12, 1e-6), ({"algorithm.loss": "grpo"}, 24, 1e-6),
                ({"algorithm.loss": "bnpo", "algorithm.num_iterations": 2, "algorithm.beta": 0.1}, 16, 1e-6),
                ({"algorithm.loss": "dapo", "model.lora.enabled": "true", "model.lora.r": 2, "model.lora.alpha": 4}, 16,
                 1e-5),
                ({"algorithm.loss": "dapo", "model.gradient_checkpointing": "true"}, 16, 1e-6)]


@pytest.mark.parametrize("extra, budget, weights_atol", SHARED_CASES,
                         ids=["dapo-12", "grpo-24", "bnpo-mu2-kl-16", "lora-dapo-16", "checkpointing-dapo-16"])
def test_token_budget_with_shared_prompts_equals_fixed_split(micro_model_dir, extra, budget, weights_atol):
    """3 Learner steps on batches of 2 groups of 4 (prompts 3-4 tokens, rows 5-11 tokens): fixed micro-batches of 2
    rows == packed bins with shared prompts == packed bins without (loss, grad norm, entropy, weights). The shared
    run counts its tokens with each prompt once and saves a measurable fraction."""
    tok = load_tokenizer(str(micro_model_dir))
    common = {"train.batch_size": 8, "rollout.group_size": 4, "train.micro_batch_size": 2,
              "train.learning_rate": 1e-3, **extra}
    runs = []
    for max_tokens, share in ((0, True), (budget, True), (budget, False)):
        learner, _ = make_learner(micro_model_dir, **common, **{"train.max_tokens_per_micro_batch": max_tokens,
                                                                "train.share_prompts": str(share).lower()})
        assert learner.micro_batcher.share_prompts == (max_tokens > 0 and share)
        metrics = [learner.step(grouped_make_batch(tok, n=8, seed=s)) for s in (1, 2, 3)]
        runs.append((metrics, weights_of(learner)))
    (fixed, w_fixed), (shared, w_shared), (unshared, w_unshared) = runs
    assert shared[0]["train/micro_batch_tokens_max"] <= budget
    assert all(m["train/prompt_tokens_shared_frac"] > 0.1 for m in shared)
    assert all(m["train/prompt_tokens_shared_frac"] == 0 for m in unshared)
    for a, b, c in zip(fixed, shared, unshared):
        for got in (b, c):
            assert got["loss"] == pytest.approx(a["loss"], abs=1e-6)
            assert got["grad_norm"] == pytest.approx(a["grad_norm"], rel=1e-5)
            assert got["entropy"] == pytest.approx(a["entropy"], rel=1e-5)
    moved = max((w_fixed[n] - w).abs().max().item()
                for n, w in load_causal_lm(str(micro_model_dir)).state_dict().items() if n in w_fixed)
    assert moved > 1e-4  # the weights did change
    for name in w_fixed:
        torch.testing.assert_close(w_shared[name], w_fixed[name], rtol=1e-5, atol=weights_atol)
        torch.testing.assert_close(w_unshared[name], w_fixed[name], rtol=1e-5, atol=weights_atol)


def test_lora_shared_equals_padded_gradients(micro_model_dir):
    """LoRA adapters (random A and B, so both get gradients) on every projection: logprobs, loss and the adapters'
    gradients agree padded / shared (fp32, 1e-5 relative to the largest gradient)."""
    from peft import LoraConfig, get_peft_model
    torch.manual_seed(0)
    lm = load_causal_lm(str(micro_model_dir))
    get_peft_model(lm, LoraConfig(r=2, lora_alpha=4, init_lora_weights=False, target_modules=[
        "q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]))  # in place, as apply_lora
    assert use_row_attention(lm)
    policy = CausalLMLogprobs(lm)
    batch = group_batch(pad_token_id=0)
    padded = forward_backward(policy, batch, packed=False)
    policy.zero_grad(set_to_none=True)
    lp, _ = policy(batch.input_ids, batch.attention_mask, batch.completion_mask, packed=True, share_prompts=True)
    loss = (lp * batch.advantages[:, None] * batch.completion_mask).sum()
    loss.backward()
    grads = torch.cat([p.grad.flatten() for p in policy.parameters() if p.grad is not None])
    assert sum(p.requires_grad for p in policy.parameters()) == 2 * 7 * 2  # A and B, 7 projections, 2 layers
    assert grads.numel() == padded[3].numel() and padded[3].abs().max() > 1e-3
    assert (lp.detach() - padded[0]).abs().max() <= 1e-5
    assert (loss.detach() - padded[2]).abs() <= 1e-5
    assert (grads - padded[3]).abs().max() <= 1e-5 * float(padded[3].abs().max())


def test_other_attention_packs_without_sharing_with_a_notice(micro_model_dir, capsys):
    """eager attention (no sdpa_packed): packed rows, prompts not shared, one line saying so; the step runs."""
    from accelerate import Accelerator
    from rl.config.grpo import GRPOConfig
    from rl.config.recipe import load_config
    from rl.train.learner import Learner
    cfg = load_config(GRPOConfig, "recipes/tiny/r1_zero.yaml",
                      ["rollout.max_completion_length=8", "train.batch_size=8", "rollout.group_size=4",
                       "train.micro_batch_size=4", "train.max_tokens_per_micro_batch=16"])
    learner = Learner(cfg, Accelerator(cpu=True, gradient_accumulation_steps=2),
                      load_causal_lm(str(micro_model_dir), attn_implementation="eager"), None)
    assert learner.micro_batcher.packed and not learner.micro_batcher.share_prompts
    assert "train.share_prompts: packed rows without sharing prompts (attention eager is not sdpa_packed)" in \
        capsys.readouterr().out
    metrics = learner.step(grouped_make_batch(load_tokenizer(str(micro_model_dir)), n=8, seed=1))
    assert metrics["train/prompt_tokens_shared_frac"] == 0
