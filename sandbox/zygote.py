"""The zygote: the long-lived process inside one warm sandbox (stdlib only; its source is handed to the sandboxed
interpreter, this module is never imported by the parent). sandbox/warm.py starts it as

    python -I -S -c <this file's source> CTRL_FD HARNESS_SOURCE CPU_S AS_BYTES FSIZE_BYTES NPROC

and then, per job, sends one message on the unix socket CTRL_FD: the mode ("stdio", "call", "assert") with four
file descriptors attached (SCM_RIGHTS): the program memfd, the job memfd, and the write ends of the job's stdout and
stderr pipes. For each job the zygote

1. forks a child that sets the per-job rlimits (CPU seconds, address space, file size, no core, no POSIX message
   queues), makes the job's pipes its stdout/stderr, closes everything else (the control socket included), and
   runs code_harness.py's `main` on the two memfds in /tmp (emptied before every job): exactly what a cold sandbox
   runs, minus the interpreter start (the harness module is compiled once, here);
2. waits for that child, then sweeps: SIGKILL to every process it may signal (`kill(-1)`: everything in the sandbox
   but itself), reaping (it is the PID namespace's init, so orphans come back to it), until /proc lists no other
   process; then checks that its own rlimits and scheduling (nice, affinity, policy) are as they were (a program of
   the same uid can change them with prlimit(2) and the like), empties /tmp and /dev/shm and checks that no SysV IPC
   object was left behind;
3. answers one line on the socket: `ok <harness exit status>`, or `bad <why>` (the parent then kills the sandbox).

The zygote never reads a job memfd (it holds no nonce and no tests), is non-dumpable (no other process of its uid
can ptrace it or open /proc/<pid>/mem or /proc/<pid>/fd), and its child inherits that. It is PID 1 of the sandbox
(bwrap `--as-pid-1`): the kernel drops every signal sent to it from inside the namespace that it has no handler
for, and it keeps none (SIGINT too is left at its default), so a program can neither kill nor stop it. Should it die
anyway, the namespace dies with it; the parent sees no answer, fails that job, and starts a fresh sandbox.
"""
import ast  # noqa: F401 (not used here: preloaded for the harness's judge and solver, which import it per job)
import ctypes
import os
import resource
import signal
import socket
import sys
import time

PR_SET_DUMPABLE = 4
WRITABLE = ("/tmp", "/dev/shm")
SWEEP_S = 2.0


def prctl(option, value):
    if ctypes.CDLL(None, use_errno=True).prctl(option, value, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl failed")


def child(harness, fds, mode, limits):
    """In the forked child: limits, stdio, a clean fd table, then the harness. Never returns."""
    program_fd, job_fd, out_fd, err_fd = fds
    try:
        signal.signal(signal.SIGINT, signal.default_int_handler)  # as in any Python process (the zygote has none)
        cpu_s, as_bytes, fsize = limits
        for res, val in ((resource.RLIMIT_CPU, cpu_s), (resource.RLIMIT_AS, as_bytes),
                         (resource.RLIMIT_FSIZE, fsize), (resource.RLIMIT_CORE, 0), (resource.RLIMIT_MSGQUEUE, 0)):
            hard = resource.getrlimit(res)[1]  # never above what the sandbox was started with (a worker's cap)
            val = val if hard == resource.RLIM_INFINITY else min(val, hard)
            resource.setrlimit(res, (val, val))
        null = os.open("/dev/null", os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(out_fd, 1)
        os.dup2(err_fd, 2)
        keep = sorted((program_fd, job_fd))
        os.closerange(3, keep[0])
        os.closerange(keep[0] + 1, keep[1])
        os.closerange(keep[1] + 1, 1 << 16)
        os.chdir("/tmp")
        sys.argv = ["-c", str(program_fd), str(job_fd), mode]
        harness["main"]()
        code = 0
    except BaseException:  # noqa: BLE001 (the parent sees a run without its final report)
        code = 1
    os._exit(code)


def others():
    return [p for p in os.listdir("/proc") if p.isdigit() and p != "1"]


def reap():
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def sweep():
    """Kill and reap every other process in the sandbox; False if some survive SWEEP_S."""
    end = time.monotonic() + SWEEP_S
    while True:
        try:
            os.kill(-1, 9)
        except ProcessLookupError:
            pass
        reap()
        if not others():
            return True
        if time.monotonic() > end:
            return False
        time.sleep(0.0005)


def empty(path):
    """Remove everything under `path` (a directory the program made unreadable is made readable first)."""
    os.chmod(path, 0o755)
    for name in os.listdir(path):
        p = path + "/" + name
        if os.path.isdir(p) and not os.path.islink(p):
            empty(p)
            os.rmdir(p)
        else:
            os.unlink(p)


def own_state():
    """What another process of the same uid may change in this one without ptrace (prlimit(2), setpriority(2),
    sched_setaffinity(2), sched_setscheduler(2) check only the uid, not dumpability): its rlimits, nice value, CPU
    affinity and scheduling policy. (Its I/O priority too, which is not checked: it only slows the tmpfs.)"""
    limits = [resource.getrlimit(getattr(resource, n)) for n in sorted(dir(resource)) if n.startswith("RLIMIT_")]
    return limits, os.getpriority(os.PRIO_PROCESS, 0), sorted(os.sched_getaffinity(0)), os.sched_getscheduler(0)


def clean(expected):
    """None when the sandbox is as new, else why not."""
    if not sweep():
        return "processes survive the sweep"
    if own_state() != expected:
        return "the zygote's rlimits or scheduling were changed"
    try:
        for path in WRITABLE:
            empty(path)
            if os.listdir(path):
                return f"{path} not empty"
    except (OSError, RecursionError) as e:
        return f"cannot empty a writable directory: {type(e).__name__}"
    for kind in ("shm", "msg", "sem"):
        try:
            with open("/proc/sysvipc/" + kind) as f:
                if len(f.read().splitlines()) > 1:
                    return f"SysV {kind} object left behind"
        except OSError:
            pass
    return None


def in_own_pid_namespace():
    """kill(-1) must only ever reach this sandbox: refuse to run unless this process is its PID namespace's init
    (in the host's namespace PID 1 is never a Python process started by the code reward)."""
    return os.getpid() == 1


def main():
    ctrl = socket.socket(fileno=int(sys.argv[1]))
    if not in_own_pid_namespace():
        ctrl.sendall(b"bad not inside a bwrap PID namespace\n")
        return
    harness = {"__name__": "code_harness", "__builtins__": __builtins__}
    exec(compile(sys.argv[2], "code_harness.py", "exec"), harness)
    limits = tuple(int(x) for x in sys.argv[3:6])
    resource.setrlimit(resource.RLIMIT_NPROC, (int(sys.argv[6]), int(sys.argv[6])))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    prctl(PR_SET_DUMPABLE, 0)
    signal.signal(signal.SIGINT, signal.SIG_DFL)  # init: signals without a handler, sent from inside, are dropped
    expected = own_state()
    why = clean(expected)
    ctrl.sendall(b"ready\n" if why is None else f"bad {why}\n".encode())
    while why is None:
        msg, fds, _, _ = socket.recv_fds(ctrl, 64, 4)
        if not msg:
            return  # the parent closed the socket
        if len(fds) != 4:
            ctrl.sendall(b"bad job without its four fds\n")
            return
        pid = os.fork()
        if pid == 0:
            ctrl.close()
            child(harness, fds, msg.decode(), limits)
        for fd in fds:
            os.close(fd)
        _, status = os.waitpid(pid, 0)
        why = clean(expected)
        ctrl.sendall(f"ok {os.waitstatus_to_exitcode(status)}\n".encode() if why is None else f"bad {why}\n".encode())


main()
