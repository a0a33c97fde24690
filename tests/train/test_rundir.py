"""One run per output directory (rl/train/rundir.py): refuse, overwrite, lock, stale lock, file modes."""
import json
import os
import socket
import subprocess
import sys

import pytest

from rl.config.recipe import ConfigError
from rl.train.rundir import DirLock, OutputDirBusy, claim_output_dir, file_mode, run_files, share_file_modes


def old_run(out):
    out.mkdir(parents=True)
    (out / "metrics.jsonl").write_text('{"step": 40}\n')
    (out / "config.yaml").write_text("max_steps: 40\n")
    (out / "checkpoint-40").mkdir()
    (out / "notes.txt").write_text("mine")  # not a run file: never deleted


def test_new_run_into_an_old_run_is_refused_and_nothing_changes(tmp_path):
    out = tmp_path / "run"
    old_run(out)
    with pytest.raises(ConfigError) as e:
        with claim_output_dir(out, "grpo", resuming=False, log=lambda _: None):
            pytest.fail("entered")
    msg = str(e.value)
    assert "\n" not in msg and "already holds a run" in msg and "resume=auto" in msg and "overwrite=true" in msg
    assert [p.name for p in run_files(out)] == ["checkpoint-40", "config.yaml", "metrics.jsonl"]
    assert not (out / ".lock").exists()  # released on the way out


def test_overwrite_deletes_only_the_run_files(tmp_path):
    out = tmp_path / "run"
    old_run(out)
    logs = []
    with claim_output_dir(out, "grpo", resuming=False, overwrite=True, log=logs.append):
        assert sorted(p.name for p in out.iterdir()) == [".lock", "notes.txt"]
    assert logs == [f"[grpo] overwrite=true: deleting the previous run in {out} (3 entries)"]
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]


def test_resume_and_empty_dirs_pass(tmp_path):
    out = tmp_path / "run"
    old_run(out)
    with claim_output_dir(out, "grpo", resuming=True, log=lambda _: None) as lock:
        assert json.loads((out / ".lock").read_text()) == {"pid": os.getpid(), "host": socket.gethostname(),
                                                           "stage": "grpo"}
        assert lock.fd is not None
    with claim_output_dir(tmp_path / "fresh", "sft", resuming=False, log=lambda _: None):
        pass


def test_a_live_holder_refuses_a_second_run_in_one_line(tmp_path):
    out = tmp_path / "run"
    first = DirLock(out, "grpo").acquire()
    try:
        with pytest.raises(OutputDirBusy) as e:
            DirLock(out, "sft").acquire()
        assert str(e.value) == (f"output_dir {out} is in use by grpo (pid {os.getpid()} on host "
                                f"{socket.gethostname()}, lock {out / '.lock'}); stop it or use another output_dir")
    finally:
        first.release()
    DirLock(out, "sft").acquire().release()  # free again


def test_the_lock_of_a_killed_process_is_taken_over_with_a_message(tmp_path):
    out = tmp_path / "run"
    code = (f"import sys, os; sys.path.insert(0, {os.getcwd()!r}); from rl.train.rundir import DirLock; "
            f"DirLock(__import__('pathlib').Path({str(out)!r}), 'grpo').acquire(); print(os.getpid(), flush=True); "
            f"os._exit(0) if False else __import__('time').sleep(60)")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    pid = int(proc.stdout.readline())
    with pytest.raises(OutputDirBusy, match=f"pid {pid}"):
        DirLock(out, "grpo").acquire()
    proc.kill()  # SIGKILL: no clean-up ran, the lock file still names it
    proc.wait()
    assert json.loads((out / ".lock").read_text())["pid"] == pid
    logs = []
    lock = DirLock(out, "grpo", log=logs.append).acquire()
    lock.release()
    assert logs == [f"[grpo] taking over the stale lock {out / '.lock'} of grpo (pid {pid} on host "
                    f"{socket.gethostname()}, no longer running)"]


def test_weights_get_the_umask_mode(tmp_path):
    from safetensors.torch import save_file
    import torch
    save_file({"w": torch.zeros(2)}, str(tmp_path / "model.safetensors"))
    assert os.stat(tmp_path / "model.safetensors").st_mode & 0o777 == 0o600  # what safetensors does
    share_file_modes(tmp_path)
    mask = os.umask(0o022)
    os.umask(mask)
    assert file_mode() == 0o666 & ~mask
    assert os.stat(tmp_path / "model.safetensors").st_mode & 0o777 == 0o666 & ~mask
