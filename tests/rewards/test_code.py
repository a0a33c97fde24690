"""The `code` reward: the three test formats (fixtures, one loaded through data/loading.py), and the sandbox against
hostile programs and reward hacks. Every hostile program must score 0.0, return within its bound, and leave no
process or file behind, both in the warm sandbox (the default: one zygote per process, swept between completions)
and cold (`warm: false`, a fresh sandbox per completion): the `code` and `partial` fixtures run every test twice. The
warm sandbox's own cases (sweeps, restarts, leaks) are in test_warm_sandbox.py. Needs bubblewrap (CI installs it:
`make setup-sandbox`); skipped with a reason without it."""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

from rewards import RewardScorer, get_reward
from rewards.code.execution import completion_wall_s
from rewards.code.execution import summarize as code_summarize
from rewards.code.cases import extract_program, outputs_match, results_match
from rewards.code.cases import tests_of as parse_tests
from sandbox.bwrap import Sandbox, SandboxError
from sandbox.warm import PROCESSES, WarmSandbox

FIXTURES = Path(__file__).parent / "fixtures"
ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.skipif(shutil.which("bwrap") is None,
                                reason="bubblewrap (bwrap) is not installed: `apt-get install bubblewrap`")
TIMEOUT_S = 2.0  # the reward's wall-clock limit per completion in these tests
BOUND_S = TIMEOUT_S + 1.5  # what a hostile completion may take, start-up included


def rows(name: str) -> list[dict]:
    return [json.loads(line) for line in (FIXTURES / name).read_text().splitlines()]


def fence(src: str) -> str:
    return f"<think> let me write it </think>\n```python\n{src}\n```"


def columns(row: dict, n: int = 1) -> dict[str, list]:
    return {k: [v] * n for k, v in row.items() if k not in ("prompt", "answer")}


def _started(reward):
    """The reward after one correct completion: a warm sandbox is then up, so process counts compare like with like."""
    assert reward([fence("print(int(input()) + 1)")], input_output=[{"inputs": ["1"], "outputs": ["2"]}]) == [1.0]
    return reward


@pytest.fixture(scope="module", params=[True, False], ids=["warm", "cold"])
def code(request):
    return _started(get_reward("code", timeout_s=TIMEOUT_S, per_test_s=1.0, memory_mb=256, warm=request.param))


@pytest.fixture(scope="module", params=[True, False], ids=["warm", "cold"])
def partial(request):
    return _started(get_reward("code", partial=True, timeout_s=TIMEOUT_S, per_test_s=1.0, warm=request.param))


# -- formats -----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("fixture", ["code_verification_info.jsonl", "code_input_output.jsonl", "code_asserts.jsonl"])
def test_fixture_reference_solutions_pass_and_wrong_ones_fail(code, fixture):
    for row in rows(fixture):
        wrong = "def _unused():\n    pass\nprint(0)\n"
        got = code([fence(row["answer"]), fence(wrong), "no code at all"], **columns(row, 3))
        assert got == [1.0, 0.0, 0.0], row["prompt"]


# -- the time budget (issue 25 item 8) ------------------------------------------------------------------------------
@pytest.mark.parametrize("n_tests, per_test_s, cap_s, wall_s", [
    (1, 2.0, None, 7.0),  # (1 + 2) x 2 + 1
    (20, 2.0, None, 45.0),  # (20 + 2) x 2 + 1
    (50, 2.0, None, 60.0),  # 105, capped at the default 30 x 2
    (200, 2.0, None, 60.0),
    (200, 0.5, None, 15.0),  # the default cap follows per_test_s: 30 x 0.5
    (1, 1.0, 2.0, 2.0), (3, 1.0, 100.0, 6.0),  # an explicit cap
])
def test_completion_wall_budget(n_tests, per_test_s, cap_s, wall_s):
    assert completion_wall_s(n_tests, per_test_s, cap_s) == wall_s


@pytest.mark.parametrize("warm", [True, False], ids=["warm", "cold"])
def test_a_correct_program_passes_a_row_of_many_tests_under_the_defaults(warm):
    """60 tests whose reference solution takes >= 80 ms each (a sleep stands in for the work, so the suite needs
    >= 4.8 s on any machine): under the old budget (4 s for the whole suite) both rows scored 0.0, counted as
    sandbox kills; now each test has `per_test_s` (2 s) of budget, capped at 60 s a completion."""
    reward = get_reward("code", warm=warm)  # the defaults
    for row in rows("code_many_tests.jsonl"):
        n = len(parse_tests(row).inputs)
        assert n == 60
        assert reward([fence(row["answer"])], **columns(row)) == [1.0], row["prompt"]
        m = reward.drain_metrics()
        assert (m["tests_run"], m["tests_passed"]) == (60.0, 60.0)
        assert m.get("run_timeouts", 0.0) == m.get("sandbox_kills", 0.0) == m.get("tests_not_reached", 0.0) == 0.0
    if warm:
        reward._fn.runner.close()


def test_tests_not_reached_are_counted_apart_from_kills():
    # the same 60-test row under a 2 s cap: the run is cut at its budget, which is not a sandbox kill; every test it
    # did not reach fails and is counted (60 = passed before the cut + not reached: none fails otherwise)
    row = rows("code_many_tests.jsonl")[0]
    reward = get_reward("code", timeout_s=2.0, warm=False)
    assert reward([fence(row["answer"])], **columns(row)) == [0.0]
    m = reward.drain_metrics()
    assert m["run_timeouts"] == 1.0 and m.get("sandbox_kills", 0.0) == 0.0
    assert m["tests_not_reached"] >= 1.0 and m["tests_passed"] + m["tests_not_reached"] == 60.0
    # a program that kills the harness is a kill; the test it never reported was not reached
    kill = fence("import os\nos.kill(os.getppid(), 9)\nprint(3)")
    io = {"inputs": ["1 2\n"], "outputs": ["3\n"]}
    assert reward([kill], input_output=[io]) == [0.0]
    m = reward.drain_metrics()
    assert m["sandbox_kills"] == 1.0 and m.get("run_timeouts", 0.0) == 0.0 and m["tests_not_reached"] == 1.0
    # a per-test timeout skips the rest of the row: 1 timed out, 2 not reached
    short = get_reward("code", per_test_s=0.5, warm=False)
    assert short([fence("while True:\n    pass")], input_output=[{"inputs": ["1"] * 3, "outputs": ["3"] * 3}]) == [0.0]
    m = short.drain_metrics()
    assert (m["test_timeouts"], m["tests_not_reached"]) == (1.0, 2.0)
    assert m.get("run_timeouts", 0.0) == m.get("sandbox_kills", 0.0) == 0.0
    assert code_summarize(m)["tests_not_reached"] == 2.0  # reported per step as rewards/code/tests_not_reached


@pytest.mark.parametrize("counts, expected", [
    ({"tests_run": 8, "tests_passed": 3, "no_program": 1}, {"pass_rate": 0.375, "no_program": 1.0}),  # 3 / 8
    ({"tests_run": 2, "tests_passed": 2}, {"pass_rate": 1.0}),
    ({"no_program": 2}, {"no_program": 2.0}),  # no test ran: no pass_rate (not NaN, which made the ranks' mean NaN)
    ({}, {}),
])
def test_step_metrics_from_counters(counts, expected):
    zeros = dict.fromkeys(("compile_errors", "test_timeouts", "run_timeouts", "tests_not_reached", "sandbox_kills",
                           "no_program"), 0.0)
    assert code_summarize(counts) == {**zeros, **expected}


def test_a_rank_that_ran_no_test_leaves_the_runs_pass_rate_alone():
    from tests.stages.test_grpo_metrics import reduce_everywhere
    ranks = [{"loss": 1.0, **{f"rewards/code/{k}": v for k, v in code_summarize({"tests_run": 4, "tests_passed": 1}).items()}},
             {"loss": 1.0, **{f"rewards/code/{k}": v for k, v in code_summarize({"no_program": 1}).items()}}]
    for got, _ in reduce_everywhere(ranks):
        assert got["rewards/code/pass_rate"] == 0.25  # 1 / 4 from rank 0 alone (was NaN: rank 1 sent NaN)
        assert got["rewards/code/no_program"] == 0.5  # (0 + 1) / 2 ranks


def test_the_scorer_deadline_follows_the_code_budget():
    """The scorer's per-item deadline for `code` is its cap + 5 s (65 s at the defaults), not `scoring.timeout_s`
    (5 s), which would cut the 60-test row's run (>= 4.8 s) and score it 0.0; other rewards keep `timeout_s`."""
    row = rows("code_many_tests.jsonl")[1]
    with RewardScorer({"code": {}, "accuracy": 1.0}, num_workers=1, timeout_s=1.0) as scorer:
        assert scorer.item_timeouts == {"code": 65.0, "accuracy": 1.0}
        res = scorer.score([fence(row["answer"])], {"test_list": [row["test_list"]], "answer": ["7"]})
    assert res.per_reward["code"] == [1.0] and res.metrics["rewards/code/timeouts"] == 0.0
    with RewardScorer({"code": {"timeout_s": 2.0, "per_test_s": 0.5}}, num_workers=0, timeout_s=30.0) as scorer:
        assert scorer.item_timeouts == {"code": 30.0}  # the larger of the two


def test_a_fixture_loaded_as_a_recipe_loads_it(code):
    from data.loading import load_examples
    examples = load_examples(str(FIXTURES / "code_input_output.jsonl"), "train")
    assert len(examples) == 3 and all(isinstance(e["input_output"], str) for e in examples)
    cols = {k: [e[k] for e in examples] for k in ("input_output",)}
    assert code([fence(e["answer"]) for e in examples], **cols) == [1.0, 1.0, 1.0]
    assert code([fence("print('c')")] * 3, **cols) == [0.0, 0.0, 0.0]


@pytest.mark.parametrize("program, expected", [
    ("def add(a, b):\n    return a + b", 1.0),           # all 4 pass
    ("def add(a, b):\n    return a + b if a else 0", 0.75),  # 3 of 4 (not add(0, 5))
    ("def add(a, b):\n    return 0", 0.25),              # only 0 + 0
    ("def add(a, b):\n    return a +", 0.0),             # syntax error
])
def test_partial_credit_is_the_pass_fraction(partial, code, program, expected):
    row = {"test_list": ["assert add(1, 2) == 3", "assert add(0, 0) == 0", "assert add(0, 5) == 5",
                         "assert add(4, 4) == 8"]}
    assert partial([fence(program)], **columns(row)) == [expected]
    assert code([fence(program)], **columns(row)) == [float(expected == 1.0)]


def test_dict_columns_and_json_strings_are_the_same(code):
    io = {"inputs": ["2\n"], "outputs": ["4\n"]}
    prog = fence("print(int(input()) * 2)")
    assert code([prog, prog], input_output=[io, json.dumps(io)]) == [1.0, 1.0]


def test_rows_without_tests_are_none(code):
    assert code([fence("print(1)")] * 3, answer=["1", "2", "3"]) == [None, None, None]
    assert code([fence("print(1)")], verification_info=[{"language": "cpp", "test_cases": [
        {"input": "", "output": "1", "type": "stdin_stdout"}]}]) == [None]


@pytest.mark.parametrize("text, program", [
    ("<think> ```python\nprint(1)\n``` </think> ```python\nprint(2)\n```", "print(2)\n"),
    ("```py\nprint(1)\n```\nthen\n```python\nprint(3)\n```", "print(3)\n"),
    ("<think> x </think><answer>\n```python\nprint(4)\n```\n</answer>", "print(4)\n"),
    ("<answer>print(5)</answer>", "print(5)"),
    ("<think> ```python\nprint(6)\n``` </think> no code after the reasoning", None),
])
def test_program_extraction(text, program):
    assert extract_program(text) == program


@pytest.mark.parametrize("got, want, same", [
    ("3\n", "3", True), ("3 \n\n", "3\n", True), ("1  2\n3", "1 2\n3\n", True), ("1.0000000001", "1", True),
    ("0.333333", "0.3333333333", True), ("12", "1 2", False), ("1\n2", "1 2", False), ("3.1", "3", False),
    ("YES", "yes", False), ("", "0", False),
])
def test_stdout_comparison(got, want, same):
    assert outputs_match(got, want) is same


@pytest.mark.parametrize("want, got, same", [
    # integer tokens compare exactly (LiveCodeBench/APPS): an off-by-one is wrong at any magnitude
    ("1000000", "1000001", False),  # was True: |1000001 - 1000000| <= 1e-6 * 1000001 under the float tolerance
    ("1000000", "999999", False), ("123456789", "123456790", False),
    ("9007199254740993", "9007199254740992", False),  # 2**53 + 1 vs 2**53: equal as floats
    ("18446744073709551615", "18446744073709551614", False),  # 2**64 - 1 vs 2**64 - 2
    ("-9223372036854775808", "-9223372036854775808", True), ("18446744073709551615", "18446744073709551615", True),
    ("1" * 5000, "1" * 4999 + "2", False), ("1" * 5000, "1" * 5000 + " ", True),  # beyond int()'s 4,300 digits
    ("5", "05", True), ("0", "-0", True), ("7", "+7", True), ("-7", "7", False),  # value, not spelling
    ("3 1000000\n", "3 1000001\n", False),  # one token of a line
    # a decimal point or an exponent on either side brings in the tolerance 1e-6 (relative or absolute)
    ("1.0", "1.0000001", True), ("1", "1.0000001", True), ("1000000", "1000000.5", True),
    ("1000000.0", "1000001", True),  # the expected output is a float: 1e-6 relative of 1e6 is 1
    ("1e6", "1000001", True), ("1.0", "1.001", False), ("2.5", "2", False),
])
def test_integers_compare_exactly_floats_within_tolerance(want, got, same):
    assert outputs_match(got, want) is same


@pytest.mark.parametrize("got, want, same", [
    ((1, 2), [1, 2], True), (5, [5], True), ([5], [5], True), (0.1 + 0.2, 0.3, True), ("1", 1, False),
    (True, 1, False), ({"a": [1]}, {"a": [1]}, True), ([1, 2], [2, 1], False), (None, None, True),
])
def test_call_result_comparison(got, want, same):
    assert results_match(got, want) is same


def test_formats_are_recognised():
    assert parse_tests({"input_output": {"inputs": [[1]], "outputs": [1], "fn_name": "f"}}).mode == "call"
    assert parse_tests({"input_output": {"inputs": ["1"], "outputs": ["1", "2"]}}) is None  # mismatched lengths
    assert parse_tests({"test_list": "[\"assert f(1) == 1\"]"}).inputs == ["assert f(1) == 1"]
    assert parse_tests({"test": "def check(c): pass", "entry_point": "f"}).setup == "def check(c): pass"


# -- hostile programs --------------------------------------------------------------------------------------------
def _nobody_processes() -> int:
    """Sandboxes and sandboxed processes of this test process alive now (its descendants: other work on the machine
    may run sandboxes too): bwrap, or anything whose command line holds the harness (the warm zygote's does)."""
    parent, cmds = {}, {}
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            cmds[int(proc.name)] = (proc / "cmdline").read_bytes()
            parent[int(proc.name)] = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
    me = os.getpid()

    def ours(pid: int) -> bool:
        for _ in range(64):
            pid = parent.get(pid, 0)
            if pid == me:
                return True
            if pid <= 1:
                return False
        return False
    return sum(ours(pid) and (cmd.startswith(b"bwrap") or b"runs *inside* the sandbox" in cmd)
               for pid, cmd in cmds.items())


def _strays(reward) -> int:
    """Our sandboxed processes that are not a live warm sandbox's own (bwrap and the zygote)."""
    runner = reward._fn.runner
    return _nobody_processes() - (PROCESSES if isinstance(runner, WarmSandbox) and runner.alive else 0)


MARKER = "/work/pwned-by-code-reward"
HOSTILE = {
    "infinite loop": "while True:\n    pass",
    "fork bomb": "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass",
    "memory bomb": "x = []\nwhile True:\n    x.append(bytearray(50 * 2 ** 20))",
    "1 GB of output": "import sys\nfor _ in range(1024):\n    sys.stdout.write('3\\n' * 2 ** 19)",
    "sleep forever": "import time\ntime.sleep(10 ** 6)",
    "closing stdout": "import os\nos.close(1)\nos.close(2)\nprint(3)",
    "kill the parent": "import os\nos.kill(os.getppid(), 9)\nprint(3)",
    "kill everything": "import os\nos.kill(-1, 9)\nprint(3)",
    "read /etc/passwd": "print(3 if 'root:' in open('/etc/passwd').read() else 0)",
    "read the project": f"print(3 if open({str(ROOT / 'pyproject.toml')!r}).read() else 0)",
    "read /root": "import os\nprint(3 if os.listdir('/root') else 0)",
    "read the dataset": f"print(3 if open({str(FIXTURES / 'code_asserts.jsonl')!r}).read() else 0)",
    "write outside the work dir": f"open({MARKER!r}, 'w').write('x')\nprint(3)",
    "write into /usr": "open('/usr/pwned', 'w').write('x')\nprint(3)",
    "open a socket": "import socket\nsocket.create_connection(('1.1.1.1', 53), timeout=1)\nprint(3)",
    "exit(0) before printing": "import sys\nsys.exit(0)\nprint(3)",
    "os._exit(0)": "import os\nos._exit(0)",
}


@pytest.mark.parametrize("name", list(HOSTILE))
def test_hostile_programs_are_bounded_score_zero_and_leave_nothing(code, name):
    row = {"verification_info": {"language": "python", "test_cases": [
        {"input": "1 2\n", "output": "3\n", "type": "stdin_stdout"}]}}
    before = _strays(code)
    t0 = time.monotonic()
    assert code([fence(HOSTILE[name])], **columns(row)) == [0.0]
    assert time.monotonic() - t0 < BOUND_S
    time.sleep(0.05)
    assert _strays(code) <= before
    assert not os.path.exists(MARKER) and not os.path.exists("/usr/pwned")


def test_no_connection_reaches_a_server_on_this_machine(code):
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    server.settimeout(0.5)
    port = server.getsockname()[1]
    prog = f"import socket\ns = socket.create_connection(('127.0.0.1', {port}), timeout=1)\ns.sendall(b'hi')\nprint(3)"
    row = {"input_output": {"inputs": [""], "outputs": ["3"]}}
    assert code([fence(prog)], **columns(row)) == [0.0]
    with pytest.raises(socket.timeout):
        server.accept()
    server.close()


def test_a_process_outside_cannot_be_signalled(code):
    victim = subprocess.Popen(["sleep", "30"])
    try:
        prog = f"import os\nos.kill({victim.pid}, 9)\nprint(3)"
        assert code([fence(prog)], input_output=[{"inputs": [""], "outputs": ["3"]}]) == [0.0]
        assert victim.poll() is None
    finally:
        victim.kill()
        victim.wait()


# -- reward hacks (assert and call-based tests: the program runs apart from the judge) ---------------------------
SECRET = 987654321
SNOOP = r"""
import collections, glob, os, re, stat
NUM = re.compile(rb"(?<![0-9.])([1-9][0-9]{8})(?![0-9.])")  # the expected value is the only 9-digit number around
def find():
    seen = collections.Counter()
    def look(data):
        seen.update(NUM.findall(data))
    for path in glob.glob('/proc/*/cmdline') + glob.glob('/proc/*/environ') + glob.glob('/proc/*/fd/*') + \
            glob.glob('/tmp/**', recursive=True):
        try:
            if path.endswith(('cmdline', 'environ')) or stat.S_ISREG(os.stat(path).st_mode):  # pipes would block
                look(open(path, 'rb').read())
        except Exception:
            pass
    for fd in range(3, 64):
        try:
            look(os.pread(fd, 1 << 20, 0))
        except Exception:
            pass
    for pid in glob.glob('/proc/[0-9]*'):
        try:
            maps = open(pid + '/maps').read().splitlines()
            mem = open(pid + '/mem', 'rb')
        except Exception:
            continue
        for line in maps:
            try:
                lo, hi = (int(x, 16) for x in line.split()[0].split('-'))
                mem.seek(lo)
                look(mem.read(min(hi - lo, 1 << 24)))
            except Exception:
                pass
    return int(seen.most_common(1)[0][0]) if seen else 0
FOUND = []
def f(x):  # looks when called: by then the judge has read the tests
    if not FOUND:
        FOUND.append(find())
    return FOUND[0]
"""
FORGE = """
import os
for fd in range(0, 64):
    try:
        os.write(fd, b"{'i': 0, 'pass': True, 'status': 'ok'}\\n{'done': True}\\n")
    except OSError:
        pass
def f(x):
    return 0
"""
HACKS = {
    "sys.exit(0) before the tests": "import sys\nsys.exit(0)\ndef f(x):\n    return 0",
    "os._exit(0) before the tests": "import os\nos._exit(0)",
    "os._exit(0) inside the call": "import os\ndef f(x):\n    os._exit(0)",
    "redefine AssertionError": "import builtins\nbuiltins.AssertionError = type('E', (BaseException,), {})\n"
                               "def f(x):\n    return 0",
    "redefine print and builtins": "import builtins\nbuiltins.print = lambda *a, **k: None\n"
                                   "builtins.isinstance = lambda *a: True\nbuiltins.abs = lambda x: 0\n"
                                   "def f(x):\n    return 0",
    "redefine math.isclose": "import math\nmath.isclose = lambda *a, **k: True\ndef f(x):\n    return 0",
    "always-True __eq__": "class E:\n    __eq__ = lambda s, o: True\n    __ne__ = lambda s, o: False\n"
                          "    __hash__ = lambda s: 0\ndef f(x):\n    return E()",
    "int subclass equal to all": "class I(int):\n    __eq__ = lambda s, o: True\ndef f(x):\n    return I(0)",
    "read the tests": SNOOP,
    "forge reports": FORGE,
    "raise in __del__ / SystemExit in the call": "import sys\ndef f(x):\n    sys.exit(0)",
}
HACK_ROW = {"test_list": [f"assert f(1) == {SECRET}", f"assert abs(f(2) - {SECRET}) < 1",
                          f"assert math.isclose(f(3), {SECRET})"], "test_imports": ["import math"]}


@pytest.mark.parametrize("name", list(HACKS))
def test_hacks_score_zero(partial, name):
    assert partial([fence(HACKS[name])], **columns(HACK_ROW)) == [0.0]
    call_row = {"input_output": {"fn_name": "f", "inputs": [[1], [2]], "outputs": [SECRET, [SECRET]]}}
    assert partial([fence(HACKS[name])], **columns(call_row)) == [0.0]


def test_the_snooping_program_would_find_the_tests_in_a_dumpable_judge(monkeypatch):
    """The "read the tests" hack is not vacuous: with the judge left dumpable (no PR_SET_DUMPABLE 0) the program
    reads the expected values out of the judge's memory through /proc/<pid>/mem and passes every test. Cold only: in
    the warm sandbox the zygote is non-dumpable and every harness inherits that, so the weakened harness stays safe."""
    import rewards.code.execution as ce
    weak = ce.HARNESS.replace("        no_dump()  # before", "        pass  # before")
    assert weak != ce.HARNESS
    monkeypatch.setattr(ce, "HARNESS", weak)
    # generous limits: the snoop reads every mapping of every process in the sandbox, which took over the 2 s
    # per-test limit now and then on a loaded machine (the attack then "failed" for want of time, not of access)
    reward = get_reward("code", partial=True, timeout_s=20.0, per_test_s=10.0, warm=False)
    assert reward([fence(SNOOP)], **columns(HACK_ROW)) == [1.0]
    warm = get_reward("code", partial=True, timeout_s=4.0, per_test_s=2.0, warm=True)
    assert warm([fence(SNOOP)], **columns(HACK_ROW)) == [0.0]


def test_the_honest_program_passes_the_hack_row(partial):
    assert partial([fence(f"def f(x):\n    return {SECRET}")], **columns(HACK_ROW)) == [1.0]


# -- start-up, metrics, the scorer -------------------------------------------------------------------------------
def test_missing_bubblewrap_stops_at_build_time_with_the_fix(monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(SandboxError, match="apt-get install bubblewrap.*sandbox: none"):
        get_reward("code")
    with pytest.raises(SandboxError, match="apt-get install bubblewrap"):
        RewardScorer({"code": 1.0}, num_workers=0)


def test_sandbox_none_is_explicit_and_warns(caplog):
    with caplog.at_level("WARNING"):
        none = get_reward("code", sandbox="none", timeout_s=TIMEOUT_S)
    assert "WITHOUT isolation" in caplog.text
    assert none([fence("print(int(input()) + 1)")], input_output=[{"inputs": ["1"], "outputs": ["2"]}]) == [1.0]
    with pytest.raises(ValueError, match="unknown backend 'docker'"):
        get_reward("code", sandbox="docker")


def test_sandbox_run_limits():
    box = Sandbox()
    assert box.run(["-c", "print(6 * 7)"]).stdout == b"42\n"
    res = box.run(["-c", "import time\ntime.sleep(100)"], wall_s=0.5)
    assert res.timed_out and res.returncode is None and res.seconds < 1.5
    res = box.run(["-c", "print('x' * 10 ** 8)"])
    assert res.overflow and len(res.stdout) == box.limits.output_bytes


@pytest.mark.parametrize("warm", [True, False], ids=["warm", "cold"])
def test_scorer_pool_reports_code_metrics_and_kills_on_its_deadline(warm):
    good = fence("print(sum(map(int, input().split())))")
    rows_ = [{"input_output": {"inputs": ["1 2", "3 4"], "outputs": ["3", "7"]}}] * 4
    texts = [good, fence("print(3)"), fence("def broken(:"), fence("while True: pass")]
    cols = {"input_output": [r["input_output"] for r in rows_]}
    with RewardScorer({"code": {"timeout_s": 1.5, "per_test_s": 0.5, "warm": warm}}, num_workers=2,
                      timeout_s=5.0) as scorer:
        res = scorer.score(texts, cols)
    assert res.per_reward["code"] == [1.0, 0.0, 0.0, 0.0]
    m = res.metrics
    assert m["rewards/code/pass_rate"] == pytest.approx(3 / 8)  # 2 + 1 (print(3) passes "1 2") + 0 + 0 of 8
    assert m["rewards/code/compile_errors"] == 1.0 and m["rewards/code/test_timeouts"] == 1.0
    assert m["rewards/code/sandbox_kills"] == 0.0
    # a scorer deadline shorter than the reward's own limit: the item times out, the sandbox is killed
    before = _nobody_processes()
    with RewardScorer({"code": {"timeout_s": 10.0, "per_test_s": 10.0, "warm": warm}}, num_workers=1,
                      timeout_s=1.0) as scorer:
        scorer.item_timeouts["code"] = 1.0  # below the reward's own 15 s (the pool is built on the first score)
        t0 = time.monotonic()
        res = scorer.score([fence("while True: pass")], {"input_output": cols["input_output"][:1]})
        assert time.monotonic() - t0 < 4.0
    assert res.per_reward["code"] == [0.0] and res.metrics["rewards/code/timeouts"] == 1.0
    time.sleep(0.1)
    assert _nobody_processes() <= before
