"""The start-up summary of a GRPO recipe (rl/config/summary.py): three lines instead of the ~110-line resolved config,
which goes to the run directory's config.yaml (issue 30)."""
import pytest

from rl.config.grpo import GRPOConfig
from rl.config.recipe import load_config
from rl.config.summary import grpo_summary

TINY = "recipes/tiny/r1_zero.yaml"


@pytest.mark.parametrize("overrides, world, expected", [
    # the tiny recipe: batch 64 / G 8 = 8 prompts a step, lr 2e-4 constant, dapo with clip-higher, two rewards
    ([], 1, ["model tiny (weights float32, compute float32); data procedural:arithmetic (template r1_zero)",
             "40 steps x 8 prompts x G=8 per process, completions <= 40 tokens, engine hf; lr 0.0002 (constant)",
             "loss dapo (clip, advantage group, beta 0.0); rewards accuracy 1.0, format 0.5"]),
    # LoRA in bf16 on 2 processes, one step ahead, a reward given as a mapping: the base is held in bf16
    (["model.lora.enabled=true", "model.dtype=bfloat16", "rollout.async_steps=1", "rollout.group_size=4",
      "rewards.format.weight=0.25"], 2,
     ["model tiny (weights bfloat16, compute bfloat16, LoRA r 8); data procedural:arithmetic (template r1_zero)",
      "40 steps x 16 prompts x G=4 per process (2 processes), completions <= 40 tokens, engine hf, 1 step(s) ahead; "
      "lr 0.0002 (constant)",
      "loss dapo (clip, advantage group, beta 0.0); rewards accuracy 1.0, format 0.25"]),
    # bounded staleness (two steps ahead, set by max_staleness alone) and a rollout correction mode
    (["rollout.max_staleness=2", "algorithm.rollout_correction=sequence_mask"], 1,
     ["model tiny (weights float32, compute float32); data procedural:arithmetic (template r1_zero)",
      "40 steps x 8 prompts x G=8 per process, completions <= 40 tokens, engine hf, 2 step(s) ahead, max staleness 2; "
      "lr 0.0002 (constant)",
      "loss dapo (clip, advantage group, beta 0.0, rollout correction sequence_mask); rewards accuracy 1.0, format 0.5"]),
])
def test_summary_lines(overrides, world, expected):
    assert grpo_summary(load_config(GRPOConfig, TINY, overrides), world).splitlines() == expected


def test_summary_names_each_tasks_rewards():
    cfg = load_config(GRPOConfig, "recipes/tiny/r1_all_scenarios.yaml", [])
    assert grpo_summary(cfg, 1).splitlines()[2] == (
        "loss dapo (clip, advantage group, beta 0.0); rewards accuracy 1.0, format 0.5, reward_model 1.0; "
        "per task: arithmetic accuracy + format; general reward_model")
