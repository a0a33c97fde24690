"""R1-Zero on code in miniature: recipes/tiny/r1_zero_code.yaml learns with the real sandboxed `code` reward.

The tiny code base (TinySpec world=code: one-line functions, 3 writers in 4 careless) passes ~0% of the held-out
problems under greedy decoding; the recipe's promise is +25 points of held-out pass rate in its 40 steps (measured:
0.0 -> 0.99 on 2 cores, ~2.5 min with cold sandboxes), with every completion run in bubblewrap."""
import shutil

import pytest

from rl.train.tracking import read_metrics
from tests.e2e.test_grpo_run import launch

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(shutil.which("bwrap") is None,
                                 reason="bubblewrap (bwrap) is not installed: `make setup-sandbox`")]


def test_tiny_r1_zero_code_learns_in_the_sandbox(tmp_path):
    out = tmp_path / "code"
    launch(["recipes/tiny/r1_zero_code.yaml", f"output_dir={out}", "logging.progress_bar=false",
            "logging.eval_every=0"], timeout=900)  # evaluations at step 0 and at the end only
    rows = read_metrics(out)
    evals = [m for m in rows if "eval/accuracy" in m]
    first, last = evals[0], evals[-1]
    assert first["step"] == 0 and last["step"] == 40
    assert last["eval/accuracy"] - first["eval/accuracy"] >= 0.25, (first, last)  # held-out pass rate
    assert last["eval/format"] >= 0.9
    steps = [m for m in rows if "rewards/code/pass_rate" in m]
    assert len(steps) == 40
    assert sum(m["rewards/code/sandbox_kills"] for m in steps) == 0  # no run of a correct-or-buggy one-liner dies
    assert steps[-1]["rewards/code/mean"] > steps[0]["rewards/code/mean"] + 0.25
    config = (out / "config.yaml").read_text()
    assert "reward: code" in config
