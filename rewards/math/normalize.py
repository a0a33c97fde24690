"""Answer text before it is parsed: thousands separators, LaTeX environments, and the prose test. Pure string code,
linear-time (no regex that backtracks over the whole text).

Thousands separators are removed from digit groups of exactly three after a leading group of 1-3 digits that does
not start with 0, so a list keeps its commas (and `0,111` is left to math-verify, which reads a decimal comma):

    >>> [normalize_separators(s) for s in ["1 000", "10\\\\,000", "10{,}000", "10,\\\\!000", "1,000,000", "1,2", "1 2"]]
    ['1000', '10000', '10000', '10000', '1000000', '1,2', '1 2']

Environments that math-verify reads as their last entry (a system `cases`/`aligned`, which would turn the gold
{x = 1, y = 2} into 2) become the list of their rows; `Bmatrix`/`smallmatrix` become `pmatrix`:

    >>> rewrite_environments("\\\\begin{cases} x = 1 \\\\\\\\ y = 2 \\\\end{cases}")
    'x = 1, y = 2'

Environment names are not words: `\\\\begin{pmatrix} -1 \\\\\\\\ 2 \\\\end{pmatrix}` is math, not prose.

    >>> looks_like_prose("\\\\begin{pmatrix} -1 \\\\\\\\ 2 \\\\end{pmatrix}"), looks_like_prose("the vector is (1, 2)")
    (False, True)
"""
from __future__ import annotations

import re

# Separators between digit groups: LaTeX spacing (`\,`, `\ `, `~`, `\;`, `\:`), `{,}`, MATH's `,\!`, thin spaces.
_TIGHT = r"(?:\\,|\{,\}|,\\!|\\!,|\\[;: ]|~|\\thinspace\s?|[\u2009\u202f\u2007])"
_TIGHT_GROUPS = re.compile(rf"(?<![\d.])[1-9]\d{{0,2}}(?:{_TIGHT}\d{{3}})+(?!\d)")
_SPACE_GROUPS = re.compile(r"(?<![\d.,])[1-9]\d{0,2}(?:[ \u00a0]\d{3})+(?!\d)")
_COMMA_NUMBER = re.compile(r"[+-]?[1-9]\d{0,2}(?:,\d{3})+(?:\.\d+)?")
_NON_DIGIT = re.compile(r"\D")

_ENV_TOKEN = re.compile(r"\\(begin|end)\s*\{([A-Za-z]+\*?)\}")
_SYSTEMS = {"cases", "dcases", "rcases", "aligned", "align", "align*", "alignat", "alignat*", "gathered", "gather",
            "gather*", "split", "eqnarray", "eqnarray*", "multline", "multline*"}
_AS_PMATRIX = {"Bmatrix", "smallmatrix"}  # notations math-verify does not read as matrices
_ROW_END = re.compile(r"\\\\(?:\[[^\]]*\])?|\\cr(?![A-Za-z])")

_PROSE_STRIP = re.compile(r"\\begin\s*\{array\}\s*\{[^{}]*\}|\\(?:begin|end)\s*\{[^{}]*\}|[_^]\s*\{[^{}]*\}"
                          r"|\\(?:text|mathrm|textbf|textit|textrm|mbox|operatorname)\s*\{[^{}]*\}|\\[A-Za-z]+")
_PROSE_WORD = re.compile(r"[A-Za-z]{3,}")
_MATH_WORDS = {"sin", "cos", "tan", "cot", "sec", "csc", "log", "exp", "sqrt", "inf", "infty", "arcsin", "arccos",
               "arctan", "sinh", "cosh", "tanh", "mod", "gcd", "lcm", "max", "min", "and"}
_ENV_SPAN = re.compile(r"(?:\\left\s*(?:\\\{|[(\[|.]))?\s*\\begin\s*\{([A-Za-z]+\*?)\}")
_RIGHT = re.compile(r"\s*\\right\s*(?:\\\}|[)\]|.])")


def normalize_separators(s: str, spaces: bool = True) -> str:
    """Remove thousands separators from numbers: LaTeX/typographic ones anywhere, plain spaces between digit groups
    when `spaces` (an extracted answer, not a whole text), and commas when `s` is a single number."""
    if s.isdigit() or (s[1:].isdigit() and s[0] in "+-"):  # the common case: a plain integer
        return s
    s = _TIGHT_GROUPS.sub(lambda m: _NON_DIGIT.sub("", m.group()), s)
    if spaces:
        s = _SPACE_GROUPS.sub(lambda m: _NON_DIGIT.sub("", m.group()), s)
        if "," in s and _COMMA_NUMBER.fullmatch(s):
            s = s.replace(",", "")
    return s


def _environments(s: str) -> list[tuple[int, int, int, int, str]]:
    """Top-level environments: (begin start, body start, body end, end end, name), by one stack pass."""
    out, stack = [], []
    for m in _ENV_TOKEN.finditer(s):
        kind, name = m.groups()
        if kind == "begin":
            stack.append((m.start(), m.end(), name))
        elif stack and stack[-1][2] == name:
            start, body, _ = stack.pop()
            if not stack:
                out.append((start, body, m.start(), m.end(), name))
        else:  # an \end without its \begin: start over
            stack.clear()
    return out


def _rows(body: str, name: str) -> str:
    """A system's rows as a comma-separated list; in `cases` the `&` separates a value from its condition."""
    items = []
    for row in _ROW_END.split(body):
        cells = row.split("&") if name in ("cases", "dcases", "rcases") else [row.replace("&", "")]
        items.extend(c.strip().rstrip(",.;").strip() for c in cells)
    return ", ".join(i for i in items if i)


def rewrite_environments(s: str) -> str:
    """Systems (`cases`, `aligned`, ...) -> the list of their rows; `Bmatrix`/`smallmatrix` -> `pmatrix`."""
    if "\\begin" not in s:
        return s
    out, last = [], 0
    for start, body, body_end, end, name in _environments(s):
        if name in _SYSTEMS:
            out.append(s[last:start])
            out.append(_rows(s[body:body_end], name))
            last = end
        elif name in _AS_PMATRIX:
            out.append(s[last:start])
            out.append("\\begin{pmatrix}" + s[body:body_end] + "\\end{pmatrix}")
            last = end
    return "".join(out) + s[last:] if out else s


def looks_like_prose(s: str) -> bool:
    """Words of 3+ letters outside LaTeX commands, `\\text{}`, environment names and sub/superscripts (other than
    sin, log, and, ...)."""
    words = _PROSE_WORD.findall(_PROSE_STRIP.sub(" ", s))
    return any(w.lower() not in _MATH_WORDS for w in words)


def math_delimit_environments(s: str) -> str:
    """In a text without math delimiters, put `$...$` around each top-level environment (with its `\\left(` /
    `\\right)`), so that math-verify reads a matrix in prose as a matrix, not as its last entry."""
    if "\\begin" not in s or "$" in s or "\\(" in s or "\\[" in s:
        return s
    out, last = [], 0
    for start, _, _, end, _ in _environments(s):
        m = _ENV_SPAN.search(s, max(last, start - 16), start + 32)
        if m is not None and m.end() > start and m.start() >= last:
            start = m.start()
        r = _RIGHT.match(s, end)
        if r is not None:
            end = r.end()
        out.append(s[last:start] + "$" + s[start:end].strip() + "$")
        last = end
    return "".join(out) + s[last:] if out else s
