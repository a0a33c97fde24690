"""Hedged answers: an answer must state one result. Several candidates, a negation, a range or an inequality about
the answer earns nothing, unless the gold itself is a set, an interval or an inequality (then math-verify compares
them as such). A policy finds such hedges within a few hundred steps if they pay.

    >>> [hedge_kind(a) for a in ("either 5 or 6", "between 3 and 9", "not 9", "at least 4", "x \\\\geq 4", "\\\\pm 3")]
    ['candidates', 'range', 'negation', 'inequality', 'inequality', 'candidates']
    >>> [hedge_kind(a) for a in ("6", "x = 5", "5 apples", "\\\\frac{1}{2}", "-3", "(2, 3)", "\\\\text{north}")]
    [None, None, None, None, None, None, None]

A statement followed by its justification, or by where it is attained, is the statement (`cut_justification`):

    >>> cut_justification("7, since m = n = 1"), cut_justification("7 because 3 + 4 = 7"), cut_justification("x = 5")
    ('7', '7', 'x = 5')
    >>> cut_justification("7, attained at m = n = 1"), cut_justification("7 (with equality when a = b)")
    ('7', '7')

A bare condition is not a justification but a hedge ("conditional"): `x = 7 when y = 2` gives x only for one y, and
it is how a piecewise answer begins (`7 when y = 2, 8 otherwise`). Stating the value and then where it holds
(`7, attained when y = 2`) is the way to say it; a tail that offers another value (`..., otherwise 8`) is not cut:

    >>> [hedge_kind(a) for a in ("x = 7 when y = 2", "7 if n is odd", "7, attained at m = 1; otherwise 8")]
    ['conditional', 'conditional', 'conditional']
    >>> cut_justification("7, attained at m = 1; otherwise 8")
    '7, attained at m = 1; otherwise 8'

A prose gold that states a property rather than a value ("Always greater than 20") cannot be judged:
`prose_property("Always greater than 20")` is True, and accuracy returns None for it.
"""
from __future__ import annotations

import re
from typing import Any

from rewards.math.normalize import looks_like_prose

# Words (outside LaTeX) and symbols that make an answer more than one value. Checked in order; the first that
# matches names the class.
_CLASSES = (
    ("negation", re.compile(r"(?<![A-Za-z])(?:not|isn'?t|never|except|other\s+than|anything\s+but)(?![A-Za-z])"
                            r"|\\neq?(?![A-Za-z])|\\not(?![A-Za-z])|≠|!=", re.I)),
    ("range", re.compile(r"(?<![A-Za-z])(?:between|within|ranges?)(?![A-Za-z])"
                         r"|(?<![A-Za-z])from\s.{0,40}?(?<![A-Za-z])to(?![A-Za-z])"
                         r"|\d\s*(?:\\text\{\s*)?to(?![A-Za-z])\s*\}?\s*[-+$\\\d]|\\in(?![A-Za-z])|∈", re.I)),
    ("inequality", re.compile(r"(?<![A-Za-z])(?:at\s+(?:least|most)|up\s+to|or\s+(?:more|less|fewer)"
                              r"|(?:more|less|greater|fewer|larger|smaller|bigger|higher|lower)\s+than"
                              r"|exceeds?)(?![A-Za-z])"
                              r"|[<>≤≥]|\\(?:[gl]eq?|[gl]eqslant|[gl]t|geqq|leqq)(?![A-Za-z])", re.I)),
    ("candidates", re.compile(r"(?<![A-Za-z])(?:either|or|maybe|perhaps|possibly)(?![A-Za-z])"
                              r"|\\(?:pm|mp|lor|vee)(?![A-Za-z])|±|∓", re.I)),
    # a value under a condition (see the module docstring); last, so "7 or 8 if ..." stays "candidates"
    ("conditional", re.compile(r"(?<![A-Za-z])(?:when|whenever|if|iff|unless|otherwise|provided)(?![A-Za-z])", re.I)),
)
# Where a justification begins: "since/because ..." after a comma or a space, "as/where/which/so/hence/thus/by ..."
# after a comma, and where the value is attained ("attained/achieved/reached/obtained at ...", "with equality ...",
# "equality holds ...") after a comma, a space or an opening parenthesis.
_ATTAINED = (r"(?:(?:which|that|and|it)\s+(?:is\s+|are\s+|was\s+)?)?"
             r"(?:attained|achieved|reached|obtained|realised|realized|occurring|occurs)"
             r"|with\s+equality|equality\s+(?:holds|occurs|is\s+attained|iff|if|when|at)")
_JUSTIFICATION = re.compile(r"(?:\s*[,;(]\s*|\s+)(?:since|because|given\s+that|due\s+to)(?![A-Za-z])"
                            r"|\s*[,;]\s*(?:as|where|which|so|hence|thus|by)(?![A-Za-z])"
                            rf"|(?:\s*[,;(]\s*|\s+)(?:{_ATTAINED})(?![A-Za-z])", re.I)
# Another value offered in the cut-off tail ("..., otherwise 8", "; else 8"); "since otherwise ..." is reasoning.
_OTHER_VALUE = re.compile(r"(?<![A-Za-z])(?:otherwise|else)(?![A-Za-z])", re.I)
_REASONING_BEFORE = re.compile(r"(?:since|because|as)\s*$", re.I)


def hedge_kind(answer: str) -> str | None:
    """The hedge class of an answer string ("candidates", "negation", "range", "inequality"), or None."""
    for kind, pattern in _CLASSES:
        if pattern.search(answer):
            return kind
    return None


def cut_justification(answer: str) -> str:
    """The answer before a justification clause (", since ...", " because ...", ", where ...", ", attained at ...",
    " (with equality when ...)"); as is otherwise, and as is when the clause offers another value ("otherwise 8"),
    so that the hedge rules see it."""
    m = _JUSTIFICATION.search(answer)
    if not m or not answer[:m.start()].strip():
        return answer
    tail = answer[m.start():]
    if any(not _REASONING_BEFORE.search(tail[:o.start()]) for o in _OTHER_VALUE.finditer(tail)):
        return answer
    return answer[:m.start()].rstrip()


def prose_property(gold: str) -> bool:
    """A gold in words that bounds or negates instead of giving a value ("Always greater than 20", "not 3"):
    nothing can be checked against it."""
    return hedge_kind(gold) in ("negation", "range", "inequality") and looks_like_prose(gold)


def gold_allows_hedges(gold_parts: tuple[str, ...], gold_parsed: tuple) -> bool:
    """Whether the gold is itself several values, an interval or an inequality (then a "hedged" form may be the
    right answer: `2 or 6` for the gold `2, 6`, `x > 3` for `x > 3`, `3 \\le x \\le 9` for `[3, 9]`)."""
    if len(gold_parts) > 1 or any(hedge_kind(p) for p in gold_parts):
        return True
    from sympy import FiniteSet, Interval, Tuple, Union
    from sympy.core.relational import Relational
    for value in gold_parsed:
        if isinstance(value, str):
            if "," in value or ";" in value:
                return True
            continue
        if isinstance(value, (Interval, Union, Relational, Tuple)) or (
                isinstance(value, FiniteSet) and len(value) != 1):
            return True
    return False


def hedged(parts: tuple[str, ...], gold_parts: tuple[str, ...], gold_parsed: Any) -> bool:
    """True when the answer hedges (any part) and the gold does not allow it: the answer scores 0."""
    return any(hedge_kind(p) for p in parts) and not gold_allows_hedges(gold_parts, tuple(gold_parsed))
