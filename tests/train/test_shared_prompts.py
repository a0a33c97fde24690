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
    k % (T // group)), completion lengths 1..T; `odd`: one more row (1 completion token) with a prompt of its own. Advantages random."""
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
def test_shared_equals_unshared_equals_padded(micro_model_dir, tmp_path_factory, arch, slack, monkeypatch):
    """Groups of 4 (interleaved) + one odd row, completions of 1..8 tokens: per-token logprobs, entropy, the loss and
    every parameter's gradient agree (fp32, 1e-5) padded / packed / packed with shared prompts, and the shared
    sequence is shorter by the 3 repeated copies of each of the 2 groups' prompts (2 and 3 tokens): 3 * 5 = 15."""
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


def test_shared_attention_by_hand():
    """The packed-attention docstring example: prompt [0, 2), completions [2, 3) (owner) and [3, 5). Outputs and the
    gradients of q, k, v equal sdpa over the mask in which positions 3, 4 see the prompt 0, 1 and each other causally
    but not position 2 (the other completion)."""
    from rl.core.packing import RowLayout
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
