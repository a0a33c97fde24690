"""R1-Zero on code in miniature: recipes/tiny/r1_zero_code.yaml learns with the real sandboxed `code` reward, and
its chains of thought grow longer as it learns (R1 Fig. 3 in miniature).

The tiny code base (TinySpec world=code: one-line functions; 3 writers in 4 careless, the careful ones check and
redo, "wait, check f(5): that gives 7, but it should be 12. redo: ...") passes 0% of the held-out problems under
greedy decoding. Measured once (seed 0, 2 cores, cold sandboxes): held-out pass rate 0.000 -> 0.887, mean completion
length 15.8 -> 25.4 tokens (x1.61), check/redo share 0.00 -> 1.00, strict format 0.79 -> 0.94. Asserted with margin:
+25 points, x1.3 length, check/redo share from under 0.1 to over 0.5."""
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
    assert last["eval/format"] >= 0.85  # (0.94 measured; the arithmetic recipe asserts 0.9 of its 1.00)
    # finding 1: longer chains, by checking and redoing
    assert last["eval/completion_len"] >= 1.3 * first["eval/completion_len"], (first, last)
    assert first["eval/check_redo_frac"] <= 0.1 and last["eval/check_redo_frac"] >= 0.5, (first, last)
    steps = [m for m in rows if "rewards/code/pass_rate" in m]
    assert len(steps) == 40
    assert sum(m["rewards/code/sandbox_kills"] for m in steps) == 0  # no run of a correct-or-buggy one-liner dies
    assert steps[-1]["rewards/code/mean"] > steps[0]["rewards/code/mean"] + 0.25
    config = (out / "config.yaml").read_text()
    assert "reward: code" in config
