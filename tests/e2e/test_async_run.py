"""Asynchronous GRPO end to end: the tiny R1-Zero recipe still learns with rollout.async_steps=1, and a rollout
worker killed mid-run ends the run with a clear error, promptly, leaving no process behind."""
import os
import re
import signal
import subprocess
import sys
import time

import pytest

from rl.train.tracking import read_metrics
from tests.conftest import ROOT
from tests.e2e.test_grpo_run import micro_overrides, run_tiny_r1_zero

pytestmark = pytest.mark.slow


def test_tiny_r1_zero_learns_with_async_rollouts(tmp_path):
    first, last = run_tiny_r1_zero(tmp_path, "rollout.async_steps=1")
    assert last["eval/accuracy"] - first["eval/accuracy"] >= 0.25, (first, last)
    assert last["eval/format"] >= 0.9
    train = [m for m in read_metrics(tmp_path / "r1_zero") if "loss" in m]
    assert [m["rollout/staleness_max"] for m in train[:3]] == [0.0, 1.0, 1.0]  # nothing to be stale against at 1
    assert max(m["rollout/staleness_max"] for m in train) == 1.0  # never more than async_steps
    assert all(0 < m["rollout/overlap"] for m in train)


def test_killed_rollout_worker_ends_the_run_cleanly(micro_model_dir, tmp_path):
    out = tmp_path / "run"
    args = [*micro_overrides(micro_model_dir, out), "train.max_steps=50", "rollout.async_steps=1",
            "rollout.timeout_s=120"]
    proc = subprocess.Popen([sys.executable, "rl/grpo.py", "recipes/tiny/r1_zero.yaml", *args], cwd=ROOT,
                            env={**os.environ, "HF_HUB_OFFLINE": "1"}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        pid = None
        for line in proc.stdout:  # "[grpo] rank 0: rollout worker pid N ..."
            if (m := re.search(r"rollout worker pid (\d+)", line)):
                pid = int(m.group(1))
                break
        assert pid is not None
        deadline = time.time() + 300
        while time.time() < deadline and not any(m.get("step", 0) >= 2 and "loss" in m for m in read_metrics(out)):
            time.sleep(0.05)
        os.kill(pid, signal.SIGKILL)  # mid-run: generation of the next batch is in flight
        killed_at = time.time()
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert time.time() - killed_at < 60  # noticed promptly, not after rollout.timeout_s
    assert proc.returncode == 1
    assert f"error: rollout worker (pid {pid}) died with exit code -9" in err
    assert "Traceback" not in err  # one clear message, not a stack trace
    # no process of the run left behind (multiprocessing's helpers exit once they see their parent gone)
    left = []
    for _ in range(100):
        left = [p for p in os.listdir("/proc") if p.isdigit() and _pgid(int(p)) == proc.pid]
        if not left:
            break
        time.sleep(0.1)
    assert not left, [open(f"/proc/{p}/cmdline").read().replace("\0", " ")[:200] for p in left]


def _pgid(pid):
    try:
        return os.getpgid(pid)
    except ProcessLookupError:
        return None
