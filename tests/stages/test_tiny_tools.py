"""The tiny tool world (issue 27): its task (data/tool_tasks.py), its corpus (rl/tiny/tools_corpus.py) and its
tokenizer agree with what a multi-turn episode does, token for token, so the base model has read the ids it will
generate from and be answered with."""
from __future__ import annotations

import shutil

import pytest

from data.tool_tasks import parse_tool_question, tool_dataset, tool_program, tool_question, tool_value
from rl.tiny.build import NAMED_SPECS, pretraining_corpus
from rl.tiny.tools_corpus import guess_for, tool_segments, write_tool_solution


@pytest.mark.parametrize("question, family, value, program", [
    ("What is 347 * 829?", "product", 287663, "print(347 * 829)"),  # 347*800 = 277600, 347*29 = 10063
    ("What is 100 * 999?", "product", 99900, "print(100 * 999)"),
    ("What is the sum of 12, 45, 78, 23, 91?", "sum", 249, "print(sum([12, 45, 78, 23, 91]))"),  # 57+78=135, +23+91
])
def test_questions_values_and_programs(question, family, value, program):
    fam, nums = parse_tool_question(question)
    assert fam == family and tool_question(fam, nums) == question
    assert tool_value(question) == value and tool_program(question) == program
    assert eval(program.removeprefix("print")) == value  # the program computes the value (trusted text, ours)


@pytest.mark.parametrize("bad", ["What is 3 + 4 * 5?", "What is 1 * 2 * 3?", "What is the sum of a, b?", ""])
def test_other_text_is_not_a_tool_question(bad):
    with pytest.raises(ValueError, match="not a tool-world question"):
        parse_tool_question(bad)


def test_splits_are_disjoint_deterministic_and_mixed():
    train, test = tool_dataset(300, 100, seed=0)
    assert (len(train), len(test)) == (300, 100) and (train, test) == tool_dataset(300, 100, seed=0)
    assert not {r["prompt"] for r in train} & {r["prompt"] for r in test}
    assert all(r["answer"] == str(tool_value(r["prompt"])) for r in train + test)
    assert 100 < sum(r["family"] == "product" for r in train) < 200  # even odds


def test_the_corpus_mixes_guessers_and_callers():
    docs = pretraining_corpus(NAMED_SPECS["tiny-tools"])
    callers = [c for _, c in docs if "```output" in c]
    assert len(docs) == 20_000 and 0.18 < len(callers) / len(docs) < 0.22  # p_tool 0.2
    strict = [c for _, c in docs if c.startswith(" <think>")]
    assert 0.47 < len(strict) / len(docs) < 0.53  # p_strict 0.5
    import random
    rng = random.Random(0)
    for q in [r["prompt"] for r in tool_dataset(200, 0, seed=3)[0]]:
        assert guess_for(q, rng) != tool_value(q)  # a guesser is never right


def test_tool_segments_are_the_episode_pieces():
    text = write_tool_solution("What is 2 * 3?", tool=True, strict=True, guess=0)
    assert tool_segments(text) == [" <think> ```python\nprint(2 * 3)\n```\n```output", "\n6\n```\n",
                                   "</think> <answer> 6 </answer>"]
    guess = write_tool_solution("What is 2 * 3?", tool=False, strict=True, guess=7)
    assert tool_segments(guess) == [guess] == [" <think> 2 * 3 is about 7 </think> <answer> 7 </answer>"]


def test_the_corpus_tokenizes_as_the_episodes_do():
    """Each caller's document, tokenized whole (as pretraining does), equals its turn, the inserted output and the
    next turn tokenized apart (as the episode loop builds it): "```output" is one token, the output starts and the
    next turn starts at a token boundary."""
    from transformers import AutoTokenizer

    from rl.tiny.sources import resolve_model_path
    tok = AutoTokenizer.from_pretrained(resolve_model_path("tiny-tools"))
    assert len(tok("```output", add_special_tokens=False)["input_ids"]) == 1
    docs = [c for _, c in pretraining_corpus(NAMED_SPECS["tiny-tools"])[:2000] if "```output" in c]
    assert len(docs) > 300
    for c in docs:
        whole = tok(c, add_special_tokens=False)["input_ids"]
        parts = [tok(s, add_special_tokens=False)["input_ids"] for s in tool_segments(c)]
        assert whole == parts[0] + parts[1] + parts[2], c


@pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap (bwrap) is not installed: `make setup-sandbox`")
def test_the_corpus_output_is_what_the_sandboxed_tool_answers():
    """The output a caller's document shows is what the python tool really prints for its program, shaped as the
    ToRL renderer inserts it."""
    from rl.rollout.episodes.tools.base import PythonTool, SandboxPool
    from rl.rollout.episodes.tools.parse import parse_torl, torl_observation
    pool = SandboxPool(1)
    try:
        tool = PythonTool(pool, stateful=False)
        for q in ("What is 347 * 829?", "What is the sum of 12, 45, 78, 23, 91?"):
            turn, output, _ = tool_segments(write_tool_solution(q, tool=True, strict=True, guess=0))
            (call,) = parse_torl(turn).calls
            result = tool.call(call.arguments, {})
            assert not result.error and torl_observation(result.text) == output, (q, result)
    finally:
        pool.close()
