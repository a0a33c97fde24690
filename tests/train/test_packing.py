"""Packed micro-batches (train.max_tokens_per_micro_batch): the same computation as padded rows, on a real (micro)
transformers model, and the same training as fixed-row micro-batches."""
import sys
from pathlib import Path

import pytest
import torch

from rl.core.collate import collate
from rl.core.episode import Completion, Episode
from rl.train import policy as policy_module
from rl.train.models import load_causal_lm, load_tokenizer
from rl.train import packed_attention
from rl.train.packed_attention import row_boundaries, row_buckets, sdpa_packed_attention, use_row_attention
from rl.train.policy import CausalLMLogprobs, packing_support

sys.path.insert(0, str(Path(__file__).parent))
from test_learner import make_batch, make_learner  # noqa: E402


def lengths_batch(tokenizer, T=16, seed=0):
    """T rows whose real lengths are 1, 2, ..., T (prompt about a third, the rest completion; the length-1 row is a
    prompt without completion), advantages random."""
    g = torch.Generator().manual_seed(seed)
    episodes = []
    for total in range(1, T + 1):
        p = max(1, total // 3)
        ids = torch.randint(5, len(tokenizer), (total,), generator=g).tolist()
        c = ids[p:]
        episodes.append(Episode(0, {}, Completion(ids[:p], c, "", "stop", [0.0] * len(c)),
                                advantage=float(torch.randn(1, generator=g))))
    return collate(episodes, tokenizer.pad_token_id)


def forward_backward(policy, batch, packed):
    """logprobs, entropy [N, C], a loss sum_t A * logp * m, and every parameter's gradient after its backward."""
    policy.zero_grad(set_to_none=True)
    logprobs, entropy = policy(batch.input_ids, batch.attention_mask, batch.completion_mask, 1.0,
                               with_entropy=True, packed=packed)
    loss = (logprobs * batch.advantages[:, None] * batch.completion_mask).sum()
    loss.backward()
    grads = torch.cat([p.grad.flatten() for p in policy.parameters() if p.grad is not None])
    return logprobs.detach(), entropy, loss.detach(), grads


# fp32: only summation order differs (row-sized vs packed-sized matmuls), so 1e-5 (measured: logprobs 5e-7, gradients
# 5e-7 of max 6.5). bf16 autocast: matmuls round to 8 mantissa bits and the two layouts accumulate the gradient in a
# different order; measured: logprobs identical, gradients max |diff| 0.012 of max 6.5 (0.2%), so 1e-2 (gradients:
# relative to their largest entry).
# sdpa_packed: row by row (what the learner switches sdpa models to); sdpa / eager: transformers' block-diagonal mask.
@pytest.mark.parametrize("attn, dtype, atol", [("sdpa_packed", torch.float32, 1e-5), ("sdpa", torch.float32, 1e-5),
                                               ("eager", torch.float32, 1e-5), ("sdpa_packed", torch.bfloat16, 1e-2)])
def test_packed_equals_padded_logprobs_loss_and_gradients(micro_model_dir, attn, dtype, atol):
    tok = load_tokenizer(str(micro_model_dir))
    batch = lengths_batch(tok, T=16)
    assert batch.attention_mask.sum(-1).tolist() == list(range(1, 17))
    lm = load_causal_lm(str(micro_model_dir), attn_implementation=attn.removesuffix("_packed"))
    if attn == "sdpa_packed":
        assert use_row_attention(lm)  # sdpa -> sdpa_packed
    assert lm.config._attn_implementation == attn
    policy = CausalLMLogprobs(lm)
    assert packing_support(policy.lm) is None
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype == torch.bfloat16):
        padded = forward_backward(policy, batch, packed=False)
        packed = forward_backward(policy, batch, packed=True)
    names = ("logprobs", "entropy", "loss", "grads")
    assert padded[3].abs().max() > 1e-3  # a real gradient
    assert (padded[0] != 0).sum() == int(batch.completion_mask.sum())  # every counted token has a logprob
    for name, want, got in zip(names, padded, packed):
        scale = 1.0 if name != "grads" else float(want.abs().max())  # gradients: relative to their size
        assert (got - want).abs().max().item() <= atol * max(scale, 1.0), name


@pytest.mark.parametrize("row_attention, slack", [(True, None), (True, 0), (False, None)],
                         ids=["sdpa_packed", "sdpa_packed-row-by-row", "sdpa"])
def test_packed_rows_do_not_see_each_other(micro_model_dir, row_attention, slack, monkeypatch):
    """A row's logprobs packed beside others equal its logprobs alone (no attention across the boundary)."""
    if slack is not None:
        monkeypatch.setattr(packed_attention, "ROW_BATCH_PAIRS", slack)
    tok = load_tokenizer(str(micro_model_dir))
    batch = lengths_batch(tok, T=8)
    lm = load_causal_lm(str(micro_model_dir))
    if row_attention:
        use_row_attention(lm)
    policy = CausalLMLogprobs(lm)
    calls = []
    sdpa = torch.nn.functional.scaled_dot_product_attention
    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention",
                        lambda q, *a, **kw: calls.append(tuple(q.shape[::2])) or sdpa(q, *a, **kw))
    with torch.no_grad():
        together, _ = policy(batch.input_ids, batch.attention_mask, batch.completion_mask, packed=True)
    # 2 layers, (rows, tokens) per call: the 8 rows of 1..8 tokens padded to 8 in one call (8^2 - 1^2 <= the slack);
    # with no slack one call per row, longest first; plain sdpa: one call over the 36 packed tokens
    expected = {None: [(8, 8)] * 2, 0: [(1, n) for n in range(8, 0, -1)] * 2}[slack] if row_attention else [(1, 36)] * 2
    assert calls == expected
    monkeypatch.undo()
    with torch.no_grad():
        for i in range(len(batch)):
            alone, _ = policy(batch.input_ids[i:i + 1], batch.attention_mask[i:i + 1],
                              batch.completion_mask[i:i + 1], packed=True)
            torch.testing.assert_close(together[i:i + 1], alone, atol=1e-5, rtol=0)


def weights_of(learner):
    return {n: t.detach().clone() for n, t in learner.full_named_parameters()}


BUDGET_CASES = [({"algorithm.loss": "dapo"}, 12), ({"algorithm.loss": "grpo"}, 24),
                # mu = 2 and a KL term: the no-grad old and reference passes run packed too
                ({"algorithm.loss": "bnpo", "algorithm.num_iterations": 2, "algorithm.beta": 0.1}, 12),
                # LoRA: adapters on q/k/v/o, base frozen; the packed rows go through the same adapted layers
                ({"algorithm.loss": "dapo", "model.lora.enabled": "true", "model.lora.r": 2, "model.lora.alpha": 4}, 16),
                # activation checkpointing: the recomputed forward gets the same row boundaries
                ({"algorithm.loss": "dapo", "model.gradient_checkpointing": "true"}, 16)]


@pytest.mark.parametrize("extra, budget", BUDGET_CASES, ids=["dapo-12", "grpo-24", "bnpo-mu2-kl-12", "lora-dapo-16", "checkpointing-dapo-16"])
def test_token_budget_split_equals_fixed_split(micro_model_dir, extra, budget):
    """Loss, grad norm and weights after 3 steps: micro-batches of 2 rows vs packed bins of <= `budget` tokens
    (rows here are 5 to 11 tokens long: budget 12 makes 7 bins of 1-2 rows, 24 makes 3 bins of 2-3 rows)."""
    tok = load_tokenizer(str(micro_model_dir))
    common = {"train.batch_size": 8, "rollout.group_size": 4, "train.micro_batch_size": 2,
              "train.learning_rate": 1e-3, **extra}
    runs = []
    for max_tokens in (0, budget):
        learner, _ = make_learner(micro_model_dir, **common, **{"train.max_tokens_per_micro_batch": max_tokens})
        assert learner.micro_batcher.packed == (max_tokens > 0)
        metrics = [learner.step(make_batch(tok, n=8, seed=s)) for s in (1, 2, 3)]
        runs.append((metrics, weights_of(learner)))
    (fixed, w_fixed), (packed, w_packed) = runs
    assert packed[0]["train/micro_batches"] != 4  # the budget, not the row count, made the micro-batches
    assert packed[0]["train/micro_batch_tokens_max"] <= budget
    for a, b in zip(fixed, packed):
        assert b["loss"] == pytest.approx(a["loss"], abs=1e-6)
        assert b["grad_norm"] == pytest.approx(a["grad_norm"], rel=1e-5)
        assert b["entropy"] == pytest.approx(a["entropy"], rel=1e-5)
    moved = max((w_fixed[n] - load).abs().max().item()
                for n, load in load_causal_lm(str(micro_model_dir)).state_dict().items() if n in w_fixed)
    assert moved > 1e-4  # the weights did change
    for name in w_fixed:
        torch.testing.assert_close(w_packed[name], w_fixed[name], rtol=1e-5, atol=1e-6)


def test_unsupported_attention_falls_back_to_fixed_rows_with_a_notice(micro_model_dir, monkeypatch, capsys):
    monkeypatch.setattr(policy_module, "PACKING_ATTENTION", ("flash_attention_2",))
    learner, _ = make_learner(micro_model_dir, **{"train.batch_size": 8, "rollout.group_size": 4,
                                                  "train.micro_batch_size": 4, "train.max_tokens_per_micro_batch": 16})
    assert not learner.micro_batcher.packed
    out = capsys.readouterr().out
    assert "fixed micro-batches of 4 rows instead (attention implementation 'sdpa' is not one of" in out
    metrics = learner.step(make_batch(load_tokenizer(str(micro_model_dir)), n=8, seed=1))
    assert "train/micro_batches" not in metrics


def test_packing_support_refuses_layers_that_are_not_attention(micro_model_dir):
    lm = load_causal_lm(str(micro_model_dir))
    assert packing_support(lm) is None
    lm.config.layer_types = ["linear_attention", "full_attention"]
    assert packing_support(lm) == "LlamaForCausalLM has linear_attention layers, which carry state across packed rows"


def test_row_boundaries_and_row_attention_by_hand():
    """cu [0, 3, 5]: rows [0, 3) and [3, 5). Row by row equals sdpa over the block-diagonal causal mask; without
    boundaries the function is plain sdpa (generation and padded forwards unchanged)."""
    got = row_boundaries(torch.tensor([[0, 1, 1], [1, 1, 1]]))
    assert got["cu_seq_lens_q"].tolist() == [0, 2, 5] and got["max_length_q"] == 3
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(1, 2, 5, 4, generator=g) for _ in range(3))  # [1, heads, L, d]
    module = torch.nn.Module()
    rows, _ = sdpa_packed_attention(module, q, k, v, None, cu_seq_lens_q=torch.tensor([0, 3, 5]))  # [1, 5, 2, 4]
    seq = torch.tensor([0, 0, 0, 1, 1])
    pos = torch.arange(5)
    mask = (seq[:, None] == seq[None, :]) & (pos[:, None] >= pos[None, :])  # [5, 5] block-diagonal causal
    want = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask).transpose(1, 2)
    torch.testing.assert_close(rows, want, atol=1e-6, rtol=0)
    plain, _ = sdpa_packed_attention(module, q, k, v, mask[None, None])
    torch.testing.assert_close(plain, want, atol=1e-6, rtol=0)


@pytest.mark.parametrize("lengths, slack, expected", [
    ([3, 66, 27, 1000, 0], 66 ** 2, [[3], [1, 2, 0]]),  # 1000^2 - 66^2 > slack; 66^2 - 27^2, 66^2 - 3^2 <= slack
    ([3, 66, 27, 1000, 0], 0, [[3], [1], [2], [0]]),  # no slack: one call per distinct length
    ([5, 5, 4], 0, [[0, 1], [2]]),  # equal lengths share a call for free
    ([5, 5, 4], 9, [[0, 1, 2]]),  # 5^2 - 4^2 = 9 <= 9
    ([1024, 1016, 1015], 128 * 128, [[0, 1], [2]]),  # 1024^2 - 1016^2 = 16,320 <= 16,384; - 1015^2 = 18,207 is not
    ([0, 0], 100, [])])
def test_row_buckets_by_hand(lengths, slack, expected):
    assert row_buckets(lengths, slack) == expected


@pytest.mark.parametrize("slack", [0, 30, packed_attention.ROW_BATCH_PAIRS])
def test_bucketed_rows_equal_the_block_diagonal_attention(slack, monkeypatch):
    """Rows of 7, 3, 12, 1, 12, 5 tokens (40 packed), 4 query heads over 2 KV heads: outputs and the gradients of q, k,
    v equal sdpa over the block-diagonal causal mask, whether each length runs alone (slack 0: 5 calls), in a few
    buckets (slack 30: [12, 12], [7, 5], [3, 1]) or all padded to 12 in one call (the default slack)."""
    monkeypatch.setattr(packed_attention, "ROW_BATCH_PAIRS", slack)
    lengths = [7, 3, 12, 1, 12, 5]
    cu = torch.tensor([0, 7, 10, 22, 23, 35, 40])
    g = torch.Generator().manual_seed(0)
    q = torch.randn(1, 4, 40, 8, generator=g, requires_grad=True)  # [1, heads, L, d]
    k, v = (torch.randn(1, 2, 40, 8, generator=g, requires_grad=True) for _ in range(2))  # [1, kv_heads, L, d]
    module = torch.nn.Module()
    module.num_key_value_groups = 2
    weights = torch.randn(1, 40, 4, 8, generator=g)  # a loss that weighs every output
    got, _ = sdpa_packed_attention(module, q, k, v, None, cu_seq_lens_q=cu)  # [1, 40, 4, 8]
    (got * weights).sum().backward()
    got_grads = [t.grad.clone() for t in (q, k, v)]
    for t in (q, k, v):
        t.grad = None
    seq = torch.repeat_interleave(torch.arange(6), torch.tensor(lengths))  # [40] row of each position
    pos = torch.arange(40)
    mask = (seq[:, None] == seq[None, :]) & (pos[:, None] >= pos[None, :])  # [40, 40] block-diagonal causal
    want = torch.nn.functional.scaled_dot_product_attention(q, k.repeat_interleave(2, 1), v.repeat_interleave(2, 1),
                                                            attn_mask=mask).transpose(1, 2)
    (want * weights).sum().backward()
    torch.testing.assert_close(got, want, atol=1e-6, rtol=0)
    for a, t in zip(got_grads, (q, k, v)):
        torch.testing.assert_close(a, t.grad, atol=1e-6, rtol=0)


def test_generation_is_unchanged_by_row_attention(micro_model_dir):
    """The transformers engine decodes with the learner's model: after sdpa -> sdpa_packed (no row boundaries in
    generation) greedy decoding of left-padded prompts gives the same tokens and scores."""
    tok = load_tokenizer(str(micro_model_dir))
    batch = lengths_batch(tok, T=6)
    P = batch.input_ids.shape[1] - batch.completion_length
    ids, mask = batch.input_ids[:, :P], batch.attention_mask[:, :P]  # the prompts (1-2 tokens), left-padded
    assert P == 2 and mask[:, 0].tolist() == [0, 0, 0, 0, 0, 1]
    lm = load_causal_lm(str(micro_model_dir))
    kwargs = dict(attention_mask=mask, max_new_tokens=5, do_sample=False, output_scores=True,
                  return_dict_in_generate=True, pad_token_id=tok.pad_token_id)
    before = lm.generate(ids, **kwargs)
    assert use_row_attention(lm)
    after = lm.generate(ids, **kwargs)
    assert torch.equal(after.sequences, before.sequences)
    torch.testing.assert_close(torch.stack(after.scores), torch.stack(before.scores), atol=1e-5, rtol=0)
