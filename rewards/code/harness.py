"""The test harness that runs *inside* the sandbox (stdlib only; its source is handed to the sandboxed interpreter,
this module is never imported by the sandboxed side). It runs a program against tests and reports, one line per
test on its stdout, what the program produced; rewards/code/execution.py compares in the parent.

    python -I -S -c <this file's source> PROGRAM_FD JOB_FD MODE

- `PROGRAM_FD`: the program's source. `JOB_FD`: {"mode", "nonce", "tests", "per_test_s", "max_output", ...}
  (marshal). Reports are `repr`s of dicts of plain values, one a line (the parent reads them with `literal_eval`);
  the harness imports nothing slow (no json, socket or signal: start-up is most of a run's cost).
- Each reported line carries the run's `nonce` (random per run, known only to the parent and this process); the
  parent ignores lines without it and requires the final {"done": true} line. The program never holds this process's
  stdout, the job fd or the nonce, so it cannot forge a report.

Modes (the program always runs in a child process of this harness, never in it):

- `stdio`: one fresh child per test: stdin is the test's input, stdout is read back (at most `max_output` bytes);
  reported as {"i", "out", "rc", "status"}. Expected outputs never enter the sandbox: the parent compares.
- `call` and `assert`: one *solver* child runs the program, forked before the tests are read (so its memory never
  held them), with stdout/stderr to /dev/null. This harness is the *judge*: it evaluates each test in its own pristine
  interpreter (the program cannot redefine `assert`, `print`, `math.isclose` or builtins here) and calls the
  program's functions through proxies: arguments and results cross a pipe as plain data (`encode`: exact types
  int/float/str/bool/None/bytes/complex/list/tuple/dict/set only), so an object whose `__eq__` is always True, an
  `int` subclass, or a generator, is refused and the test fails. `call` reports each result for the parent to
  compare; `assert` reports pass/fail of each test statement (e.g. MBPP's `assert f(3) == 9`).

A test that times out, or a solver that dies (`os._exit`, a kill), fails that test and every later one.
"""
import builtins
import marshal
import os
import select
import sys
import time

PR_SET_DUMPABLE = 4
_PLAIN = (int, float, str, bool, type(None))


def no_dump():
    """Make this process non-dumpable: without CAP_SYS_PTRACE (the sandbox has none) another process of the same
    uid can no longer ptrace it or open /proc/<pid>/{fd,mem,environ}: the program cannot reach the judge's memory."""
    try:
        import ctypes
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)
    except Exception:  # noqa: BLE001 (no ctypes: the sandbox's --cap-drop still denies ptrace of a non-child)
        pass


def encode(x, depth=0):
    """Plain data -> a literal of plain values, by *exact* type (floats, containers, bytes as tagged tuples), for
    `repr` on one side and `ast.literal_eval` on the other. TypeError for anything else.

    >>> encode([1, (2.5, "a"), {3}])
    ('l', [1, ('t', [('f', '2.5'), 'a']), ('s', [3])])
    """
    if depth > 100:
        raise TypeError("nested too deep")
    t = type(x)
    if t is int or t is str or t is bool or x is None:
        return x
    if t is float:
        return ("f", repr(x))
    if t is list or t is tuple or t is set or t is frozenset:
        return ({list: "l", tuple: "t"}.get(t, "s"), [encode(v, depth + 1) for v in x])
    if t is dict:
        return ("d", [[encode(k, depth + 1), encode(v, depth + 1)] for k, v in x.items()])
    if t is bytes:
        return ("b", x.hex())
    if t is complex:
        return ("c", repr(x.real), repr(x.imag))
    raise TypeError(f"not plain data: {t.__name__}")


def decode(x):
    """The inverse of `encode` (on the output of `ast.literal_eval`), building fresh builtin objects; ValueError on
    anything `encode` does not produce."""
    t = type(x)
    if t is int or t is str or t is bool or x is None:
        return x
    if t is not tuple or not x or x[0] not in _TAGS:
        raise ValueError("not an encoded value")
    tag = x[0]
    if tag == "f":
        return float(x[1])
    if tag == "b":
        return bytes.fromhex(x[1])
    if tag == "c":
        return complex(float(x[1]), float(x[2]))
    if tag == "d":
        return {decode(k): decode(v) for k, v in x[1]}
    items = [decode(v) for v in x[1]]
    return items if tag == "l" else tuple(items) if tag == "t" else set(items)


_TAGS = ("f", "l", "t", "s", "d", "b", "c")


def send(fd, text):
    data = text.encode("utf-8", "surrogatepass")
    data = len(data).to_bytes(4, "big") + data
    while data:
        data = data[os.write(fd, data):]


def recv(fd, limit, deadline):
    """One length-prefixed message (str), or None on EOF/timeout/oversize."""
    def exact(n):
        buf = b""
        while len(buf) < n:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                return None
            chunk = os.read(fd, min(n - len(buf), 1 << 20))
            if not chunk:
                return None
            buf += chunk
        return buf
    head = exact(4)
    if head is None or int.from_bytes(head, "big") > limit:
        return None
    body = exact(int.from_bytes(head, "big"))
    return None if body is None else body.decode("utf-8", "surrogatepass")


def quiet_fds(keep=()):
    """In a child: stdin from /dev/null, stdout/stderr to /dev/null, every other fd closed except `keep`."""
    null = os.open("/dev/null", os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    low = 3
    for fd in sorted(keep) + [1 << 16]:
        os.closerange(low, fd)
        low = fd + 1


def solver(rfd, wfd, code):
    """Child: run the program (a top-level `sys.exit` just ends it), then serve calls until the pipe closes."""
    g = {"__name__": "solution", "__builtins__": builtins}
    try:
        exec(code, g)
    except SystemExit:
        pass
    except BaseException as e:  # noqa: BLE001
        send(wfd, repr(("load_error", type(e).__name__)))
        os._exit(0)
    send(wfd, repr(("ready",)))
    from ast import literal_eval
    while True:
        msg = recv(rfd, 1 << 26, time.monotonic() + 3600)
        if msg is None:
            os._exit(0)
        try:
            name, args, kwargs = literal_eval(msg)
            fn = g[name] if name in g else getattr(g["Solution"](), name)
            reply = repr(("ok", encode(fn(*decode(args), **decode(kwargs)))))
        except BaseException as e:  # noqa: BLE001 (SystemExit in a call is a failed call; unencodable results)
            reply = repr(("err", type(e).__name__))
        send(wfd, reply)


class Judge:
    """The program in a solver child, its functions called through `call` (plain data both ways)."""

    def __init__(self, code, per_test_s, limit):
        to_solver, self.out = os.pipe()
        self.inp, from_solver = os.pipe()
        self.per_test_s, self.limit, self.dead = per_test_s, limit, False
        self.pid = os.fork()
        if self.pid == 0:
            quiet_fds(keep=(to_solver, from_solver))
            solver(to_solver, from_solver, code)
        os.close(to_solver)
        os.close(from_solver)

    def _recv(self, seconds):
        from ast import literal_eval
        msg = recv(self.inp, self.limit, time.monotonic() + seconds)
        if msg is None:
            self.kill()
            raise TimeoutError("no reply from the program (timeout or it died)")
        return literal_eval(msg)

    def start(self):
        """None once the program has run, else why not ("SyntaxError", "Timeout", ...)."""
        try:
            reply = self._recv(self.per_test_s * 2)
        except TimeoutError:
            return "Timeout"
        return None if reply[0] == "ready" else str(reply[1])

    def call(self, name, *args, **kwargs):
        if self.dead:
            raise RuntimeError("solver is gone")
        send(self.out, repr((name, encode(list(args)), encode(kwargs))))
        reply = self._recv(self.per_test_s)
        if reply[0] != "ok":
            raise RuntimeError(f"the program raised {reply[1]}")
        return decode(reply[1])

    def kill(self):
        if not self.dead:
            self.dead = True
            try:
                os.kill(self.pid, 9)
                os.waitpid(self.pid, 0)
            except OSError:
                pass


def proxies(judge, src):
    """A namespace mapping each free name of the test source (not a builtin) to a remote-call proxy."""
    import ast
    tree = ast.parse(src)
    bound = {a.asname or a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom))
             for a in n.names}
    bound |= {n.name for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.ClassDef))}
    bound |= {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}
    bound |= {n.arg for n in ast.walk(tree) if isinstance(n, ast.arg)}
    names = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)} - bound

    def make(name):
        return lambda *args, **kwargs: judge.call(name, *args, **kwargs)
    return {n: make(n) for n in names if not hasattr(builtins, n)}


def run_stdio(code, job, report):
    limit = job["max_output"]
    for i, stdin in enumerate(job["tests"]):
        r, w = os.pipe()
        data = os.memfd_create("stdin")
        os.write(data, stdin.encode())
        os.lseek(data, 0, 0)
        t0 = time.monotonic()
        pid = os.fork()
        if pid == 0:
            os.setsid()
            os.dup2(data, 0)
            os.dup2(w, 1)
            null = os.open("/dev/null", os.O_WRONLY)
            os.dup2(null, 2)
            os.closerange(3, 1024)
            rc = 0
            try:
                exec(code, {"__name__": "__main__", "__builtins__": builtins})
            except SystemExit as e:
                rc = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
            except BaseException:  # noqa: BLE001
                rc = 1
            try:
                sys.stdout.flush()
            except BaseException:  # noqa: BLE001
                pass
            os._exit(rc & 255)
        os.close(w)
        os.close(data)
        out, status = b"", "ok"
        end = t0 + job["per_test_s"]
        while True:
            left = end - time.monotonic()
            if left <= 0:
                status = "timeout"
                break
            if select.select([r], [], [], left)[0]:
                chunk = os.read(r, 1 << 16)
                if not chunk:
                    break
                out += chunk
                if len(out) > limit:
                    status = "overflow"
                    break
        os.close(r)
        try:  # the test's whole process group: whatever it forked dies with it
            os.killpg(pid, 9)
        except OSError:
            pass
        _, st = os.waitpid(pid, 0)
        report({"i": i, "out": out[:limit].decode("utf-8", "replace"), "rc": os.waitstatus_to_exitcode(st),
                "status": status, "s": round(time.monotonic() - t0, 4)})
        if status == "timeout":
            for k in range(i + 1, len(job["tests"])):
                report({"i": k, "out": "", "rc": -9, "status": "skipped"})
            return


def run_judged(code, job_fd, report):
    """call/assert modes: the solver is forked *before* the job (the tests, the nonce) is read."""
    judge = Judge(code, 2.0, 1 << 24)
    job = marshal.loads(read_fd(job_fd))
    os.close(job_fd)
    judge.per_test_s, judge.limit = job["per_test_s"], job["max_output"]
    err = judge.start()
    if err is not None:
        report(job, {"compile_error" if err in ("SyntaxError", "IndentationError") else "load_error": err})
    for i, test in enumerate(job["tests"]):
        if judge.dead:
            report(job, {"i": i, "pass": False, "status": "skipped"})
            continue
        t0 = time.monotonic()
        try:
            if job["mode"] == "call":
                result = judge.call(job["fn_name"], *test)
                report(job, {"i": i, "result": encode(result), "status": "ok", "s": round(time.monotonic() - t0, 4)})
            else:
                ns = {"__name__": "tests", **proxies(judge, job["setup"] + "\n" + test)}
                exec(job["setup"], ns)
                exec(test, ns)
                report(job, {"i": i, "pass": True, "status": "ok", "s": round(time.monotonic() - t0, 4)})
        except TimeoutError:
            report(job, {"i": i, "pass": False, "status": "timeout"})
        except BaseException as e:  # noqa: BLE001 (AssertionError, the program's errors, unencodable results)
            report(job, {"i": i, "pass": False, "status": "fail", "error": type(e).__name__})
    judge.kill()
    return job


def read_fd(fd):
    chunks = []
    while True:
        b = os.read(fd, 1 << 20)
        if not b:
            return b"".join(chunks)
        chunks.append(b)


def main():
    program_fd, job_fd, mode = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    if mode == "assert":
        no_dump()  # before anything secret is read (the job holds the tests and the nonce)
    source = read_fd(program_fd).decode("utf-8", "replace")
    os.close(program_fd)
    report_fd = os.dup(1)  # the parent's pipe; fd 1 itself becomes /dev/null for anything below
    null = os.open("/dev/null", os.O_WRONLY)
    os.dup2(null, 1)
    os.close(null)

    def report(job, obj):
        send_line(report_fd, repr({"nonce": job["nonce"], **obj}))
    try:
        code = compile(source, "<program>", "exec")
    except (SyntaxError, ValueError, OverflowError, RecursionError, MemoryError) as e:
        code, why = None, type(e).__name__
    if code is None or mode != "stdio":
        if code is None:
            job = marshal.loads(read_fd(job_fd))
            report(job, {"compile_error": why})
        else:
            job = run_judged(code, job_fd, report)
    else:
        job = marshal.loads(read_fd(job_fd))
        os.close(job_fd)
        run_stdio(code, job, lambda obj: report(job, obj))
    report(job, {"done": True})


def send_line(fd, line):
    data = (line + "\n").encode("utf-8", "surrogatepass")
    while data:
        data = data[os.write(fd, data):]


if __name__ == "__main__":
    main()
