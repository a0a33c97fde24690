"""The stage recipes load with their schemas; the cold-start data are correct, strictly formatted, and disjoint
from the test set; the tiny student shares the base tokenizer recipe; datasets in their published schemas (MATH,
GSM8K, NuminaMath-CoT, OpenR1-Math) load through a recipe and their golds score correctly."""
from __future__ import annotations

from pathlib import Path

import pytest

from data.tasks import arithmetic_dataset, cold_start_completion, cold_start_dataset
from rl.config.recipe import load_config


@pytest.mark.parametrize("schema, path", [
    ("rl.config.sft:SFTConfig", "recipes/cold_start_sft.yaml"),
    ("rl.config.sft:SFTConfig", "recipes/tiny/cold_start_sft.yaml"),
    ("rl.config.grpo:GRPOConfig", "recipes/r1.yaml"),
    ("rl.config.grpo:GRPOConfig", "recipes/tiny/r1.yaml"),
    ("rl.config.distill:DistillConfig", "recipes/distill.yaml"),
    ("rl.config.distill:DistillConfig", "recipes/tiny/distill.yaml"),
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

    from rl.tiny.build import NAMED_SPECS
    from rl.tiny.sources import TINY_NAMES
    assert TINY_NAMES == ("tiny", "tiny-init", "tiny-student", "tiny-student-init", "tiny-code", "tiny-tools",
                          "tiny-chat", "tiny-rm")  # the recipes' names
    base, student = asdict(NAMED_SPECS["tiny"]), asdict(NAMED_SPECS["tiny-student"])
    tokenizer_keys = ("vocab_size", "num_docs", "p_careful", "p_strict", "p_mixed", "seed", "world")  # the corpus's
    assert base["p_mixed"] > 0 and all(asdict(NAMED_SPECS[n])[k] == base[k] for n in ("tiny-init", "tiny-student-init")
                                       for k in tokenizer_keys)
    assert all(base[k] == student[k] for k in tokenizer_keys)
    assert student["hidden_size"] < base["hidden_size"] and student["hidden_size"] // student["num_heads"] == 32


# -- Real dataset schemas (issue 11) -----------------------------------------------------------------------------------
# Tiny fixtures in the column layout and gold format each dataset publishes: MATH (lighteval: problem, level, type and a
# worked `solution` ending in \boxed{}), GSM8K (question, answer "... #### 72"), NuminaMath-CoT (source, problem,
# worked solution, messages) and OpenR1-Math-220k (bare `answer` next to the worked `solution`, generations, ...).
# Each is loaded through the recipe and data/loading.py as rl/grpo.py does, and scored through the recipe's rewards.
ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "stages" / "fixtures"
DATASETS = {  # fixture -> (prompt column, [(a right completion, a wrong completion) per row])
    "math_lighteval.jsonl": ("problem", [
        (r"<think> (x-2)(x-6) </think> <answer> \boxed{2} \quad\text{and}\quad \boxed{6} </answer>",
         r"<think> (x-2)(x-6) </think> <answer> \boxed{6} </answer>"),
        (r"<think> subtract </think> <answer> \begin{pmatrix} -1 \\ 2 \end{pmatrix} </answer>",
         r"<think> subtract </think> <answer> 2 </answer>"),
        ("<think> 100*100 </think> <answer> 10 000 </answer>", "<think> 100*100 </think> <answer> 100 </answer>"),
        (r"<think> 2 of 4 </think> <answer> \dfrac{2}{4} </answer>", "<think> 2 of 4 </think> <answer> 2 </answer>"),
    ]),
    "gsm8k.jsonl": ("question", [
        ("<think> 48/2=24, 48+24=72 </think> <answer> 72 </answer>", "<think> 48/2=24 </think> <answer> 24 </answer>"),
        (r"<think> 12*5 </think> <answer> \$60 </answer>", "<think> 12*5 </think> <answer> 12 </answer>"),
        ("<think> 25*50 </think> <answer> 1,250 </answer>", "<think> 25*50 </think> <answer> 1 000 </answer>"),
        ("<think> 9-4 </think> <answer> 5 </answer>", "<think> 9-4 </think> <answer> 4 </answer>"),
    ]),
    "numina_cot.jsonl": ("problem", [
        (r"<think> 12+5 </think> The final answer is $\boxed{17}$.", r"<think> 3*4 </think> \boxed{12}"),
        (r"<think> pairs </think> \boxed{(2, 2)} and \boxed{(6, 2)}", r"<think> pairs </think> \boxed{(6, 2)}"),
        (r"<think> 1024 </think> \boxed{A}", r"<think> 1000 </think> \boxed{B}"),
        (r"<think> 30 days </think> \boxed{300{,}000}", r"<think> one day </think> \boxed{10\,000}"),
    ]),
    "openr1_math.jsonl": ("problem", [
        (r"<think> \boxed{455} is one part </think> The final answer is $10,455$.",
         r"<think> sum </think> \boxed{455}"),
        (r"<think> x^2 = 9 </think> \boxed{-3} and \boxed{3}", r"<think> x^2 = 9 </think> \boxed{3}"),
        (r"<think> add </think> <answer> x = 1, y = 2 </answer>", "<think> add </think> <answer> 2 </answer>"),
        (r"<think> 1000/4*3 </think> \boxed{750}", r"<think> 1000/4 </think> \boxed{250}"),
    ]),
}


@pytest.mark.parametrize("fixture", list(DATASETS))
def test_dataset_golds_score_through_a_recipe(fixture):
    from data.loading import load_examples
    from rewards import RewardScorer
    from rl.rollout.episodes.collect import reward_columns
    from rl.config.grpo import GRPOConfig
    prompt_column, pairs = DATASETS[fixture]
    path = FIXTURES / fixture
    cfg = load_config(GRPOConfig, ROOT / "recipes/tiny/r1_zero.yaml",
                      [f"data.train={path}", f"data.test={path}", f"data.prompt_column={prompt_column}"])
    d = cfg.data
    rows = load_examples(d.train, d.train_split, prompt_column=d.prompt_column, answer_column=d.answer_column)
    assert len(rows) == len(pairs) and all(isinstance(r["prompt"], str) and r["answer"] for r in rows)
    examples = [r for r in rows for _ in range(2)]
    completions = [c for pair in pairs for c in pair]
    with RewardScorer({"accuracy": cfg.rewards["accuracy"]}, num_workers=0) as scorer:
        result = scorer.score(completions, reward_columns(examples, [10] * len(examples)))
    assert result.per_reward["accuracy"] == [1.0, 0.0] * len(pairs)


def test_dataset_without_gold_column_fails_before_any_model(tmp_path):
    from data.loading import DataError, load_examples
    path = tmp_path / "no_gold.jsonl"
    path.write_text('{"problem": "1+1?", "level": "Level 1", "type": "Algebra"}\n')
    with pytest.raises(DataError, match=r"no column 'answer' \(nor its alias 'solution'\); columns: level, problem, "
                                        r"type"):
        load_examples(str(path), "train", prompt_column="problem")


def test_tiny_base_build_logs_steps_of_total_and_time_left():
    """300 of 1200 steps in 60 s: 0.2 s a step, 900 steps left -> ~180 s left."""
    from rl.tiny.build import progress_line
    assert progress_line(300, 1200, 0.8213, 60.0) == "[tiny base] step 300/1200 loss 0.8213 (60s elapsed, ~180s left)"
    assert progress_line(1200, 1200, 0.5, 250.4).endswith("(250s elapsed, ~0s left)")
