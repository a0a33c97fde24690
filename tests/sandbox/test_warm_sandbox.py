"""The warm sandbox (sandbox/warm.py): what one job leaves behind never reaches the next. Each case runs a
hostile job and then an honest one in the same reward, and checks the honest one's result and whether the sandbox was
swept (same sandbox, `starts` unchanged) or replaced (`starts` + 1). The hostile-program and hack tables of
test_code.py run warm too. Needs bubblewrap; run inside a memory/pids cgroup like every test of hostile code."""
from __future__ import annotations

import os
import pickle
import shutil
import time

import pytest

from rewards import RewardScorer, get_reward
from sandbox.warm import PROCESSES, WarmSandbox
from tests.rewards.test_code import _nobody_processes, fence

pytestmark = pytest.mark.skipif(shutil.which("bwrap") is None,
                                reason="bubblewrap (bwrap) is not installed: `apt-get install bubblewrap`")
IO = {"inputs": ["1 2\n"], "outputs": ["3\n"]}
GOOD = fence("a, b = map(int, input().split())\nprint(a + b)")
# prints how many processes the sandbox holds besides the zygote (PID 1), the harness and this program
COUNT = """import os
print(len([p for p in os.listdir('/proc') if p.isdigit() and int(p) not in (1, os.getpid(), os.getppid())]))
"""
# prints every other process of the sandbox that it can ptrace or whose memory it can open
PTRACE = """import ctypes, os
libc = ctypes.CDLL(None, use_errno=True)
reached = []
for pid in (int(p) for p in os.listdir('/proc') if p.isdigit() and int(p) != os.getpid()):
    try:
        open(f'/proc/{pid}/mem', 'rb').close()
        reached.append(pid)
    except OSError:
        pass
    if libc.ptrace(16, pid, 0, 0) == 0:  # PTRACE_ATTACH
        reached.append(pid)
print(len(reached))
"""
DAEMON = """import os, time
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        null = os.open('/dev/null', os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(null, fd)
        open('/tmp/d.tmp', 'w').write(str(os.getpid()))
        os.rename('/tmp/d.tmp', '/tmp/daemon.pid')
        while True:
            time.sleep(0.01)
    os._exit(0)
os.wait()
while not os.path.exists('/tmp/daemon.pid'):
    time.sleep(0.005)
""" + COUNT
FILES = """import os
os.makedirs('/tmp/d/e')
open('/tmp/d/e/f', 'w').write('x')
open('/tmp/a', 'w').write('x')
open('/dev/shm/b', 'w').write('x')
os.symlink('/usr', '/tmp/link')
os.chmod('/tmp/d', 0)
os.chmod('/tmp', 0)
print(3)
"""
LIST = "import os\nprint(len(os.listdir('/tmp')) + len(os.listdir('/dev/shm')) + 3)"


def reward(**kw):
    return get_reward("code", timeout_s=kw.pop("timeout_s", 2.0), per_test_s=kw.pop("per_test_s", 1.0), **kw)


def warm(r) -> WarmSandbox:
    return r._fn.runner


def test_warm_is_the_default_and_only_for_bwrap():
    assert isinstance(warm(reward()), WarmSandbox)
    assert not isinstance(warm(reward(warm=False)), WarmSandbox)
    assert not isinstance(warm(reward(sandbox="none")), WarmSandbox)
    with pytest.raises(ValueError, match="'warm' must be true or false"):
        reward(warm="yes")


def test_a_background_daemon_is_swept_before_the_next_job():
    r = reward()
    assert r([GOOD], input_output=[IO]) == [1.0]
    one = {"inputs": [""], "outputs": ["1"]}  # the daemon is alive while its own job runs
    zero = {"inputs": [""], "outputs": ["0"]}
    assert r([fence(DAEMON)], input_output=[one]) == [1.0]
    assert r([fence(COUNT)], input_output=[zero]) == [1.0]
    assert warm(r).starts == 1  # swept, not restarted


def test_files_are_wiped_before_the_next_job():
    r = reward()
    assert r([fence(FILES)], input_output=[IO]) == [1.0]
    assert r([fence(LIST)], input_output=[IO]) == [1.0]  # 0 entries in /tmp and /dev/shm: prints 3
    assert warm(r).starts == 1


@pytest.mark.skipif(os.geteuid() != 0, reason="run as root, the sandbox is entered as uid nobody")
def test_jobs_run_as_nobody_in_an_empty_tmp():
    r = reward()
    who = fence("import os\nprint(os.getuid(), os.getcwd(), os.listdir('.'))")
    assert r([who, who], input_output=[{"inputs": [""], "outputs": ["65534 /tmp []"]}] * 2) == [1.0, 1.0]


@pytest.mark.parametrize("program", ["import os\nos.kill(os.getppid(), 9)\nprint(3)",
                                     "import os\nos.kill(-1, 9)\nprint(3)"], ids=["the harness", "kill -9 -1"])
def test_killing_the_harness_fails_only_that_job(program):
    r = reward(timeout_s=1.0)
    assert r([GOOD], input_output=[IO]) == [1.0]
    assert r([fence(program)], input_output=[IO]) == [0.0]
    assert r.drain_metrics()["sandbox_kills"] == 1.0
    assert r([GOOD, GOOD], input_output=[IO, IO]) == [1.0, 1.0]
    assert warm(r).starts == 1  # the zygote (PID 1) survives kill -9 -1: swept, not restarted


@pytest.mark.parametrize("sig", ["SIGKILL", "SIGSTOP", "SIGINT", "SIGTERM"])
def test_the_zygote_cannot_be_signalled_from_inside(sig):
    r = reward(timeout_s=1.0)
    program = f"import os, signal\nos.kill(1, signal.{sig})\nprint(3)"  # PID 1 is the zygote
    assert r([fence(program)], input_output=[IO]) == [1.0]  # the signal is dropped; the output is right
    assert r([GOOD], input_output=[IO]) == [1.0] and warm(r).starts == 1


@pytest.mark.parametrize("change", ["resource.prlimit(1, resource.RLIMIT_NPROC, (2, 2))",
                                    "resource.prlimit(1, resource.RLIMIT_NOFILE, (8, 8))",
                                    "resource.prlimit(1, resource.RLIMIT_CPU, (1, 1))",
                                    "os.setpriority(os.PRIO_PROCESS, 1, 19)",
                                    "os.sched_setaffinity(1, {min(os.sched_getaffinity(1))})",
                                    "os.sched_setscheduler(1, os.SCHED_IDLE, os.sched_param(0))"],
                         ids=["nproc", "nofile", "cpu", "nice", "affinity", "policy"])
def test_a_zygote_whose_limits_were_changed_is_replaced(change):
    """prlimit(2) and the like need only the same uid: a program can change the zygote's own limits, which every
    later job would inherit. The zygote notices after the job: that job fails, the next runs in a fresh sandbox."""
    r = reward()
    assert r([GOOD], input_output=[IO]) == [1.0]
    assert r([fence(f"import os, resource\n{change}\nprint(3)")], input_output=[IO]) == [0.0]
    assert r([GOOD], input_output=[IO]) == [1.0]
    assert warm(r).starts == 2


def test_no_process_of_the_sandbox_can_be_ptraced():
    r = reward()
    assert r([fence(PTRACE)], input_output=[{"inputs": [""], "outputs": ["0"]}]) == [1.0]


def test_a_timeout_kills_the_sandbox_and_the_next_job_passes():
    r = reward(timeout_s=1.0, per_test_s=5.0)  # the run's wall clock fires first
    assert r([fence("while True:\n    pass")], input_output=[IO]) == [0.0]
    assert r.drain_metrics()["run_timeouts"] == 1.0
    assert r([GOOD], input_output=[IO]) == [1.0]
    assert warm(r).starts == 2


def test_a_fork_bomb_is_bounded_and_swept():
    r = reward()
    bomb = "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass"
    t0 = time.monotonic()
    assert r([fence(bomb)], input_output=[IO]) == [0.0]
    assert time.monotonic() - t0 < 3.5
    assert r([fence(COUNT)], input_output=[{"inputs": [""], "outputs": ["0"]}]) == [1.0]


FORKS = """import os, time
n = 0
while True:
    try:
        pid = os.fork()
    except OSError:
        break
    if pid == 0:
        os.close(1)
        time.sleep(5)
        os._exit(0)
    n += 1
print(n)
"""


@pytest.mark.parametrize("warm_", [True, False], ids=["warm", "cold"])
def test_the_process_limit_is_the_same_warm_and_cold(warm_):
    """nproc (32) counts the sandbox's init (the zygote warm, bwrap's reaper cold), the harness and the test's
    process: the program may fork 29 more, either way."""
    r = reward(warm=warm_)
    assert r([fence(FORKS)], input_output=[{"inputs": [""], "outputs": ["29"]}]) == [1.0]


def test_a_sysv_object_left_behind_replaces_the_sandbox():
    shm = ("import ctypes\nlibc = ctypes.CDLL(None)\n"
           "assert libc.shmget(0, 4096, 0o1000 | 0o600) >= 0\nprint(3)")  # IPC_PRIVATE | IPC_CREAT
    r = reward()
    assert r([GOOD], input_output=[IO]) == [1.0]
    assert r([fence(shm)], input_output=[IO]) == [0.0]  # correct output, but the zygote could not clean up
    assert r([GOOD], input_output=[IO]) == [1.0]
    assert warm(r).starts == 2


def test_many_jobs_leak_no_fds_and_no_processes():
    r = reward()
    hostile = fence("import os\nos.kill(-1, 9)")
    assert r([GOOD], input_output=[IO]) == [1.0]
    fds, procs = len(os.listdir("/proc/self/fd")), _nobody_processes()
    flood = fence("import sys\nfor _ in range(1024):\n    sys.stdout.write('3\\n' * 2 ** 19)")  # overflow: restart
    texts = [hostile if i % 50 == 25 else flood if i == 100 else GOOD for i in range(200)]
    got = r(texts, input_output=[IO] * 200)
    assert got == [0.0 if i % 50 == 25 or i == 100 else 1.0 for i in range(200)]
    assert warm(r).starts == 2  # kill -9 -1 reaches the harness, never the zygote; the flood replaces the sandbox
    time.sleep(0.05)
    assert len(os.listdir("/proc/self/fd")) == fds
    assert _nobody_processes() == procs == PROCESSES
    warm(r).close()
    time.sleep(0.05)
    assert _nobody_processes() == 0


def test_a_forked_process_starts_its_own_sandbox_and_leaves_the_parents_alone():
    r = reward()
    assert r([GOOD], input_output=[IO]) == [1.0]
    pid = os.fork()
    if pid == 0:  # the child scores in a sandbox of its own, and closes that one only
        code = 0 if r([GOOD], input_output=[IO]) == [1.0] and warm(r).starts == 2 else 1
        warm(r).close()
        os._exit(code)
    assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0
    assert warm(r).alive and r([GOOD], input_output=[IO]) == [1.0] and warm(r).starts == 1


def test_the_runner_pickles_unstarted_and_a_worker_exit_kills_its_sandbox():
    r = reward()
    assert r([GOOD], input_output=[IO]) == [1.0]
    copy = pickle.loads(pickle.dumps(warm(r)))
    assert isinstance(copy, WarmSandbox) and not copy.alive and copy.starts == 0
    warm(r).close()
    with RewardScorer({"code": {"timeout_s": 2.0}}, num_workers=2, timeout_s=5.0) as scorer:
        assert scorer.score([GOOD] * 8, {"input_output": [IO] * 8}).per_reward["code"] == [1.0] * 8
        assert _nobody_processes() == 2 * PROCESSES  # one warm sandbox per worker
    deadline = time.monotonic() + 2.0
    while _nobody_processes() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert _nobody_processes() == 0
