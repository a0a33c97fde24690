"""The one place that runs model-written code: a bubblewrap sandbox with resource limits and a wall-clock kill.

    >>> box = Sandbox()                      # checks that bubblewrap works, else SandboxError naming the fix
    >>> res = box.run(["-c", "print(6 * 7)"])  # arguments to the sandboxed Python interpreter
    >>> res.stdout, res.returncode, res.timed_out
    (b'42\\n', 0, False)
    >>> box.run(["-c", "open('/etc/passwd')"]).returncode   # not in the sandbox's filesystem
    1

What one `run` gets (backend "bwrap"):

- `bwrap --unshare-all` (new user, PID, network, IPC, UTS and cgroup namespaces: no network at all, only its own
  processes visible), `--die-with-parent`, `--new-session` (no TTY injection), `--cap-drop ALL`;
- a filesystem of read-only binds of `/usr` (with `/bin`, `/lib`, `/lib64`, `/sbin` as on the host) and of the
  interpreter's prefix when it lives elsewhere; a fresh `/proc`, a minimal `/dev` (null, zero, random, urandom, tty),
  and a fresh size-capped tmpfs at `/tmp`, the working directory. Not the project, not `/root`, not the datasets,
  not `/etc`; the interpreter's `site-packages` is hidden under an empty tmpfs, and Python starts with `-I -S`;
- limits (`prlimit`, inside the new user namespace so that they count only this run's processes): CPU seconds and
  address space per process, number of processes, file size; at most `output_bytes` of stdout and of stderr are kept
  (more kills the run); after `wall_s` the whole sandbox is killed (SIGKILL to bwrap's process group; the sandbox's
  PID namespace dies with it, and `--die-with-parent` covers the parent's own death).
- Run as root, the sandbox is entered as uid `nobody` (65534): the kernel never enforces the process limit for root,
  so a fork bomb would be unbounded. Then the interpreter must be readable by `nobody`: one under a private home
  (pyenv in `/root`) is replaced by the system `/usr/bin/python3` (logged once).

The code reward by default reuses ONE such sandbox per process for many runs (sandbox/warm.py: a zygote
forks each run and sweeps the sandbox between runs; its bwrap command is `bwrap_args(read_only_root=True)`).

Backend "none" runs the same command as a plain subprocess with the same rlimits, session and wall-clock kill but no
isolation at all (the program sees the files, the network and the processes of this user); it logs a warning. It is
for machines where bubblewrap cannot run, and must be chosen explicitly (`sandbox: none`).
"""
from __future__ import annotations

import logging
import os
import select
import shutil
import signal
import stat
import subprocess
import sys
import time
from dataclasses import dataclass

logger = logging.getLogger(__name__)

BACKENDS = ("bwrap", "none")
NOBODY = 65534
_FIX = "install it (`apt-get install bubblewrap`), or give the code reward `sandbox: none` (no isolation)"


class SandboxError(RuntimeError):
    """The sandbox cannot run on this machine (raised when a code reward or the python tool is built, with the fix in
    one line)."""


@dataclass(frozen=True)
class Limits:
    cpu_s: int = 10  # RLIMIT_CPU per process
    memory_mb: int = 1024  # RLIMIT_AS per process
    nproc: int = 32  # processes (and threads) of the run
    fsize_mb: int = 16  # largest file it may write; also the /tmp tmpfs size
    output_bytes: int = 1 << 20  # stdout (and separately stderr) kept; more kills the run
    wall_s: float = 10.0  # default wall-clock limit of one run


@dataclass
class RunResult:
    returncode: int | None  # None when killed by us (timeout or output overflow)
    stdout: bytes
    stderr: bytes
    timed_out: bool = False
    overflow: bool = False  # more than output_bytes: killed
    seconds: float = 0.0


def _traversable_by_others(path: str) -> bool:
    """Whether every directory above `path` lets other users through (o+x): `nobody` can then read it."""
    path = os.path.realpath(path)
    while path != "/":
        path = os.path.dirname(path)
        try:
            if not os.stat(path).st_mode & stat.S_IXOTH:
                return False
        except OSError:
            return False
    return True


def _base_interpreter() -> str:
    """The real interpreter behind this (possibly virtual-env) Python: sys.base_prefix/bin/python3.X."""
    for name in (f"python{sys.version_info.major}.{sys.version_info.minor}", "python3"):
        cand = os.path.join(sys.base_prefix, "bin", name)
        if os.access(cand, os.X_OK):
            return cand
    return os.path.realpath(sys.executable)


class Sandbox:
    """Runs `python <args>` in a fresh sandbox per call. Picklable (rebuilt from its settings), cheap to keep."""

    def __init__(self, backend: str = "bwrap", limits: Limits | None = None, python: str | None = None,
                 check: bool = True):
        if backend not in BACKENDS:
            raise ValueError(f"sandbox: unknown backend {backend!r}; valid: {', '.join(BACKENDS)}")
        self.backend, self.limits = backend, limits or Limits()
        self._python_arg = python
        self.as_root = os.geteuid() == 0
        self.python = os.path.realpath(python or _base_interpreter())
        if backend == "bwrap" and self.as_root and not _traversable_by_others(self.python):
            fallback = shutil.which("python3", path="/usr/bin:/usr/local/bin")
            if fallback and not python:
                logger.info("sandbox: %s is not readable by uid nobody; sandboxed programs run on %s",
                            self.python, fallback)
                self.python = os.path.realpath(fallback)
        self.prefix = os.path.dirname(os.path.dirname(self.python))
        if backend == "none":
            logger.warning("sandbox: none — model-written code runs WITHOUT isolation (it can read and write this "
                           "user's files and use the network); use only on a throw-away machine")
        if check:
            self.check()

    def __reduce__(self):
        return Sandbox, (self.backend, self.limits, self._python_arg, False)

    # -- command line ------------------------------------------------------------------------------------------
    def _prlimit(self) -> list[str]:
        lim = self.limits
        return ["prlimit", f"--cpu={lim.cpu_s}", f"--as={lim.memory_mb << 20}", f"--nproc={lim.nproc}",
                f"--fsize={lim.fsize_mb << 20}", "--core=0", "--"]

    def command(self, args: list[str]) -> list[str]:
        """The full argv of one run (for `none`: the interpreter and `args`, limits set in the child)."""
        if self.backend == "none":
            return [self.python, "-I", "-S", *args]
        prlimit = shutil.which("prlimit") or "/usr/bin/prlimit"
        return self.bwrap_args() + [prlimit, *self._prlimit()[1:], self.python, "-I", "-S", *args]

    def bwrap_args(self, read_only_root: bool = False) -> list[str]:
        """bwrap's argv up to its `--` (the isolation above). `read_only_root` (the warm sandbox, which outlives one
        program): `/` and `/dev` are remounted read-only and `/dev/shm` is a size-capped tmpfs, so that `/tmp` and
        `/dev/shm` are the only writable places, both emptied between jobs; and `--as-pid-1`: the command itself is
        the PID namespace's init (no bwrap reaper, which a program could ptrace and which would outlive the sweep)."""
        size = str(self.limits.fsize_mb << 20)
        cmd = ["bwrap", "--unshare-all", "--die-with-parent", "--new-session", "--cap-drop", "ALL",
               "--ro-bind", "/usr", "/usr"]
        for top in ("bin", "lib", "lib32", "lib64", "libx32", "sbin"):
            path = "/" + top
            if os.path.islink(path):
                cmd += ["--symlink", os.readlink(path), path]
            elif os.path.isdir(path):
                cmd += ["--ro-bind", path, path]
        if not self.prefix.startswith("/usr/") and self.prefix != "/usr":
            cmd += ["--ro-bind", self.prefix, self.prefix]
        ver = f"python{sys.version_info.major}.{sys.version_info.minor}"
        site = os.path.join(self.prefix, "lib", ver, "site-packages")
        if os.path.isdir(site):
            cmd += ["--tmpfs", site]
        cmd += ["--proc", "/proc", "--dev", "/dev", "--size", size, "--tmpfs", "/tmp"]
        if read_only_root:
            cmd += ["--size", size, "--tmpfs", "/dev/shm", "--remount-ro", "/dev", "--remount-ro", "/", "--as-pid-1"]
        return cmd + ["--chdir", "/tmp", "--setenv", "HOME", "/tmp", "--setenv", "PATH", "/usr/bin:/bin",
                      "--unsetenv", "PYTHONPATH", "--"]

    def _preexec(self):
        uid_switch = self.backend == "bwrap" and self.as_root
        lim = self.limits
        none = self.backend == "none"

        def pre() -> None:
            if none:  # bwrap runs prlimit inside its user namespace; here the limits go on the child directly
                import resource
                for res, val in ((resource.RLIMIT_CPU, lim.cpu_s), (resource.RLIMIT_AS, lim.memory_mb << 20),
                                 (resource.RLIMIT_FSIZE, lim.fsize_mb << 20), (resource.RLIMIT_CORE, 0)):
                    resource.setrlimit(res, (val, val))
            if uid_switch:
                os.setgroups([])
                os.setgid(NOBODY)
                os.setuid(NOBODY)
        return pre

    # -- running -----------------------------------------------------------------------------------------------
    def check(self) -> None:
        """Start one trivial sandboxed program; SandboxError (one line, with the fix) if that fails."""
        if self.backend == "bwrap" and shutil.which("bwrap") is None:
            raise SandboxError(f"the sandbox (code reward, python tool) needs bubblewrap (`bwrap`), which is not "
                               f"installed: {_FIX}")
        if self.backend == "bwrap" and shutil.which("prlimit") is None:
            raise SandboxError("the sandbox (code reward, python tool) needs `prlimit` (util-linux): "
                               "`apt-get install util-linux`")
        try:
            res = self.run(["-c", "print('ok')"], wall_s=30)
        except OSError as e:
            raise SandboxError(f"the sandbox (code reward, python tool) failed to start ({e}): {_FIX}") from None
        if res.stdout.strip() != b"ok":
            why = res.stderr.decode("utf-8", "replace").strip().splitlines()
            raise SandboxError(f"the sandbox (code reward, python tool) failed to start "
                               f"({why[-1] if why else 'no output'}; user namespaces may be disabled: sysctl kernel.unprivileged_userns_clone=1): {_FIX}")

    def run(self, args: list[str], stdin: bytes = b"", wall_s: float | None = None,
            pass_fds: tuple[int, ...] = ()) -> RunResult:
        """Run `python -I -S <args>` sandboxed; stdout/stderr capped at `output_bytes` each; killed after `wall_s`.
        `pass_fds` are inherited at the same numbers (e.g. memfds holding the program and the job). Also kills the
        sandbox when interrupted (e.g. by the scorer's per-item `deadline`), then re-raises."""
        t0 = time.monotonic()
        wall = self.limits.wall_s if wall_s is None else wall_s
        cap = self.limits.output_bytes
        env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "PYTHONHASHSEED": "0", "PYTHONDONTWRITEBYTECODE": "1"}
        proc = subprocess.Popen(self.command(args), stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, pass_fds=pass_fds, env=env,
                                cwd="/tmp" if self.backend == "none" else "/", start_new_session=True,
                                preexec_fn=self._preexec())
        fd_out, fd_err = proc.stdout.fileno(), proc.stderr.fileno()
        out = {fd_out: bytearray(), fd_err: bytearray()}
        timed_out = overflow = False
        try:
            if stdin:
                try:
                    proc.stdin.write(stdin[:cap])
                    proc.stdin.close()
                except BrokenPipeError:
                    pass
            open_fds = set(out)
            while open_fds:
                left = t0 + wall - time.monotonic()
                if left <= 0:
                    timed_out = True
                    break
                ready, _, _ = select.select(list(open_fds), [], [], left)
                for fd in ready:
                    chunk = os.read(fd, 1 << 16)
                    if not chunk:
                        open_fds.discard(fd)
                        continue
                    out[fd] += chunk
                    if len(out[fd]) > cap:
                        overflow = True
                if overflow:
                    break
            if not (timed_out or overflow):
                try:
                    proc.wait(timeout=max(0.05, t0 + wall - time.monotonic()))
                except subprocess.TimeoutExpired:
                    timed_out = True
        finally:
            if proc.poll() is None or timed_out or overflow:
                self._kill(proc)
            proc.stdout.close()
            proc.stderr.close()
        code = None if (timed_out or overflow) else proc.returncode
        return RunResult(code, bytes(out[fd_out][:cap]), bytes(out[fd_err][:cap]), timed_out, overflow,
                         time.monotonic() - t0)

    @staticmethod
    def _kill(proc: subprocess.Popen) -> None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # bwrap (or the unsandboxed program) and its process group
        except (ProcessLookupError, PermissionError):
            pass
        try:
            proc.kill()
        except OSError:
            pass
        proc.wait()
