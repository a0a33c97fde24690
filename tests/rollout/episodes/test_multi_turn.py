"""Multi-turn episodes: token-in token-out on Qwen2.5's chat template (TRL's copy, loaded offline, on the micro
model's tokenizer with Qwen's special tokens added), hand-derived masks and budgets (a one-character-per-token
tokenizer), the real transformers engine with the learner's logprobs, and stop strings in that engine."""
from pathlib import Path

import pytest
import torch

from rl.core.collate import collate
from rl.core.episode import Completion, Episode, SamplingParams
from rl.rollout.episodes.environments import StepResult, ToolEnvironment, ToolLimits
from rl.rollout.episodes.multi_turn import (ChatRenderer, EpisodeLimits, ToRLRenderer, episode_metrics,
                                            run_episodes, start_episodes)
from rl.rollout.episodes.tools import FunctionTool, PythonTool, SandboxPool
from tests.rollout.episodes.tools_fixtures import multiply


class ScriptedEngine:
    """An engine that writes the scripted turns (canonical ids of each turn's text) and records every call.
    `script(prompt_text) -> the turn's text`."""

    def __init__(self, tok, script):
        self.tok, self.script, self.calls = tok, script, []

    def generate(self, prompts, params):
        out = []
        for p in prompts:
            ids = self.tok(self.script(self.tok.decode(p, skip_special_tokens=False)),
                           add_special_tokens=False)["input_ids"]
            reason = "length" if len(ids) > params.max_tokens else "stop"
            ids = ids[:params.max_tokens]
            c = Completion(list(p), ids, self.tok.decode(ids, skip_special_tokens=True), reason, [-0.25] * len(ids))
            self.calls.append((list(p), ids))
            out.append([c])
        return out


# -- hand-derived masks: one character per token ------------------------------------------------------------------
class CharTokenizer:
    """id = ord(character); EOS = id 3 (decoded as nothing when special tokens are skipped)."""
    eos_token_id = pad_token_id = 3

    def __call__(self, text, add_special_tokens=False):
        return {"input_ids": [ord(ch) for ch in text]}

    def decode(self, ids, skip_special_tokens=False):
        return "".join(chr(i) for i in ids if not (skip_special_tokens and i == 3))


TURN1 = "```python\n2*3\n```\n```output"  # 10 + 4 + 4 + 9 = 27 characters: ```python\n | 2*3\n | ```\n | ```output
ANSWER = "\n6\n```\n"  # torl_observation("6\n"): \n | 6 | \n | ``` | \n = 7 characters
TURN2 = "6\x03"  # the answer, then EOS: 2 tokens


def torl_script(text):
    if text.endswith("Q1:"):
        return TURN1
    if text.endswith(ANSWER):
        return TURN2
    return "7\x03"  # Q2: answered without the tool


@pytest.fixture(scope="module")
def pool():
    p = SandboxPool(size=2)
    yield p
    p.close()


def torl_run(pool, **limits):
    tok = CharTokenizer()
    env = lambda: ToolEnvironment([PythonTool(pool)], style="torl")  # noqa: E731
    starts = start_episodes([{"prompt": "Q1:"}, {"prompt": "Q2:"}], 1, env,
                            lambda row, e: (tok(row["prompt"])["input_ids"], []))
    return run_episodes(ScriptedEngine(tok, torl_script), ToRLRenderer(tok), starts, SamplingParams(),
                        EpisodeLimits(**limits))


def test_mask_and_logprobs_hand_derived(pool):
    one, two = torl_run(pool, max_turns=4, max_tokens=64)
    # episode 1: turn 1 (27 policy tokens), the tool's answer (7, inserted), turn 2 (2 policy tokens) = 36
    assert one.completion_ids == [ord(ch) for ch in TURN1 + ANSWER + TURN2]
    assert one.mask == [1] * 27 + [0] * 7 + [1] * 2
    assert one.logprobs == [-0.25] * 27 + [0.0] * 7 + [-0.25] * 2
    assert one.finish_reason == "stop" and one.text == TURN1 + ANSWER + "6"
    assert (one.info["turns"], one.info["tool_calls"], one.info["observation_tokens"]) == (2, 1, 7)
    assert two.mask == [1, 1] and two.info["turns"] == 1 and two.info["tool_calls"] == 0
    batch = collate([Episode(0, {}, one), Episode(0, {}, two)], pad_token_id=3)
    # C = 36; row 2 is its 2 tokens then padding
    assert batch.completion_mask.tolist() == [[1.0] * 27 + [0.0] * 7 + [1.0] * 2, [1.0] * 2 + [0.0] * 34]
    assert batch.sampling_logprobs[0, 27:34].abs().sum() == 0
    metrics = episode_metrics([one, two])
    # turns (2 + 1) / 2, calls (1 + 0) / 2, answer tokens (7 + 0) / 2, nothing cut
    assert (metrics["tools/turns"], metrics["tools/tool_calls"], metrics["tools/observation_tokens"],
            metrics["tools/cut_frac"]) == (1.5, 0.5, 3.5, 0.0)


@pytest.mark.parametrize("limits, ids, finish, cut_key", [
    # the answer does not fit: 27 + 7 = 34 >= 30 -> the episode ends after turn 1, not shown the answer
    (dict(max_tokens=30), 27, "length", "cut_by_budget"),
    # turn 1 itself is cut at the budget of 20 tokens
    (dict(max_tokens=20), 20, "length", "cut_by_budget"),
    # one turn only: the call is made, but no turn is left to read its answer
    (dict(max_turns=1), 27, "length", "cut_by_turns"),
])
def test_limits_cut_the_episode(pool, limits, ids, finish, cut_key):
    one, _ = torl_run(pool, **limits)
    assert len(one.completion_ids) == ids and one.mask == [1] * ids
    assert one.finish_reason == finish and one.info[cut_key] == 1.0


# -- token-in token-out on Qwen2.5's template ----------------------------------------------------------------------
@pytest.fixture(scope="module")
def qwen_tok(micro_model_dir):
    import trl

    from rl.train.models import load_tokenizer
    tok = load_tokenizer(str(micro_model_dir))
    tok.add_special_tokens({"eos_token": "<|im_end|>", "additional_special_tokens": ["<|im_start|>"]})
    tok.add_tokens(["<tool_call>", "</tool_call>", "<tool_response>", "</tool_response>"])  # Qwen: not special
    tok.chat_template = (Path(trl.__file__).parent / "chat_templates" / "qwen2_5.jinja").read_text()
    return tok


CALL = '<tool_call>\n{"name": "multiply", "arguments": {"a": 123, "b": 456}}\n</tool_call>'
BAD = '<tool_call>\n{"name": "multiply", "arguments": 7}\n</tool_call>'
TURNS = {  # question -> the policy's turns (each closed by <|im_end|>, the eos)
    "What is 123 times 456?": [CALL, "The product is 56088."],
    "And 123 times 456 again?": [CALL + "\n" + BAD, "Still 56088.", ],
}


def qwen_script(text):
    question = next(q for q in TURNS if q in text)
    return TURNS[question][text.count("<|im_start|>assistant") - 1] + "<|im_end|>"


def test_learner_ids_equal_engine_ids_on_qwen_template(qwen_tok):
    tok = qwen_tok
    tools = [FunctionTool(multiply)]
    renderer = ChatRenderer(tok, [t.schema for t in tools])
    rows = [{"prompt": [{"role": "user", "content": q}]} for q in TURNS]
    starts = start_episodes(rows, 2, lambda: ToolEnvironment(tools),
                            lambda row, env: (renderer.prompt_ids(row["prompt"]), row["prompt"]))
    engine = ScriptedEngine(tok, qwen_script)
    completions = run_episodes(engine, renderer, starts, SamplingParams(), EpisodeLimits(max_tokens=400))
    batch = collate([Episode(i // 2, rows[i // 2], c) for i, c in enumerate(completions)], tok.pad_token_id)
    rows_ids = [batch.input_ids[i][batch.attention_mask[i].bool()].tolist() for i in range(len(completions))]
    assert len(engine.calls) == 8  # 4 episodes x 2 turns
    for prompt, turn in engine.calls:  # every turn: what the engine saw and wrote is what the learner gets
        assert any(r[:len(prompt) + len(turn)] == prompt + turn for r in rows_ids)
    unique = sorted({tuple(p): t for p, t in engine.calls}.items(), key=lambda pt: len(pt[0]))  # 2 per question
    for i, (c, r) in enumerate(zip(completions, rows_ids)):
        P = len(c.prompt_ids)
        policy = [t for t, m in zip(r[P:], c.mask) if m]  # the mask is 1 exactly on the engine's tokens
        turns = [t for p, t in unique if list(p) == r[:len(p)]]
        assert len(turns) == 2
        assert policy == sum(turns, [])
        # and the whole episode is what the template renders for the conversation (no drift)
        q = rows[i // 2]["prompt"][0]["content"]
        calls = [{"role": "tool", "name": "multiply", "content": "56088"}]
        if "again" in q:
            calls.append({"role": "tool", "content": "error: tool call arguments must be a JSON object, not int"})
        conversation = [{"role": "user", "content": q}, {"role": "assistant", "content": TURNS[q][0]}, *calls,
                        {"role": "assistant", "content": TURNS[q][1]}]
        text = tok.apply_chat_template(conversation, tools=renderer.tools, tokenize=False).rstrip("\n")
        assert r == tok(text, add_special_tokens=False)["input_ids"]
        assert c.info["tool_calls"] == 1 and c.info["tool_errors"] == ("again" in q)


# -- the real transformers engine ----------------------------------------------------------------------------------
class GoOn:
    """Answers every turn with a user message, for two rounds."""
    tools = []

    def reset(self, row):
        self.rounds = 0

    def step(self, turn):
        self.rounds += 1
        return StepResult([{"role": "user", "content": "go on"}], done=self.rounds > 2)


def test_transformers_engine_episodes_train_on_policy_tokens_only(micro_model_dir):
    from rl.rollout.engines.hf import HFEngine
    from rl.train.learner import completion_logprobs
    from rl.train.models import load_causal_lm, load_tokenizer
    tok, model = load_tokenizer(str(micro_model_dir)), load_causal_lm(str(micro_model_dir)).eval()
    renderer = ChatRenderer(tok)
    rows = [{"prompt": [{"role": "user", "content": c}]} for c in ("1+2", "3+45")]
    starts = start_episodes(rows, 2, GoOn, lambda row, env: (renderer.prompt_ids(row["prompt"]), row["prompt"]))
    completions = run_episodes(HFEngine(model, tok), renderer, starts, SamplingParams(seed=3),
                               EpisodeLimits(max_turns=3, max_tokens=60, max_turn_tokens=6))
    answer = tok(renderer._render([{"role": "assistant", "content": "x"}, {"role": "user", "content": "go on"}],
                                  True).split("x", 1)[1], add_special_tokens=False)["input_ids"]
    for c in completions:  # turns of at most 6 tokens, each followed by the same inserted answer
        assert c.info["turns"] == 3 and c.mask.count(0) == 2 * len(answer) == c.info["observation_tokens"]
    batch = collate([Episode(0, {}, c) for c in completions], tok.pad_token_id)
    with torch.no_grad():
        learner = completion_logprobs(model, batch, 1.0)  # [N, C]
    m = batch.completion_mask
    torch.testing.assert_close(batch.sampling_logprobs * m, learner * m, rtol=0, atol=1e-5)
    assert (learner * (1 - m)).abs().sum() == 0  # no logprob on the inserted tokens
    assert m.sum() == sum(c.mask.count(1) for c in completions)


def test_hf_engine_stop_strings(micro_model_dir):
    from rl.rollout.engines.hf import HFEngine
    from rl.train.models import load_causal_lm, load_tokenizer
    tok, model = load_tokenizer(str(micro_model_dir)), load_causal_lm(str(micro_model_dir)).eval()
    engine = HFEngine(model, tok)
    prompt = tok("12+34=", add_special_tokens=False)["input_ids"]
    (free,), = engine.generate([prompt], SamplingParams(greedy=True, max_tokens=12))
    assert len(free.completion_ids) >= 6
    stop = tok.decode(free.completion_ids[3:5])  # a string the greedy text completes at its 5th token
    (cut,), = engine.generate([prompt], SamplingParams(greedy=True, max_tokens=12, stop=(stop,)))
    first = min(k for k in range(1, 13) if stop in tok.decode(free.completion_ids[:k]))
    assert cut.completion_ids == free.completion_ids[:first] and cut.finish_reason == "stop"
    assert cut.logprobs == free.logprobs[:first]


def test_environment_reads_special_tool_tokens(qwen_tok):
    """A template whose `<tool_call>` is a special token (skipped by decode(skip_special_tokens=True)) still has
    its calls read: the environment sees the turn with special tokens, minus the end of turn."""
    import copy

    from rl.rollout.episodes.multi_turn import turn_text
    tok = copy.deepcopy(qwen_tok)  # the fixture's tokenizer stays as it is
    ids = tok(CALL + "<|im_end|>", add_special_tokens=False)["input_ids"]
    tok.add_special_tokens({"additional_special_tokens": ["<|im_start|>", "<tool_call>", "</tool_call>"]})
    assert "<tool_call>" not in tok.decode(ids, skip_special_tokens=True)
    assert turn_text(tok, ids) == CALL


def test_torl_turns_on_a_chat_template_also_stop_at_its_end_of_turn(qwen_tok, micro_model_dir):
    """ToRL calls on Qwen's chat template with a base tokenizer (eos <|endoftext|>, turns end with <|im_end|>, as
    recipes/r1_zero_tools.yaml runs Qwen2.5-Math): a turn stops at "```output" or at <|im_end|>; on a plain template
    (r1_zero) at "```output" only, and a template whose end of turn is the eos adds nothing (the engines stop there)."""
    import copy

    from rl.train.models import load_tokenizer
    base = copy.deepcopy(qwen_tok)
    base.eos_token = "<|endoftext|>"  # a Qwen *base* tokenizer
    base.add_special_tokens({"additional_special_tokens": ["<|im_start|>", "<|im_end|>", "<|endoftext|>"]})
    assert ToRLRenderer(base, chat=True).stop == ("```output", "<|im_end|>")
    assert ToRLRenderer(base).stop == ("```output",)
    assert ToRLRenderer(qwen_tok, chat=True).stop == ("```output",)  # eos is <|im_end|>: the engines stop there
    assert ToRLRenderer(load_tokenizer(str(micro_model_dir)), chat=True).stop == ("```output",)  # "user: ...\n"
