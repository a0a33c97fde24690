"""The `judge` reward inside the GRPO stage (rl/grpo.py registers the local engines before it builds its rewards):
two steps of the tiny all-scenario recipe where the arithmetic rows are scored by `judge: {rules: accuracy}` (the
rules decide, the judge only where they cannot) and the general rows also by a local tiny judge (whose replies hold
no verdict: None, counted), with the reward model offloaded between scoring calls. 21 s on this shared machine."""
import pytest
import yaml

from rl.train.tracking import read_metrics
from tests.e2e.test_grpo_run import ROOT, launch

pytestmark = pytest.mark.slow


def test_grpo_runs_with_a_local_judge_and_an_offloaded_reward_model(tmp_path):
    recipe = yaml.safe_load((ROOT / "recipes/tiny/r1_all_scenarios.yaml").read_text())
    recipe["rewards"] = {
        "format": 0.5,
        "reward_model": {**recipe["rewards"]["reward_model"], "offload": True},
        "judge": {"weight": 0.5, "model": "tiny", "engine": "hf", "rules": "accuracy", "max_tokens": 8,
                  "template": "Q: {question} A: {answer} Score:"},
    }
    recipe["reward_sets"] = {"arithmetic": ["judge", "format"], "general": ["reward_model", "judge"]}
    recipe["train"].update(max_steps=2, batch_size=32)
    recipe["logging"].update(save_every=0)
    recipe["data"].update(max_eval_samples=16)
    recipe["output_dir"] = str(tmp_path / "run")
    (tmp_path / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    launch([str(tmp_path / "recipe.yaml"), "logging.progress_bar=false"], timeout=900)
    steps = [m for m in read_metrics(tmp_path / "run") if "loss" in m]
    assert len(steps) == 2
    for m in steps:
        assert "rewards/reward_model/offload_s" in m
        rows = m["rewards/judge/rule_decided"] + m["rewards/judge/judged"]
        assert rows == 32  # every row is judge's: 4 prompts x G=8
        # the tiny judge answers digits, never "Score: N": every row sent to it is a parse failure (None),
        # minus the rows answered from the cache
        assert m["rewards/judge/parse_failures"] == m["rewards/judge/calls"]
        assert m["rewards/judge/calls"] + m["rewards/judge/cache_hits"] == m["rewards/judge/judged"]
    assert sum(m["rewards/judge/judged"] for m in steps) > 0  # the general rows reached the judge
