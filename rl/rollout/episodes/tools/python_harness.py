"""The `python` tool's program runner, run *inside* the sandbox (stdlib only; its source is handed to the sandboxed
interpreter or to the warm sandbox's zygote, this module is never imported by the sandboxed side).

    python -I -S -c <this file's source> CODE_FD CELLS_FD MODE

CODE_FD holds the cell to run (UTF-8), CELLS_FD the earlier cells of the episode (marshal list of str; empty when the
tool is fresh per call). The earlier cells are run first with their output discarded and their errors ignored, which
rebuilds the interpreter state a REPL would have (variables, functions, imports); then the cell runs with stdout and
stderr to the caller. Like a notebook, the value of a final bare expression is printed (`123 * 456` shows 56088).
An exception prints its traceback (without this runner's frames) and exits with status 1.
"""
import os
import sys


def _read(fd):
    chunks = []
    while True:
        chunk = os.read(fd, 1 << 16)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


def _run(code, ns):
    import ast
    tree = ast.parse(code, "<cell>", "exec")
    last = None
    if tree.body and isinstance(tree.body[-1], ast.Expr):
        last = ast.Expression(tree.body.pop().value)
    exec(compile(tree, "<cell>", "exec"), ns)
    if last is not None:
        value = eval(compile(last, "<cell>", "eval"), ns)
        if value is not None:
            print(repr(value))


def main():
    import marshal
    code = _read(int(sys.argv[1])).decode("utf-8", "replace")
    cells = marshal.loads(_read(int(sys.argv[2])) or marshal.dumps([]))
    ns = {"__name__": "__main__", "__builtins__": __builtins__}
    out, err = sys.stdout, sys.stderr
    sink = open(os.devnull, "w")
    for cell in cells:
        sys.stdout = sys.stderr = sink
        try:
            _run(cell, ns)
        except BaseException:  # noqa: BLE001 (an earlier cell's error was shown when it ran)
            pass
    sys.stdout, sys.stderr = out, err
    try:
        _run(code, ns)
    except SystemExit:
        pass
    except BaseException:  # noqa: BLE001
        import traceback
        etype, value, tb = sys.exc_info()
        while tb is not None and tb.tb_frame.f_code.co_filename != "<cell>":
            tb = tb.tb_next
        traceback.print_exception(etype, value, tb)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(1)
    sys.stdout.flush()
    sys.stderr.flush()


if __name__ == "__main__":
    main()
