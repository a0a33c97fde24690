"""R1's findings in miniature, on the tiny arithmetic world (the code world's longer chains: test_code_world_run.py).

One R1-Zero run of recipes/tiny/r1_zero.yaml is shared by the tests here:

- the recipe's promise: held-out greedy accuracy +25 points over the base, strict format >= 0.9;
- R1 §2.3.2: R1-Zero mixes languages, the R1 stage does not. The tiny base's careful writers name their steps in
  Chinese (rl/tiny/corpus.py), so the policy that R1-Zero makes of it, learning their method, mixes too;
  R1 (cold-start SFT on clean English traces, then GRPO with `language_consistency` beside accuracy and format,
  recipes/tiny/r1.yaml) must mix under a fifth as often, at an accuracy cost of at most 5 points.
"""
import os
import subprocess
import sys

import pytest

from rl.train.tracking import read_metrics
from tests.conftest import ROOT
from tests.e2e.test_grpo_run import launch, run_tiny_r1_zero

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def r1_zero(tmp_path_factory):
    return run_tiny_r1_zero(tmp_path_factory.mktemp("r1_zero"))  # (first eval, last eval)


def test_tiny_r1_zero_learns(r1_zero):
    """The tiny recipe's promise: held-out greedy accuracy +25 points over the base, strict format >= 0.9."""
    first, last = r1_zero
    assert first["step"] == 0 and last["step"] == 40
    assert last["eval/accuracy"] - first["eval/accuracy"] >= 0.25, (first, last)
    assert last["eval/format"] >= 0.9


def test_r1_stops_the_language_mixing_that_r1_zero_learns(r1_zero, tmp_path):
    _, zero = r1_zero
    cold = tmp_path / "cold_start"
    proc = subprocess.run([sys.executable, "rl/sft.py", "recipes/tiny/cold_start_sft.yaml", f"output_dir={cold}",
                           "logging.progress_bar=false"], cwd=ROOT, capture_output=True, text=True, timeout=900,
                          env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = tmp_path / "r1"
    launch(["recipes/tiny/r1.yaml", f"model.name_or_path={cold / 'model'}", f"output_dir={out}",
            "logging.progress_bar=false", "logging.eval_every=0"], timeout=900)
    r1 = [m for m in read_metrics(out) if "eval/accuracy" in m][-1]
    assert zero["eval/mixed_language_frac"] >= 0.2, zero  # R1-Zero mixes
    assert r1["eval/mixed_language_frac"] < zero["eval/mixed_language_frac"] / 5, (zero, r1)
    assert r1["eval/accuracy"] >= zero["eval/accuracy"] - 0.05, (zero, r1)
