"""The stage recipes load with their schemas; the cold-start data are correct, strictly formatted, and disjoint
from the test set; the tiny student shares the base tokenizer recipe."""
from __future__ import annotations

import pytest

from data.tasks import arithmetic_dataset, cold_start_completion, cold_start_dataset
from rl.config import load_config


@pytest.mark.parametrize("schema, path", [
    ("rl.sft_config:SFTConfig", "recipes/cold_start_sft.yaml"),
    ("rl.sft_config:SFTConfig", "recipes/tiny/cold_start_sft.yaml"),
    ("rl.grpo_config:GRPOConfig", "recipes/r1.yaml"),
    ("rl.grpo_config:GRPOConfig", "recipes/tiny/r1.yaml"),
    ("rl.distill_config:DistillConfig", "recipes/distill.yaml"),
    ("rl.distill_config:DistillConfig", "recipes/tiny/distill.yaml"),
])
def test_recipe_loads(schema, path):
    import importlib
    module, cls = schema.split(":")
    cfg = load_config(getattr(importlib.import_module(module), cls), path)
    assert cfg.output_dir.startswith("runs/")


def test_cold_start_traces_are_correct_strict_and_held_out():
    from rewards import get_reward
    from rl.tiny.corpus import write_solution
    rows = cold_start_dataset(300, num_test=200, seed=0)
    texts, answers = [r["completion"] for r in rows], [r["answer"] for r in rows]
    assert get_reward("accuracy")(texts, answer=answers) == [1.0] * 300
    assert get_reward("format")(texts) == [1.0] * 300
    _, test = arithmetic_dataset(300, 200, seed=0)
    assert not {r["prompt"] for r in rows} & {r["prompt"] for r in test}
    assert cold_start_completion("What is 3 + 4 * 5?") == write_solution(3, "+", 4, "*", 5, careful=True, style=0)
    assert sum(r["sensitive"] for r in rows) > 100  # the precedence trap is well represented


def test_student_spec_shares_the_tokenizer_settings():
    from dataclasses import asdict

    from rl.tiny.build import TINY_STUDENT
    from rl.tiny.build import TinySpec
    base, student = asdict(TinySpec()), asdict(TinySpec(**TINY_STUDENT))
    tokenizer_keys = ("vocab_size", "num_docs", "p_careful", "p_strict", "seed")  # what build_tokenizer depends on
    assert all(base[k] == student[k] for k in tokenizer_keys)
    assert student["hidden_size"] < base["hidden_size"] and student["hidden_size"] // student["num_heads"] == 32
