"""`countdown`: number-target puzzles (TinyZero's Countdown task). Columns: `nums` (the given numbers) and `target`.

The equation is the content of the last `<answer>...</answer>` (else the last line of the completion). It must use
every given number exactly once, only `+ - * /` and parentheses (also `×` `÷`), optionally followed by `= <number>`,
and evaluate exactly (rational arithmetic) to `target`: 1.0; an equation that parses and uses the numbers but misses
the target earns `format_score` (TinyZero used 0.1; default 0.0); anything else 0.0. None if the row has no
nums/target.

A small recursive-descent parser evaluates the equation: never Python `eval` on model output. Inputs over
`max_chars` characters, nesting deeper than 32, numbers over 9 digits and division by zero are rejected.

    >>> cd = make_countdown()
    >>> cd(["<answer> (6 + 4) * 3 </answer>", "<answer> 6 + 4 * 3 = 18 </answer>", "<answer> 6*4+3 </answer>",
    ...     "<answer> 6 * 5 </answer>", "<answer> __import__('os') </answer>"],
    ...    nums=[[6, 4, 3]] * 5, target=[30] * 5)
    [1.0, 0.0, 0.0, 0.0, 0.0]

((6+4)*3 = 30; 6+4*3 = 18 uses the numbers but misses 30; 6*4+3 = 27 misses; "6 * 5" does not use 4 and 3.)
"""
from __future__ import annotations

import re
from collections import Counter
from fractions import Fraction
from typing import Any

from rewards.extract import ANSWER_CLOSE, ANSWER_OPEN, completion_text, last_tag_content
from rewards.scoring.registry import register_reward

_TOKEN = re.compile(r"\s*(?:(\d{1,9})(?!\d)|([-+*/()]))")
_TAIL_EQ = re.compile(r"=\s*-?\d+(?:\.\d+)?\s*$")
_MAX_DEPTH = 32


class _Invalid(Exception):
    pass


def _tokenize(expr: str) -> list[str | int]:
    tokens: list[str | int] = []
    pos, n = 0, len(expr)
    while pos < n:
        m = _TOKEN.match(expr, pos)
        if m is None:
            if expr[pos:].strip():
                raise _Invalid(f"unexpected {expr[pos:pos + 10]!r}")
            break
        tokens.append(int(m.group(1)) if m.group(1) else m.group(2))
        pos = m.end()
    return tokens


class _Parser:
    """expr := term (('+'|'-') term)* ; term := atom (('*'|'/') atom)* ; atom := NUMBER | '(' expr ')'"""

    def __init__(self, tokens: list[str | int]):
        self.tokens, self.i, self.numbers = tokens, 0, []

    def peek(self):
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def take(self):
        tok = self.peek()
        self.i += 1
        return tok

    def expr(self, depth: int) -> Fraction:
        value = self.term(depth)
        while self.peek() in ("+", "-"):
            op = self.take()
            rhs = self.term(depth)
            value = value + rhs if op == "+" else value - rhs
        return value

    def term(self, depth: int) -> Fraction:
        value = self.atom(depth)
        while self.peek() in ("*", "/"):
            op = self.take()
            rhs = self.atom(depth)
            if op == "*":
                value *= rhs
            elif rhs == 0:
                raise _Invalid("division by zero")
            else:
                value /= rhs
        return value

    def atom(self, depth: int) -> Fraction:
        tok = self.take()
        if isinstance(tok, int):
            self.numbers.append(tok)
            return Fraction(tok)
        if tok == "(":
            if depth >= _MAX_DEPTH:
                raise _Invalid("nesting too deep")
            value = self.expr(depth + 1)
            if self.take() != ")":
                raise _Invalid("unbalanced parentheses")
            return value
        raise _Invalid(f"unexpected token {tok!r}")


def evaluate(expr: str, max_chars: int = 256) -> tuple[Fraction, list[int]]:
    """(value, numbers used) of an arithmetic expression; raises ValueError if it is not one.

    >>> evaluate("(6 + 4) * 3")
    (Fraction(30, 1), [6, 4, 3])
    """
    expr = expr.replace("×", "*").replace("÷", "/").replace("\\times", "*").replace("\\div", "/")
    expr = _TAIL_EQ.sub("", expr.strip())
    if len(expr) > max_chars:
        raise ValueError("expression too long")
    try:
        parser = _Parser(_tokenize(expr))
        value = parser.expr(0)
        if parser.peek() is not None:
            raise _Invalid(f"trailing {parser.peek()!r}")
    except _Invalid as e:
        raise ValueError(str(e)) from None
    return value, parser.numbers


def _equation(text: str) -> str:
    content = last_tag_content(text, ANSWER_OPEN, ANSWER_CLOSE)
    if content is not None:
        return content
    lines = text.strip().splitlines()
    return lines[-1] if lines else ""


def _as_int_list(nums: Any) -> list[int] | None:
    try:
        return [int(x) for x in nums]
    except (TypeError, ValueError):
        return None


@register_reward("countdown", factory=True)
def make_countdown(format_score: float = 0.0, max_chars: int = 256):
    """1.0 for an equation that uses each of `nums` once and equals `target`, `format_score` for a valid equation
    that misses the target, else 0.0."""
    if isinstance(format_score, bool) or not isinstance(format_score, (int, float)) or not 0 <= format_score <= 1:
        raise ValueError(f"reward 'countdown': parameter 'format_score' must be in [0, 1], got {format_score!r}")
    if isinstance(max_chars, bool) or not isinstance(max_chars, int) or max_chars < 1:
        raise ValueError(f"reward 'countdown': parameter 'max_chars' must be a positive integer, got {max_chars!r}")

    def countdown(completions: list, nums: list | None = None, target: list | None = None,
                  **kwargs: Any) -> list[float | None]:
        if nums is None or target is None:
            raise ValueError("reward 'countdown' needs 'nums' and 'target' columns")
        out: list[float | None] = []
        for c, given, goal in zip(completions, nums, target, strict=True):
            given_ints = _as_int_list(given) if given is not None else None
            if given_ints is None or goal is None:
                out.append(None)
                continue
            text = completion_text(c)
            try:
                value, used = evaluate(_equation(text[-4 * max_chars:]), max_chars)
            except ValueError:
                out.append(0.0)
                continue
            if Counter(used) != Counter(given_ints):
                out.append(0.0)
            else:
                try:
                    hit = value == Fraction(str(goal))
                except (ValueError, ZeroDivisionError):
                    hit = False
                out.append(1.0 if hit else float(format_score))
        return out

    countdown.requires = ("nums", "target")
    return countdown
