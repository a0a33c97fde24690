"""One run per output directory: refuse to mix a new run into an old one, and lock the directory while a run lives.

Every training stage (GRPO, SFT, distillation) calls `claim_output_dir` on the process that writes (global rank 0)
before any model is loaded and before anything is written:

    with claim_output_dir("runs/x", stage="grpo", resuming=False, overwrite=False):
        ...  # the run; the lock is released when the block ends, however it ends

1. A new run (not resuming) into a directory that already holds a run -- any of `RUN_FILES` (metrics.jsonl,
   config.yaml, checkpoints, a final model, traces) -- is refused with one line naming the two ways on:
   `resume=auto` (continue it) or `overwrite=true` (delete its files first, then start). Nothing is mixed (metrics
   appended to another run's, `save_total_limit` deleting the new checkpoints and keeping the old ones) and nothing
   is deleted unasked. With `overwrite=true` only the run files are removed; other files in the directory stay.
2. An advisory lock: `output_dir/.lock`, held with `fcntl.flock` for the run's lifetime and holding
   `{"pid", "host", "stage"}` for the message a second run prints. The kernel drops a flock when its holder dies
   (even by SIGKILL), so a lock file left by a dead process is simply taken over (with a message naming the dead
   pid); a live holder -- say a trainer orphaned by a killed `accelerate launch` -- makes the second run fail:

       error: output_dir runs/x is in use by grpo (pid 4242 on host node1, lock runs/x/.lock); stop it or use
       another output_dir

   flock works across processes on one host and on NFS v4 / Lustre mounts that support locks; the pid/host record
   is only for the message.

Ranks other than 0 never touch the directory here: they learn of rank 0's failure because the launcher stops them.

Also here: `share_file_modes`, because safetensors writes weights with mode 0600 (it writes a private temporary file
and renames it), which makes a checkpoint's or export's `model.safetensors` unreadable to anyone else on a shared
filesystem while every other file is 0644.
"""
from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import shutil
import socket
from pathlib import Path
from typing import Iterator

from rl.config.recipe import ConfigError

LOCK_NAME = ".lock"
# What a previous run leaves behind (names or glob patterns), for every stage: its presence means "a run lives here".
RUN_FILES = ("metrics.jsonl", "completions.jsonl", "config.yaml", "checkpoint-*", ".tmp-checkpoint-*", "model",
             "eval.json", "tensorboard", "parts", "progress.json", "traces.jsonl", "traces.parquet", "stats.json",
             "student")


class OutputDirBusy(ConfigError):
    """Another live process holds the output directory's lock."""


def run_files(out: Path) -> list[Path]:
    """The files and directories of a previous run inside `out` (sorted), [] if none."""
    if not out.is_dir():
        return []
    found = {p for pattern in RUN_FILES for p in out.glob(pattern)}
    return sorted(found)


def check_new_run(out: Path, overwrite: bool) -> list[Path]:
    """For a run that starts from scratch in `out`: the old run's files to delete (overwrite), or a one-line
    ConfigError when there are some and overwrite is false. Deletes nothing itself."""
    old = run_files(out)
    if old and not overwrite:
        names = ", ".join(p.name for p in old[:4]) + (", ..." if len(old) > 4 else "")
        raise ConfigError(f"output_dir {out} already holds a run ({names}); pass resume=auto to continue it, "
                          f"overwrite=true to delete it and start over, or choose another output_dir")
    return old


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


class DirLock:
    """`out/.lock` held with flock (see module docstring). `acquire` raises OutputDirBusy when a live process holds
    it; `release` (idempotent) removes the file while still holding the lock."""

    def __init__(self, out: Path, stage: str, log=print):
        self.path = Path(out) / LOCK_NAME
        self.stage, self.log = stage, log
        self.fd: int | None = None

    def acquire(self) -> "DirLock":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as e:
                holder = self._read(fd)
                os.close(fd)
                if e.errno not in (errno.EAGAIN, errno.EACCES):
                    raise
                raise OutputDirBusy(f"output_dir {self.path.parent} is in use by {holder.get('stage', 'a run')} "
                                    f"(pid {holder.get('pid', '?')} on host {holder.get('host', '?')}, lock "
                                    f"{self.path}); stop it or use another output_dir") from None
            # The file may have been unlinked by its releasing holder between our open and our flock: then we
            # hold a lock on a dead inode; start again on the current file.
            try:
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        stale = self._read(fd)
        if stale.get("pid"):
            alive = stale.get("host") == socket.gethostname() and _pid_alive(int(stale["pid"]))
            self.log(f"[{self.stage}] taking over the stale lock {self.path} of {stale.get('stage', 'a run')} "
                     f"(pid {stale['pid']} on host {stale.get('host', '?')}"
                     f"{', which no longer holds it' if alive else ', no longer running'})")
        record = json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "stage": self.stage}) + "\n"
        os.ftruncate(fd, 0)
        os.pwrite(fd, record.encode(), 0)
        os.fsync(fd)
        self.fd = fd
        return self

    @staticmethod
    def _read(fd: int) -> dict:
        try:
            return json.loads(os.pread(fd, 4096, 0).decode() or "{}")
        except (ValueError, OSError):
            return {}

    def release(self) -> None:
        if self.fd is None:
            return
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
        os.close(self.fd)  # closing drops the flock
        self.fd = None


def is_writer() -> bool:
    """Whether this process is global rank 0 (the launcher's RANK; a plain `python` run is rank 0)."""
    return int(os.environ.get("RANK", "0")) == 0


@contextlib.contextmanager
def claim_output_dir(out: str | Path, stage: str, resuming: bool, overwrite: bool = False, log=print
                     ) -> Iterator[DirLock | None]:
    """Lock `out` and, for a new run, check (or, with overwrite, clear) it; yields the lock (None on other ranks,
    which do nothing). Order: lock first, so two runs started at once cannot both pass the check."""
    if not is_writer():
        yield None
        return
    out = Path(out)
    lock = DirLock(out, stage, log).acquire()
    try:
        if not resuming:
            old = check_new_run(out, overwrite)
            if old:
                log(f"[{stage}] overwrite=true: deleting the previous run in {out} ({len(old)} entries)")
            for path in old:
                shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink()
        yield lock
    finally:
        lock.release()


def file_mode() -> int:
    """The mode a new file gets here: 0o666 minus the process umask (read without changing it, where /proc says)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return 0o666 & ~int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)  # no /proc: the classic read-by-setting (not thread-safe, hence the fallback only)
    os.umask(mask)
    return 0o666 & ~mask


def share_file_modes(root: str | Path, pattern: str = "*.safetensors") -> None:
    """Give the files under `root` matching `pattern` the mode every other new file gets (umask respected)."""
    mode = file_mode()
    for path in Path(root).rglob(pattern):
        if path.is_file() and not path.is_symlink():
            os.chmod(path, mode)
