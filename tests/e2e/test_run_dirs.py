"""The data-loss cases of issue 17, by running the real GRPO entry point: twice into one directory (refused, then
overwrite=true), two at once (the second refused while the first lives; its lock taken over once it is SIGKILLed),
weights readable like every other file, and a reward that raises on every item stopping the run."""
import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest
import yaml

from rl.train.rundir import file_mode
from rl.train.tracking import read_metrics
from tests.conftest import ROOT
from tests.e2e.test_grpo_run import micro_overrides

pytestmark = pytest.mark.slow


def grpo(args, **kw):
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    cmd = [sys.executable, "rl/grpo.py", "recipes/tiny/r1_zero.yaml", *args]
    return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def finish(proc, timeout=600):
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out, err


def test_second_run_into_one_dir_is_refused_overwritten_and_locked(micro_model_dir, tmp_path):
    out = tmp_path / "run"
    args = [*micro_overrides(micro_model_dir, out), "train.max_steps=2", "resume=never"]
    rc, stdout, err = finish(grpo(args))
    assert rc == 0, err[-3000:]
    first = (out / "metrics.jsonl").read_bytes()
    assert [m["step"] for m in read_metrics(out)] == [0, 1, 2, 2]
    weights = out / "checkpoint-2" / "model.safetensors"
    assert os.stat(weights).st_mode & 0o777 == file_mode()  # was 0600 (safetensors' private temp file)
    assert os.stat(out / "checkpoint-2" / "config.json").st_mode & 0o777 == file_mode()
    assert not (out / ".lock").exists()

    # the same command again: refused in one line, the first run untouched
    rc, stdout, err = finish(grpo(args))
    assert rc == 2
    assert err.strip().splitlines()[-1] == (
        f"error: output_dir {out} already holds a run (checkpoint-2, completions.jsonl, config.yaml, "
        f"metrics.jsonl); pass resume=auto to continue it, overwrite=true to delete it and start over, or choose "
        f"another output_dir")
    assert (out / "metrics.jsonl").read_bytes() == first
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-2"]

    # overwrite=true: the old run is deleted first, the new one alone remains
    rc, stdout, err = finish(grpo([*args, "train.max_steps=1", "overwrite=true"]))
    assert rc == 0, err[-3000:]
    assert f"[grpo] overwrite=true: deleting the previous run in {out} (4 entries)" in stdout
    assert [m["step"] for m in read_metrics(out)] == [0, 1, 1]
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-1"]
    assert yaml.safe_load((out / "config.yaml").read_text())["train"]["max_steps"] == 1

    # two at once: a long run holds the lock; a second (resuming) one is refused while it lives
    long = grpo([*micro_overrides(micro_model_dir, out), "train.max_steps=500", "resume=auto"])
    deadline = time.time() + 300
    while not (out / ".lock").exists() or (out / ".lock").stat().st_size == 0:
        assert long.poll() is None and time.time() < deadline, long.stderr.read()[-3000:]
        time.sleep(0.2)
    rc, stdout, err = finish(grpo([*micro_overrides(micro_model_dir, out), "resume=auto"]))
    assert rc == 2
    assert re.fullmatch(rf"error: output_dir {re.escape(str(out))} is in use by grpo \(pid {long.pid} on host \S+, "
                        rf"lock {re.escape(str(out / '.lock'))}\); stop it or use another output_dir",
                        err.strip().splitlines()[-1])
    os.kill(long.pid, signal.SIGKILL)  # no clean-up: the lock file stays behind, naming a dead pid
    long.communicate()
    assert (out / ".lock").exists()
    rc, stdout, err = finish(grpo([*micro_overrides(micro_model_dir, out), "train.max_steps=1", "resume=auto"]))
    assert rc == 0, err[-3000:]
    assert f"of grpo (pid {long.pid} on host" in stdout and "no longer running)" in stdout
    assert not (out / ".lock").exists()


def test_a_reward_raising_on_every_item_stops_the_run(micro_model_dir, tmp_path):
    recipe = yaml.safe_load((ROOT / "recipes/tiny/r1_zero.yaml").read_text())
    recipe["rewards"] = {"format": 0.5, "tests.e2e.raising_reward:boom": 1.0}
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, "rl/grpo.py", str(path), *micro_overrides(micro_model_dir,
                                                                                      tmp_path / "run")],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1] == (
        "error: reward 'tests.e2e.raising_reward:boom' raised on all 8 completions of this batch: "
        "ZeroDivisionError: my reward divided by zero")
    assert [m for m in read_metrics(tmp_path / "run") if "loss" in m] == []  # no step trained on zeros


def test_a_trainer_orphaned_by_a_killed_launcher_keeps_its_dir(micro_model_dir, tmp_path):
    """The issue's case: kill -9 of the `accelerate launch` process leaves its trainer running. A resume into the same
    directory must be refused while that orphan lives (it holds the lock), not run a second trainer beside it."""
    out = tmp_path / "run"
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    launcher = subprocess.Popen([sys.executable, "-m", "accelerate.commands.launch", "--num_processes", "1",
                                 "rl/grpo.py", "recipes/tiny/r1_zero.yaml", *micro_overrides(micro_model_dir, out),
                                 "train.max_steps=500"], cwd=ROOT, env=env, start_new_session=True,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 300
        while not (out / ".lock").exists() or (out / ".lock").stat().st_size == 0:
            assert launcher.poll() is None and time.time() < deadline
            time.sleep(0.2)
        holder = json.loads((out / ".lock").read_text())["pid"]
        assert holder != launcher.pid  # the trainer (rank 0) holds the lock, not the launcher
        os.kill(launcher.pid, signal.SIGKILL)
        launcher.wait()
        time.sleep(1)
        os.kill(holder, 0)  # the orphaned trainer still runs (raises if it died with its launcher)
        rc, stdout, err = finish(grpo([*micro_overrides(micro_model_dir, out), "resume=auto"]))
        assert rc == 2
        assert f"is in use by grpo (pid {holder} on host" in err.strip().splitlines()[-1]
    finally:
        os.killpg(launcher.pid, signal.SIGKILL)  # the orphan is still in the launcher's session
