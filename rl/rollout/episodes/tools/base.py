"""Tools as plain Python functions, and the built-in sandboxed `python` tool.

A tool is a function with type hints and a Google-style docstring; its JSON schema (what the chat template shows the
model) is transformers' `get_json_schema`, so a tool that works with `apply_chat_template(tools=[fn])` or TRL's
`GRPOTrainer(tools=[fn])` works here unchanged:

    def multiply(a: int, b: int) -> int:
        \"\"\"Multiply two integers.

        Args:
            a: the first factor
            b: the second factor
        \"\"\"
        return a * b

Listed in the recipe as `tools: [python, my_pkg.my_mod:multiply]` (`load_tools`). A call never raises: unknown tool,
wrong arguments, an exception, a timeout all come back as a `ToolResult` with `error` set and the reason as its text,
which the policy reads as the tool's answer.

Plain functions are trusted code (yours) run in this process, in a thread, with a deadline (`timeout_s`; a function
that hangs is reported as timed out and its thread abandoned, as Python cannot kill a thread). Model-written code
runs only in the `python` tool, in the sandbox (`sandbox/`: no network, no files, CPU/memory/process/output limits,
wall-clock kill), taken from a bounded pool of warm sandboxes so the calls of many episodes run in parallel.
"""
from __future__ import annotations

import importlib
import marshal
import os
import queue
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

HARNESS = Path(__file__).with_name("python_harness.py").read_text()


@dataclass
class ToolResult:
    text: str
    error: bool = False
    timed_out: bool = False
    seconds: float = 0.0


def tool_schema(fn: Callable) -> dict:
    """transformers' JSON schema of a documented, type-hinted function; ValueError naming the function if it has no
    usable docstring or type hints."""
    from transformers.utils import get_json_schema
    try:
        return get_json_schema(fn)
    except Exception as e:  # noqa: BLE001 (DocstringParsingException, TypeHintParsingException)
        raise ValueError(f"tool {getattr(fn, '__name__', fn)!r}: {e}") from None


class FunctionTool:
    """A plain Python function as a tool: arguments checked against its schema, run with a deadline."""

    def __init__(self, fn: Callable, timeout_s: float = 10.0, name: str | None = None):
        self.fn, self.timeout_s = fn, timeout_s
        self.schema = tool_schema(fn)
        self.name = name or self.schema["function"]["name"]

    def call(self, arguments: dict, state: dict) -> ToolResult:
        params = self.schema["function"].get("parameters", {})
        known, required = set(params.get("properties", {})), set(params.get("required", []))
        if set(arguments) - known or required - set(arguments):
            return ToolResult(f"error: {self.name} takes ({', '.join(sorted(known))}), required "
                              f"({', '.join(sorted(required))}); got ({', '.join(sorted(arguments))})", error=True)
        box: dict[str, Any] = {}

        def target() -> None:
            try:
                box["value"] = self.fn(**arguments)
            except BaseException as e:  # noqa: BLE001 (any failure of a tool is an observation)
                box["error"] = e
        t0 = time.monotonic()
        thread = threading.Thread(target=target, daemon=True, name=f"tool-{self.name}")
        thread.start()
        thread.join(self.timeout_s)
        seconds = time.monotonic() - t0
        if thread.is_alive():
            return ToolResult(f"error: {self.name} timed out after {self.timeout_s:g} s", True, True, seconds)
        if "error" in box:
            e = box["error"]
            return ToolResult(f"error: {type(e).__name__}: {e}", True, seconds=seconds)
        value = box.get("value")
        return ToolResult(value if isinstance(value, str) else repr(value), seconds=seconds)


def python(code: str) -> str:
    """Run Python code in a sandboxed interpreter and return what it prints (the value of a final expression is
    printed too). There is no network and no file access.

    Args:
        code: the Python source to run
    """
    raise RuntimeError("the python tool runs through PythonTool, never directly")


class SandboxPool:
    """At most `size` sandboxes (warm bubblewrap ones by default), each used by one call at a time."""

    def __init__(self, size: int = 4, limits=None, backend: str = "bwrap", warm: bool = True):
        from sandbox import Limits, Sandbox, WarmSandbox
        self.box = Sandbox(backend, limits or Limits(wall_s=5.0))
        self.warm = warm and backend == "bwrap"
        self._free: queue.Queue = queue.Queue()
        for _ in range(size):
            self._free.put(WarmSandbox(self.box, HARNESS) if self.warm else self.box)

    @contextmanager
    def runner(self):
        r = self._free.get()
        try:
            yield r
        finally:
            self._free.put(r)

    def close(self) -> None:
        while not self._free.empty():
            r = self._free.get_nowait()
            if hasattr(r, "close"):
                r.close()


def _memfd(name: str, data: bytes) -> int:
    fd = os.memfd_create(name, 0)  # no MFD_CLOEXEC: inherited by the sandbox
    os.write(fd, data)
    os.lseek(fd, 0, os.SEEK_SET)
    return fd


class PythonTool:
    """The built-in `python` tool. `stateful`: the cells of one episode share an interpreter state (each call replays
    the episode's earlier cells silently, then runs the new one); otherwise every call starts fresh."""

    name = "python"

    def __init__(self, pool: SandboxPool, stateful: bool = True, timeout_s: float = 5.0):
        self.pool, self.stateful, self.timeout_s = pool, stateful, timeout_s
        self.schema = tool_schema(python)

    def call(self, arguments: dict, state: dict) -> ToolResult:
        from sandbox import WarmSandbox
        code = arguments.get("code")
        if set(arguments) != {"code"} or not isinstance(code, str):
            return ToolResult('error: python takes one argument, "code" (a string)', error=True)
        cells = state.setdefault("python_cells", []) if self.stateful else []
        fds = (_memfd("code", code.encode("utf-8", "replace")), _memfd("cells", marshal.dumps(list(cells))))
        try:
            with self.pool.runner() as r:
                if isinstance(r, WarmSandbox):
                    res = r.run_harness(fds[0], fds[1], "python", wall_s=self.timeout_s)
                else:
                    res = r.run(["-c", HARNESS, str(fds[0]), str(fds[1]), "python"], wall_s=self.timeout_s,
                                pass_fds=fds)
        finally:
            for fd in fds:
                os.close(fd)
        out = (res.stdout + res.stderr).decode("utf-8", "replace")
        if res.timed_out:
            return ToolResult(out + f"\nerror: the code ran longer than {self.timeout_s:g} s and was stopped",
                              True, True, res.seconds)
        if res.overflow:
            return ToolResult(out + "\nerror: the output was too long and the run was stopped", True,
                              seconds=res.seconds)
        if res.returncode is None:
            return ToolResult(out + "\nerror: the sandbox stopped the run", True, seconds=res.seconds)
        if self.stateful:
            cells.append(code)  # finished (even with an exception: a REPL keeps what ran before it)
        return ToolResult(out, res.returncode != 0, seconds=res.seconds)


def load_tools(specs: list[str], python_tool: Callable[[], PythonTool] | None = None,
               timeout_s: float = 10.0) -> list:
    """Recipe names -> tools: `python` (the sandboxed interpreter, made by `python_tool()`) or `module:function`.

        load_tools(["python", "my_pkg.tools:search"]) -> [PythonTool, FunctionTool(search)]
    """
    tools = []
    for spec in specs:
        if spec == "python":
            if python_tool is None:
                raise ValueError("tools: `python` needs a sandbox pool (python_tool factory)")
            tools.append(python_tool())
            continue
        module, sep, attr = spec.partition(":")
        if not sep or not module or not attr:
            raise ValueError(f"tools: {spec!r} is neither `python` nor `module.path:function`")
        try:
            fn = getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError) as e:
            raise ValueError(f"tools: cannot load {spec!r} ({e})") from None
        tools.append(FunctionTool(fn, timeout_s))
    names = [t.name for t in tools]
    if len(set(names)) != len(names):
        raise ValueError(f"tools: duplicate tool names {names}")
    return tools
