"""Warm sandboxed workers for the `code` reward: ONE long-lived bubblewrap sandbox per process, reused for every job.

A cold run (sandbox/bwrap.py) costs ~34 ms, two thirds of it start-up: bwrap's namespaces (~12 ms) and the
interpreter (~11 ms). `WarmSandbox` pays them once: it starts one bwrap sandbox running a small zygote
(sandbox/zygote.py) and hands it each job over a unix socket (the program and job memfds and the job's own
stdout/stderr pipes, as SCM_RIGHTS fds); the zygote forks a child that runs code_harness.py's `main`, exactly as a
cold sandbox would, and the verdict is taken from that child's stdout here, with the same nonce rule.

    >>> warm = WarmSandbox(Sandbox(), HARNESS)             # starts nothing yet; picklable (rebuilt unstarted)
    >>> res = warm.run_harness(program_fd, job_fd, "stdio", wall_s=4.0)   # a RunResult, as Sandbox.run gives

What is the same as a cold run: the bwrap isolation (`--unshare-all`, `--die-with-parent`, `--new-session`,
`--cap-drop ALL`, uid nobody when run as root, read-only `/usr`, no project files, no network), the per-job limits
(CPU seconds, address space and file size set in the forked child; the process limit `nproc` for the whole sandbox,
set on the zygote, which takes the place of bwrap's init: a fork bomb gets as many processes as cold), the wall-clock
limit and the output cap of each job.

What differs, and how jobs are kept apart: jobs in one warm sandbox share a uid, the kernel namespaces (PID, IPC,
network, mount, user) and the zygote. Between two jobs the zygote kills every other process in the sandbox (fork
bombs, setsid'd daemons) until /proc shows none, empties /tmp and /dev/shm, and refuses to go on if a SysV IPC object
remains; `/` and `/dev` are mounted read-only here (in a cold sandbox they are writable tmpfs that die with it). The
zygote is the sandbox's PID 1 (`--as-pid-1`: no bwrap reaper, which a program could ptrace and which the sweep
cannot kill) and non-dumpable, so a program can neither ptrace it, read its memory, nor signal it (init ignores
signals from inside its namespace that it has no handler for). Not swept: kernel state that outlives processes and
is not a file, such as keyrings or a POSIX message queue (each job's RLIMIT_MSGQUEUE is 0, so none can be made); the
zygote's I/O priority. What a program may change in the zygote without ptrace (its rlimits, nice value, CPU affinity,
scheduling policy: prlimit(2) and the like check only the uid) is compared after every job: changed, it is replaced.
Whenever anything is unexpected (the job's wall-clock limit, output overflow, a zygote that dies, does not answer, or
cannot clean up, an interrupt such as the scorer's `deadline`), the whole sandbox is killed (SIGKILL to bwrap's process
group) and the next job starts a fresh one: correctness first, speed second.

Only for the "bwrap" backend: `sandbox: none` has no PID namespace to sweep, and always runs cold.
"""
from __future__ import annotations

import os
import select
import socket
import subprocess
import time
import weakref
from pathlib import Path

from sandbox.bwrap import RunResult, Sandbox, SandboxError

ZYGOTE = Path(__file__).with_name("zygote.py").read_text()
START_S = 10.0  # the zygote must say "ready" within this
PROCESSES = 2  # a live warm sandbox, between jobs: bwrap (outside) and the zygote (PID 1 inside)
ANSWER_S = 3.0  # after a job's output ends, the zygote must have swept within this (its own sweep gives up at 2 s)


def _kill(proc: subprocess.Popen, sock: socket.socket, owner: int) -> None:
    if os.getpid() != owner:  # a fork of the owning process: the sandbox is not ours to kill
        return
    Sandbox._kill(proc)  # bwrap's process group; the zygote (--die-with-parent) and with it the PID namespace follow
    sock.close()


class WarmSandbox:
    """One warm bwrap sandbox (started on the first job, restarted after anything unexpected). Not thread-safe."""

    def __init__(self, box: Sandbox, harness: str):
        if box.backend != "bwrap":
            raise ValueError(f"warm sandbox: only for the 'bwrap' backend, not {box.backend!r}")
        self.box, self.harness = box, harness
        self.starts = 0  # sandboxes started so far (1 + restarts)
        self._proc: subprocess.Popen | None = None
        self._sock: socket.socket | None = None
        self._finalizer = None
        self._owner = 0  # the process that started the sandbox: a forked copy of this object starts its own

    def __reduce__(self):
        return WarmSandbox, (self.box, self.harness)

    @property
    def limits(self):
        return self.box.limits

    # -- the sandbox's life ------------------------------------------------------------------------------------
    def _start(self) -> None:
        lim = self.box.limits
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        args = [self.box.python, "-I", "-S", "-c", ZYGOTE, str(theirs.fileno()), self.harness, str(lim.cpu_s),
                str(lim.memory_mb << 20), str(lim.fsize_mb << 20), str(lim.nproc)]
        env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "PYTHONHASHSEED": "0", "PYTHONDONTWRITEBYTECODE": "1"}
        try:
            proc = subprocess.Popen(self.box.bwrap_args(read_only_root=True) + args, stdin=subprocess.DEVNULL,
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, pass_fds=(theirs.fileno(),),
                                    env=env, cwd="/", start_new_session=True, preexec_fn=self.box._preexec())
        finally:
            theirs.close()
        self._proc, self._sock, self.starts = proc, ours, self.starts + 1
        self._owner = os.getpid()
        self._finalizer = weakref.finalize(self, _kill, proc, ours, self._owner)
        line = self._answer(time.monotonic() + START_S)
        if line != "ready":
            self.close()
            raise SandboxError(f"the warm sandbox did not start ({line or 'no answer'}); `warm: false` runs cold")

    def close(self) -> None:
        """Kill the sandbox (if any); the next job starts a fresh one."""
        if self._finalizer is not None:
            self._finalizer()  # _kill, once
        self._proc = self._sock = self._finalizer = None

    @property
    def alive(self) -> bool:
        return self._proc is not None and self._owner == os.getpid() and self._proc.poll() is None

    def _answer(self, deadline: float) -> str | None:
        """One line from the zygote, or None (EOF, timeout, or garbage)."""
        buf = b""
        while not buf.endswith(b"\n"):
            left = deadline - time.monotonic()
            if left <= 0 or len(buf) > 256 or not select.select([self._sock], [], [], left)[0]:
                return None
            try:
                chunk = self._sock.recv(256)
            except OSError:
                return None
            if not chunk:
                return None
            buf += chunk
        return buf.decode("ascii", "replace").strip()

    def _send(self, mode: str, fds: list[int]) -> bool:
        try:
            socket.send_fds(self._sock, [mode.encode()], fds)
            return True
        except OSError:
            return False

    # -- one job -----------------------------------------------------------------------------------------------
    def run_harness(self, program_fd: int, job_fd: int, mode: str, wall_s: float | None = None) -> RunResult:
        """Run the harness on the two memfds in the warm sandbox; a RunResult like Sandbox.run's. A job the zygote
        does not see through to a clean slate counts as killed (returncode None, no output kept)."""
        t0 = time.monotonic()
        wall = self.box.limits.wall_s if wall_s is None else wall_s
        cap = self.box.limits.output_bytes
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        ours = {out_r, out_w, err_r, err_w}  # closed here whatever happens
        try:
            sent = False
            for _ in range(2):  # a sandbox found dead before the job started is replaced once
                if not self.alive:
                    self.close()
                    self._start()
                sent = self._send(mode, [program_fd, job_fd, out_w, err_w])
                if sent:
                    break
                self.close()
            for fd in (out_w, err_w):  # the zygote's child holds them now: EOF when it (and all it forked) is done
                os.close(fd)
                ours.discard(fd)
            if not sent:
                return RunResult(None, b"", b"warm sandbox: zygote unreachable", seconds=time.monotonic() - t0)
            out, err, timed_out, overflow = _collect(out_r, err_r, t0 + wall, cap)
            answer = None if (timed_out or overflow) else self._answer(max(time.monotonic(), t0 + wall) + ANSWER_S)
        except BaseException:
            self.close()  # interrupted (e.g. the scorer's deadline) or failed to start: the sandbox's state is unknown
            raise
        finally:
            for fd in ours:
                os.close(fd)
        if answer is None or not answer.startswith("ok "):
            self.close()
            if not (timed_out or overflow):
                return RunResult(None, b"", err[:cap] + f"\nwarm sandbox: {answer or 'no answer'}".encode(),
                                 seconds=time.monotonic() - t0)
            return RunResult(None, out[:cap], err[:cap], timed_out, overflow, time.monotonic() - t0)
        try:
            code = int(answer.split()[1])
        except (IndexError, ValueError):
            code = None
        return RunResult(code, out[:cap], err[:cap], seconds=time.monotonic() - t0)


def _collect(out_r: int, err_r: int, deadline: float, cap: int) -> tuple[bytes, bytes, bool, bool]:
    """Read both pipes to EOF, the deadline or more than `cap` bytes: (stdout, stderr, timed_out, overflow)."""
    bufs = {out_r: bytearray(), err_r: bytearray()}
    open_fds = set(bufs)
    timed_out = overflow = False
    while open_fds and not overflow:
        left = deadline - time.monotonic()
        if left <= 0:
            timed_out = True
            break
        for fd in select.select(list(open_fds), [], [], left)[0]:
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                open_fds.discard(fd)
                continue
            bufs[fd] += chunk
            overflow |= len(bufs[fd]) > cap
    return bytes(bufs[out_r]), bytes(bufs[err_r]), timed_out, overflow
