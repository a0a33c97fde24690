"""data.mix: SFT rows from a second source with its own columns (data/mixing.py, rl/sft.py load_sft_rows), and its
one-line errors before any model is loaded."""
import json

import pytest

from data.loading import DataError
from data.mixing import draw, general_reply_rows, mix_rows, renamed, sft_source_rows
from rl.config.recipe import ConfigError, load_config
from rl.config.sft import SFTConfig


@pytest.mark.parametrize("n_rows, count, expected_times", [
    (3, None, [1, 1, 1]),   # all, once each
    (3, 0, [0, 0, 0]),
    (3, 3, [1, 1, 1]),      # one whole pass
    (3, 6, [2, 2, 2]),      # two whole passes
    (3, 7, None),           # two passes + one row: each row 2 or 3 times, 7 in all
    (4, 2, None),           # part of a pass: 2 distinct rows
])
def test_draw_takes_whole_passes_then_part_of_one(n_rows, count, expected_times):
    rows = [{"i": i} for i in range(n_rows)]
    out = draw(rows, count, seed=3)
    times = [sum(r["i"] == i for r in out) for i in range(n_rows)]
    assert len(out) == (n_rows if count is None else count)
    if expected_times is not None:
        assert times == expected_times
    else:
        full = (count or 0) // n_rows
        assert all(t in (full, full + 1) for t in times) and sum(t == full + 1 for t in times) == count % n_rows
    assert draw(rows, count, seed=3) == out  # a pure function of its seed


def test_draw_rejects_negative_counts_and_empty_sources():
    with pytest.raises(ValueError, match="count=-1 must be at least 0"):
        draw([{"i": 0}], -1, seed=0)
    with pytest.raises(ValueError, match="2 rows asked of an empty source"):
        draw([], 2, seed=0)


def test_mix_rows_tags_sources_counts_them_and_keeps_the_main_rows_whole():
    main = [{"prompt": f"p{i}", "completion": f"c{i}"} for i in range(5)]
    extra = renamed([{"instruction": f"q{i}", "reply": f"r{i}", "task": "general"} for i in range(2)],
                    "instruction", "reply")
    rows, counts = mix_rows(("traces", main), [("chat", extra, 3)], seed=0)
    # 5 main rows + 3 drawn from 2 extra rows (one pass of 2, then 1 more)
    assert counts == {"traces": 5, "chat": 3} and len(rows) == 8
    assert sorted(r["prompt"] for r in rows if r["source"] == "traces") == [f"p{i}" for i in range(5)]
    chat = [r for r in rows if r["source"] == "chat"]
    assert {r["prompt"] for r in chat} == {"q0", "q1"} and all(r["task"] == "general" for r in chat)
    assert all(r["completion"] == "r" + r["prompt"][1:] for r in chat)  # each reply stays with its instruction
    assert rows != [{**r, "source": "traces"} for r in main] + chat  # shuffled
    assert mix_rows(("traces", main), [], seed=0) == (main, {"traces": 5})  # no mix: unchanged, in order


def test_general_replies_are_the_preferred_replies_without_reasoning():
    rows = general_reply_rows(216, 72, seed=0, split="train")
    assert len(rows) == 216 and len(general_reply_rows(216, 72, seed=0, split="test")) == 72
    replies = {r["instruction"]: r["reply"] for r in rows}
    # the preferred reply of each kind (data/general_tasks.py _GOOD), whatever the name and item
    for start, reply in (("Thank ", "Thank you so much!"), ("Greet ", "Hi, nice to meet you!"),
                         ("Say goodbye", "Bye, take care!"), ("Ask ", "Could I have it, please?")):
        assert {v for k, v in replies.items() if k.startswith(start)} == {f" <answer> {reply} </answer>"}
    assert all(r["reply"].startswith(" <answer> ") and "<think>" not in r["reply"] for r in rows)
    test_prompts = {r["instruction"] for r in general_reply_rows(216, 72, seed=0, split="test")}
    assert not test_prompts & {r["instruction"] for r in rows}  # the held-out prompts are never trained on


def _jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def test_sft_source_rows_renames_its_own_columns(tmp_path):
    f = _jsonl(tmp_path / "chat.jsonl", [{"question": "Hi?", "response": " Hello.", "id": 7}])
    assert sft_source_rows(f, "train", "question", "response", 10, 10, 0) == [
        {"id": 7, "prompt": "Hi?", "completion": " Hello."}]


@pytest.mark.parametrize("source, prompt_col, completion_col, where, message", [
    ("chat.jsonl", "question", "answer", "data.mix[0]",
     r"^dataset .+chat.jsonl \(train\) has no column 'answer'; columns: question, response \(set "
     r"data.mix\[0\].prompt_column / data.mix\[0\].completion_column\)$"),
    ("procedural:nope", "prompt", "completion", "data.mix[1]",
     r"^data.mix\[1\]: unknown procedural SFT source 'procedural:nope'; valid: procedural:cold_start, "
     r"procedural:general_replies$"),
    ("procedural:general_replies", "prompt", "completion", "data.mix[0]",
     r"^dataset procedural:general_replies \(train\) has no column 'prompt'; columns: instruction, reply, task"),
    ("missing.jsonl", "prompt", "completion", "data", r"^dataset file not found: .+missing.jsonl$"),
])
def test_bad_sources_are_one_line_data_errors(tmp_path, source, prompt_col, completion_col, where, message):
    _jsonl(tmp_path / "chat.jsonl", [{"question": "Hi?", "response": " Hello."}])
    src = source if source.startswith("procedural:") else str(tmp_path / source)
    with pytest.raises(DataError, match=message):
        sft_source_rows(src, "train", prompt_col, completion_col, 10, 10, 0, where=where)


@pytest.mark.parametrize("mix, message", [
    ([{"prompt_column": "q"}], r"data.mix\[0\].source is not set"),
    ([{"source": "procedural:general_replies", "count": -3}], r"data.mix\[0\].count=-3 must be at least 0"),
    ([{"source": "x.jsonl", "weight": 2}], r"unknown recipe key 'data.mix\[0\].weight'"),
    ([{"source": "x.jsonl", "count": "many"}], r"data.mix\[0\].count: expected int \| NoneType, got 'many'"),
])
def test_bad_mix_entries_are_one_line_config_errors(tmp_path, mix, message):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(json.dumps({"data": {"mix": mix}}))
    with pytest.raises(ConfigError, match=message):
        load_config(SFTConfig, str(recipe), [])


def test_the_sft_stage_reads_the_mix(tmp_path):
    """rl/sft.py's loader: 20 cold-start traces + 30 general replies drawn from 216 (own columns)."""
    from rl.sft import load_sft_rows
    recipe = tmp_path / "r.yaml"
    recipe.write_text(json.dumps({"data": {"train": "procedural:cold_start", "num_train": 20, "mix": [
        {"source": "procedural:general_replies", "prompt_column": "instruction", "completion_column": "reply",
         "count": 30}]}}))
    cfg = load_config(SFTConfig, str(recipe), [])
    rows = load_sft_rows(cfg.data, "train")
    by = {s: [r for r in rows if r["source"] == s] for s in ("procedural:cold_start", "procedural:general_replies")}
    assert len(by["procedural:cold_start"]) == 20 and len(by["procedural:general_replies"]) == 30
    assert all(r["completion"].startswith(" <think>") for r in by["procedural:cold_start"])
    assert all(r["completion"].startswith(" <answer>") for r in by["procedural:general_replies"])
