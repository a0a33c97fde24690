"""Test formats of code datasets, program extraction, and output comparison for the `code` reward (pure functions).

Three formats, read from a row's columns (each may arrive as a dict/list or as its JSON string):

    >>> tests_of({"verification_info": {"language": "python",
    ...           "test_cases": [{"input": "1 2\\n", "output": "3\\n", "type": "stdin_stdout"}]}}).mode
    'stdio'
    >>> spec = tests_of({"input_output": '{"inputs": [[1, 2]], "outputs": [3], "fn_name": "add"}'})
    >>> spec.mode, spec.fn_name, spec.inputs, spec.expected
    ('call', 'add', [[1, 2]], [3])
    >>> spec = tests_of({"test_list": ["assert add(1, 2) == 3"], "test_imports": ["import math"]})
    >>> spec.mode, spec.inputs, spec.setup
    ('assert', ['assert add(1, 2) == 3'], 'import math')
    >>> tests_of({"test": "def check(candidate):\\n    assert candidate(1, 2) == 3\\n", "entry_point": "add"}).inputs
    ['check(add)']
    >>> tests_of({"answer": "7"}) is None     # no tests: the code reward says None (cannot judge)
    True

- open-r1 `verification_info`: {"language", "test_cases": [{"input", "output", "type": "stdin_stdout"}]};
- APPS / TACO / LiveCodeBench `input_output`: {"inputs", "outputs", "fn_name"?}: stdin/stdout, or with `fn_name`
  call-based (inputs[i] is the argument list, or LiveCodeBench's string of one JSON value per line; a LeetCode-style
  `class Solution` method is found by name too);
- MBPP `test_list` (+ `test_setup_code`, `test_imports`), HumanEval `test` + `entry_point` (its `check`).

Comparison as those benchmarks do it: stdout is compared line by line on whitespace-separated tokens (trailing
spaces and blank lines ignored); two integer tokens must be equal exactly (any size), and only a token with a decimal
point or an exponent brings in the tolerance of 1e-6 (relative or absolute), as LiveCodeBench/APPS grade; call
results equal the expected value (APPS: tuples as lists, or the expected list's single element), floats within 1e-6:

    >>> outputs_match("3.0000001 \\n\\n", "3\\n"), outputs_match("1 2\\n", "1  2"), outputs_match("12", "1 2")
    (True, True, False)
    >>> outputs_match("1000001", "1000000"), outputs_match("1000001.0", "1000000"), outputs_match("-0", "0")
    (False, True, True)
    >>> results_match((1, 2), [1, 2]), results_match(5, [5]), results_match(0.1 + 0.2, 0.3), results_match("1", 1)
    (True, True, True, False)
"""
from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from typing import Any

from rewards.extract import ANSWER_CLOSE, ANSWER_OPEN, THINK_CLOSE, last_tag_content

TEST_COLUMNS = ("verification_info", "input_output", "test_list", "test")
_FENCE = re.compile(r"```[ \t]*(python3?|py)?[ \t]*\n(.*?)```", re.S | re.I)
_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
_INT = re.compile(r"[+-]?\d+")
TOL = 1e-6


@dataclass
class TestSpec:
    mode: str  # "stdio" | "call" | "assert"
    inputs: list  # stdin strings | argument lists | test statements
    expected: list = field(default_factory=list)  # stdout strings | return values | [] (asserts judge themselves)
    fn_name: str = ""
    setup: str = ""  # assert mode: code run before each test (imports, HumanEval's `check`)


def extract_program(text: str) -> str | None:
    """The program in a completion: the last fenced ```python (or bare ```) block after the last `</think>`, looked
    for inside the last <answer> first; an <answer> without a fence is the program itself. None if there is none.

    >>> extract_program("<think> ```python\\nprint(1)\\n``` </think> Here:\\n```python\\nprint(2)\\n```")
    'print(2)\\n'
    >>> extract_program("<answer>\\nprint(3)\\n</answer>"), extract_program("no code")
    ('print(3)', None)
    """
    at = text.rfind(THINK_CLOSE)
    region = text[at + len(THINK_CLOSE):] if at >= 0 else text
    answer = last_tag_content(region, ANSWER_OPEN, ANSWER_CLOSE)
    for part in ((answer,) if answer is not None else ()) + (region,):
        blocks = [m.group(2) for m in _FENCE.finditer(part)]
        if blocks:
            return blocks[-1]
        if part is answer and answer.strip():
            return answer.strip()
    return None


def _load(value: Any) -> Any:
    if isinstance(value, (bytes, bytearray)):
        value = value.decode("utf-8", "replace")
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def _stdin_text(x: Any) -> str:
    return "\n".join(map(str, x)) + "\n" if isinstance(x, list) else str(x)


def _call_args(x: Any) -> list:
    if isinstance(x, str):  # LiveCodeBench: one JSON value per line
        return [json.loads(line) for line in x.splitlines() if line.strip()]
    return list(x) if isinstance(x, (list, tuple)) else [x]


def tests_of(row: dict[str, Any]) -> TestSpec | None:
    """The row's tests in whichever format it has (see module docstring), or None when it has none."""
    info = _load(row.get("verification_info"))
    if isinstance(info, dict) and info.get("test_cases"):
        if str(info.get("language", "python")).lower() not in ("python", "python3", "py"):
            return None
        cases = [c for c in info["test_cases"] if c.get("type", "stdin_stdout") == "stdin_stdout"]
        if not cases:
            return None
        return TestSpec("stdio", [str(c.get("input", "")) for c in cases], [str(c.get("output", "")) for c in cases])
    io = _load(row.get("input_output"))
    if isinstance(io, dict) and io.get("inputs"):
        inputs, outputs = list(io["inputs"]), list(io.get("outputs") or [])
        if len(outputs) != len(inputs):
            return None
        if io.get("fn_name"):
            return TestSpec("call", [_call_args(x) for x in inputs], [_load(o) if isinstance(o, str) and
                                                                      isinstance(inputs[0], str) else o
                                                                      for o in outputs], fn_name=str(io["fn_name"]))
        return TestSpec("stdio", [_stdin_text(x) for x in inputs], [_stdin_text(o) for o in outputs])
    asserts = _load(row.get("test_list"))
    if isinstance(asserts, list) and asserts:
        setup = list(_load(row.get("test_imports")) or [])
        if row.get("test_setup_code"):
            setup.append(str(row["test_setup_code"]))
        return TestSpec("assert", [str(a) for a in asserts], setup="\n".join(map(str, setup)))
    test, entry = row.get("test"), row.get("entry_point")
    if isinstance(test, str) and test.strip() and isinstance(entry, str) and entry.isidentifier():
        return TestSpec("assert", [f"check({entry})"], setup=test)
    return None


def _lines(text: str) -> list[list[str]]:
    return [line.split() for line in text.replace("\r\n", "\n").split("\n") if line.strip()]


def _close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=TOL, abs_tol=TOL)


def _token_match(got: str, want: str) -> bool:
    """Equal strings; two integers equal in value (exactly: `1000001` is not `1000000`, 64-bit values keep every
    digit); numbers of which one has a decimal point or an exponent within TOL."""
    if got == want:
        return True
    if _INT.fullmatch(got) and _INT.fullmatch(want):
        return _int_key(got) == _int_key(want)
    if _NUMBER.fullmatch(got) and _NUMBER.fullmatch(want):
        return _close(float(got), float(want))
    return False


def _int_key(token: str) -> tuple[bool, str]:
    """An integer token's value as (negative, digits without leading zeros): exact at any length (int() refuses
    strings of more than 4,300 digits). "-0", "+0" and "000" are all zero."""
    digits = token.lstrip("+-").lstrip("0")
    return (token.startswith("-") and digits != "", digits)


def outputs_match(got: str, want: str) -> bool:
    """Whitespace-normalised line-by-line equality of two stdouts: integer tokens exactly, other numbers within TOL."""
    a, b = _lines(got), _lines(want)
    return len(a) == len(b) and all(len(x) == len(y) and all(map(_token_match, x, y)) for x, y in zip(a, b))


def _equal(got: Any, want: Any) -> bool:
    if isinstance(got, bool) or isinstance(want, bool):
        return type(got) is type(want) and got == want
    if isinstance(got, (int, float)) and isinstance(want, (int, float)):
        return got == want or (isinstance(got, float) or isinstance(want, float)) and _close(got, want)
    if isinstance(got, (list, tuple)) and isinstance(want, (list, tuple)):
        return len(got) == len(want) and all(map(_equal, got, want))
    if isinstance(got, dict) and isinstance(want, dict):
        return got.keys() == want.keys() and all(_equal(got[k], want[k]) for k in got)
    return type(got) is type(want) and got == want


def results_match(got: Any, want: Any) -> bool:
    """A call-based result against the expected value (APPS: a list-wrapped expected value also counts)."""
    return _equal(got, want) or (isinstance(want, list) and len(want) == 1 and _equal(got, want[0]))
