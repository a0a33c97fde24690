"""rl/bench/tools.py (episodes/s with tool calls vs single-turn): the three modes run the same episodes, token for
token, up to where they differ (who writes the output), and the summary's numbers are what the runs gave."""
import shutil
from types import SimpleNamespace

import pytest

from rl.bench.tools import bench, call_opening, run_mode, summarize


@pytest.mark.parametrize("question, opening", [
    ("What is 347 * 829?", " <think> ```python\nprint("),
    ("What is the sum of 12, 45, 78, 23, 91?", " <think> ```python\nprint(sum(["),
])
def test_call_opening_stops_before_the_first_digit(question, opening):
    assert call_opening(question) == opening


def test_summarize_counts_by_hand():
    done = [SimpleNamespace(completion_ids=[1] * 10, mask=[1] * 6 + [0] * 4, info={"tool_calls": 1.0, "tool_seconds": 0.05}),
            SimpleNamespace(completion_ids=[1] * 8, mask=None, info={})]
    row = summarize("python", [2.0, 1.6], done)
    # 2 episodes / 1.6 s = 1.25; policy tokens (6 + 8) / 2 = 7; 1 call in 2 episodes; 0.05 s for the one call
    assert row == {"mode": "python", "episodes": 2, "episodes_per_s": 1.25, "runs_s": [2.0, 1.6], "policy_tokens": 7.0,
                   "tool_calls": 0.5, "tool_s_per_call": 0.05}


@pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap (bwrap) is not installed: `make setup-sandbox`")
def test_the_modes_write_the_same_episodes():
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from data.templates import render_prompt
    from data.tool_tasks import tool_dataset
    from rl.rollout.engines.hf import HFEngine
    from rl.rollout.episodes.tools.base import SandboxPool
    from rl.tiny.sources import resolve_model_path
    path = resolve_model_path("tiny-tools")
    tok = AutoTokenizer.from_pretrained(path)
    engine = HFEngine(AutoModelForCausalLM.from_pretrained(path).eval(), tok)
    _, rows = tool_dataset(0, 4, seed=0)
    prompts = [tok(render_prompt(r["prompt"], "r1_zero"), add_special_tokens=False)["input_ids"]
               + tok(call_opening(r["prompt"]), add_special_tokens=False)["input_ids"] for r in rows]
    pool = SandboxPool(2)
    try:
        single, echo, python = (run_mode(m, engine, tok, rows, prompts, 64, pool)
                                for m in ("single", "two_turns", "python"))
    finally:
        pool.close()
    stop = tok.convert_tokens_to_ids("```output")
    for row, s, e, p in zip(rows, single, echo, python):
        # the sandbox answers what the row's value is: the two multi-turn modes are the same episode
        assert (p.completion_ids, p.mask) == (e.completion_ids, e.mask)
        assert p.info["tool_calls"] == 1.0 and p.info["tool_errors"] == 0.0
        assert p.text.endswith(f"<answer> {row['answer']} </answer>")  # the output, copied (greedy)
        # up to the stop token, the single-turn completion is the same first turn
        cut = p.completion_ids.index(stop) + 1
        assert s.completion_ids[:cut] == p.completion_ids[:cut] and p.mask[:cut] == [1] * cut
    out = bench(engine_kind="hf", episodes=2, repeats=1, sandboxes=1)
    assert [r["mode"] for r in out["results"]] == ["single", "two_turns", "python"]
    assert [r["tool_calls"] for r in out["results"]] == [0.0, 1.0, 1.0]
