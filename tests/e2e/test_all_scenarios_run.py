"""R1's all-scenario RL stage in miniature (recipes/tiny/r1_all_scenarios.yaml): one GRPO run on mixed arithmetic and
general prompts, each row scored by its own rewards (rules for arithmetic; the tiny reward model, trained by the
project, for the general prompts). The held-out reward-model score of the greedy replies to the 72 general test
prompts rises, while held-out arithmetic accuracy does not fall by more than a few points.

Measured (seed 0, 20 steps, 32 s on this shared 2-core machine): held-out reward-model score -7.97 -> +4.90, polite
replies 0.00 -> 0.86 of the 72 held-out general prompts (greedy), held-out arithmetic accuracy 0.340 -> 0.335.
Asserted: the score up by at least 5, polite replies at least 0.5, arithmetic down by at most 0.05."""
import pytest

from rl.train.tracking import read_metrics
from tests.e2e.test_grpo_run import launch

pytestmark = pytest.mark.slow


def test_all_scenario_rl_raises_the_reward_model_score_and_keeps_arithmetic(tmp_path):
    from rl.tiny.chat import build_tiny_chat, held_out_general
    from rl.tiny.reward_model import build_tiny_reward_model
    policy, rm = str(build_tiny_chat()), str(build_tiny_reward_model())  # built once, cached (rl/tiny/*.py)
    out = tmp_path / "all"
    launch(["recipes/tiny/r1_all_scenarios.yaml", f"output_dir={out}", "logging.progress_bar=false"], timeout=900)
    rows = read_metrics(out)
    evals = [m for m in rows if "eval/accuracy" in m]
    first, last = evals[0], evals[-1]
    assert (first["step"], last["step"]) == (0, 20)
    assert last["eval/accuracy"] >= first["eval/accuracy"] - 0.05, (first, last)  # held-out arithmetic
    steps = [m for m in rows if "loss" in m]
    assert len(steps) == 20
    for m in steps:  # per-task metrics: each task present in the step has its own rewards, and only those
        if "task/general/frac" in m:
            assert "rewards/general/reward_model" in m and "rewards/reward_model/length_corr" in m
            assert "rewards/general/accuracy" not in m
        if "task/arithmetic/frac" in m:
            assert "rewards/arithmetic/accuracy" in m and "rewards/arithmetic/reward_model" not in m
    before, after = held_out_general(policy, rm), held_out_general(str(out / "checkpoint-20"), rm)
    assert after["rm_score"] >= before["rm_score"] + 5.0, (before, after)
    assert before["polite_frac"] <= 0.1 and after["polite_frac"] >= 0.5, (before, after)


@pytest.mark.matrix
def test_all_scenarios_under_zero3_bf16_on_two_processes(tmp_path):
    """The reward model beside a ZeRO-3 policy: each rank loads it whole (rewards/models/reward_model.py
    `outside_zero3_init`; before, zero.Init partitioned it and the first scoring failed). 38 s here."""
    import subprocess
    import sys

    from tests.e2e.test_strategies import free_port
    out = tmp_path / "z3"
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", "recipes/accelerate/zero3.yaml",
           "--num_processes", "2", "--main_process_port", str(free_port()), "rl/grpo.py", "recipes/tiny/r1_all_scenarios.yaml",
           f"output_dir={out}", "logging.progress_bar=false", "train.max_steps=2", "logging.save_every=0",
           "data.max_eval_samples=16", "model.dtype=bfloat16", "rewards.reward_model.dtype=bfloat16"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]
    steps = [m for m in read_metrics(out) if "loss" in m]
    assert len(steps) == 2 and all("rewards/general/reward_model" in m for m in steps if "task/general/frac" in m)
