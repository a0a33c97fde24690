"""The tiny R1-Zero recipe still learns with LoRA (rl/train/lora.py), through the real entry point.

    python rl/grpo.py recipes/tiny/r1_zero.yaml model.lora.enabled=true   # r 8, all linear layers, lr 10 x 2e-4

Measured (2 shared CPU cores, 40 steps of 64 completions, greedy held-out accuracy on 200 problems), on the earlier
tiny base (0.385; the current one starts at 0.375 and the defaults reach 0.780, see CASES):

    rank 8, all linear layers, lr 2e-3:  0.385 -> 0.825 (peak 0.885 at step 20), ~25 s on a quiet machine
    rank 1, all linear layers, lr 2e-3:  0.385 -> 0.800
    full fine-tuning, lr 2e-4:           0.385 -> 0.860

LoRA wants ~10x the full fine-tuning learning rate (B starts at 0 and the update is low-rank; "LoRA Without Regret",
Thinking Machines 2025, finds the same factor): model.lora.learning_rate, unset = 10x train.learning_rate. The
assertion is the issue's +25 points.
"""
import json

import pytest

from rl.train.tracking import read_metrics
from tests.e2e.test_grpo_run import launch

pytestmark = pytest.mark.slow


# (the recipe keys LoRA adds, the rank the checkpoint must hold)
CASES = {
    # the defaults alone: r 8, alpha 16, all linear layers, 10x train.learning_rate = 2e-3. Before they were
    # [q,k,v,o]_proj at the full fine-tuning rate 2e-4: 0.370 -> 0.375 in 40 steps. Measured now: 0.375 -> 0.780
    # (peak 0.795 at step 20); r 16 / alpha 32 at the same rate: 0.375 -> 0.620 (peak 0.690)
    "defaults": ([], 8),
}


@pytest.mark.parametrize("case", list(CASES))
def test_tiny_recipe_learns_with_lora(case, tmp_path):
    keys, rank = CASES[case]
    out = tmp_path / "run"
    proc = launch(["recipes/tiny/r1_zero.yaml", "model.lora.enabled=true", *keys, f"output_dir={out}",
                   "logging.progress_bar=false"])  # the recipe evaluates every 10 steps, checkpoints every 20
    assert "at lr 0.002 (" in proc.stdout  # the start-up line names the adapters' rate
    evals = [m for m in read_metrics(out) if "eval/accuracy" in m]
    first, last = evals[0], evals[-1]
    assert first["step"] == 0 and last["step"] == 40
    # step 0 is the base model (LoRA's B = 0): 0.385 on the earlier tiny base, 0.375 on the current one
    assert last["eval/accuracy"] - first["eval/accuracy"] >= 0.25  # measured +0.405 (0.375 -> 0.780)
    assert last["eval/format"] >= 0.95  # measured 1.0
    ckpt = out / "checkpoint-40"
    assert (ckpt / "adapter_model.safetensors").is_file() and not (ckpt / "model.safetensors").exists()
    assert json.loads((ckpt / "adapter_config.json").read_text())["r"] == rank
