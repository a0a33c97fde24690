"""Prompts over rollout.max_prompt_length in GRPO (issue 25 item 9): cut from the left (the template's header goes),
so each step counts them (`rollout/prompts_truncated`) and the run warns once; `data.filter_overlong_prompts=true`
drops them at load time (verl's filter_overlong_prompts) and says how many at start-up. The micro model (r1_zero
template: ~200 tokens of header) on two prompts: "What is 2 + 3?" and the same question after a short preamble."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

TINY = str(Path(__file__).resolve().parents[2] / "recipes" / "tiny" / "r1_zero.yaml")
SHORT, LONG = "What is 2 + 3?", "Consider this carefully. What is 2 + 3?"


def run_grpo(micro_model_dir, tmp_path, *extra):
    from rl import grpo
    from rl.train.tracking import read_metrics
    data = tmp_path / "prompts.jsonl"
    data.write_text("".join(json.dumps({"prompt": p, "answer": "5"}) + "\n" for p in (SHORT, LONG)))
    out = tmp_path / "run"
    grpo.main([TINY, f"model.name_or_path={micro_model_dir}", f"output_dir={out}", "train.max_steps=3",
               "train.batch_size=4", "rollout.group_size=2", "train.micro_batch_size=4",
               "rollout.max_completion_length=4", f"data.train={data}", "data.test=null", "logging.save_every=0",
               "logging.progress_bar=false", *extra])
    return [m for m in read_metrics(out) if "loss" in m]


def prompt_lengths(micro_model_dir) -> tuple[int, int]:
    from data.templates import prompt_token_ids
    from rl.train.models import load_tokenizer
    tok = load_tokenizer(str(micro_model_dir))
    return tuple(len(prompt_token_ids(tok, p, "r1_zero")) for p in (SHORT, LONG))


def test_cut_prompts_are_counted_each_step_and_warned_once(micro_model_dir, tmp_path, capsys):
    short, long = prompt_lengths(micro_model_dir)
    limit = (short + long) // 2
    assert short <= limit < long  # the premise: one prompt fits, the other does not
    steps = run_grpo(micro_model_dir, tmp_path, f"rollout.max_prompt_length={limit}")
    # 2 prompts per step (batch 4 / group 2) from 2 rows: every step draws both, so exactly one is cut per step
    assert [m["rollout/prompts_truncated"] for m in steps] == [1.0, 1.0, 1.0]
    printed = capsys.readouterr().out
    assert printed.count("were cut from the left") == 1  # once, not every step
    assert f"1 prompt(s) of step 1 are longer than rollout.max_prompt_length={limit}" in printed


def test_filter_overlong_prompts_drops_them_at_load_time(micro_model_dir, tmp_path, capsys):
    short, long = prompt_lengths(micro_model_dir)
    limit = (short + long) // 2
    steps = run_grpo(micro_model_dir, tmp_path, f"rollout.max_prompt_length={limit}",
                     "data.filter_overlong_prompts=true")
    printed = capsys.readouterr().out
    assert (f"[grpo] data.filter_overlong_prompts: dropped 1 of 2 training prompts longer than "
            f"rollout.max_prompt_length={limit} tokens") in printed
    assert [m["rollout/prompts_truncated"] for m in steps] == [0.0, 0.0, 0.0]
    assert "were cut from the left" not in printed


def test_filter_that_leaves_no_prompt_is_a_one_line_error(micro_model_dir, tmp_path):
    from rl.config.recipe import ConfigError
    short, _ = prompt_lengths(micro_model_dir)
    with pytest.raises(ConfigError, match=rf"dropped all 2 training prompts: every one is longer than "
                                          rf"rollout.max_prompt_length={short - 1} tokens"):
        run_grpo(micro_model_dir, tmp_path, f"rollout.max_prompt_length={short - 1}",
                 "data.filter_overlong_prompts=true")
