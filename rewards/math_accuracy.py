"""`accuracy`: is the final answer mathematically equal to the gold `answer`? 1.0 / 0.0, or None if the gold itself
cannot be parsed (counted by the scorer, never rewarded).

The final answer is the content of the last `<answer>...</answer>` (or the last `\\boxed{}` inside it), else the last
`\\boxed{...}` (nested braces allowed), else whatever math-verify's own extraction finds in the text's tail. Answer and
gold are parsed and compared with math-verify, which handles fractions (`\\dfrac`), decimals, percentages, thousands
separators, units, intervals, sets/tuples, expressions, negatives and `x = 5`:

    >>> acc = make_accuracy()
    >>> acc(["<answer> \\\\dfrac{1}{2} </answer>", "\\\\boxed{0.5}", "<answer> x = -3 </answer>", "it is 1,000 m"],
    ...     answer=["1/2", "\\\\frac12", "-3", "1000"])
    [1.0, 1.0, 1.0, 1.0]
    >>> acc(["<answer> 4 </answer>"], answer=["not a number {"])  # unparseable gold
    [None]

Each gold string is parsed once per process (bounded cache), so a GRPO group of G completions costs one gold parse.

Timeouts. math-verify's own timeouts use `signal.alarm`, which (1) fails outside the main thread, (2) shares the
process's single ITIMER_REAL with our per-item `deadline` (its `alarm(0)` would cancel ours), (3) has whole-second
granularity and (4) is swallowed into a `False`/`[]` result, so timeouts could not be counted. We therefore call
math-verify with `parsing_timeout=None` / `timeout_seconds=None` and bound each item with our own `deadline`
(rewards/deadline.py): in the scorer's workers the worker times each item (and the parent kills a worker stuck in C
code); called directly (e.g. by TRL, in the main thread) each item gets `timeout_s` and scores 0.0 on timeout.
"""
from __future__ import annotations

import logging
import re
from collections import OrderedDict
from typing import Any

from rewards.deadline import ItemTimeout, fired_count, run_with_deadline
from rewards.extract import DEFAULT_MAX_CHARS, cap_tail, clean_answer, completion_text, extract_answer
from rewards.registry import register_reward

logger = logging.getLogger(__name__)

_PROSE_STRIP = re.compile(r"\\(?:text|mathrm|textbf|mbox|operatorname)\s*\{[^{}]*\}|\\[A-Za-z]+")
_PROSE_WORD = re.compile(r"[A-Za-z]{3,}")
_MATH_WORDS = {"sin", "cos", "tan", "cot", "sec", "csc", "log", "exp", "sqrt", "inf", "infty", "arcsin", "arccos",
               "arctan", "sinh", "cosh", "tanh", "mod", "gcd", "lcm", "max", "min", "and"}
_INTEGER = re.compile(r"[+-]?\d{1,15}")
_mv = None


def _math_verify():
    """Import math-verify lazily (sympy import ~0.5 s) and quiet its loggers: on a timeout they log the whole input,
    which for adversarial completions means megabytes of log."""
    global _mv
    if _mv is None:
        import math_verify
        import math_verify.grader
        import math_verify.parser
        for mod in (math_verify.parser, math_verify.grader):
            mod.TIMEOUT_WARNING_SHOWN = True  # we disable its timeouts on purpose (see module docstring)
        logging.getLogger("math_verify").setLevel(logging.ERROR)
        _mv = math_verify
    return _mv


def _has_math(parsed: list) -> bool:
    return any(not isinstance(p, str) for p in parsed)


def _looks_like_prose(s: str) -> bool:
    words = _PROSE_WORD.findall(_PROSE_STRIP.sub(" ", s))
    return any(w.lower() not in _MATH_WORDS for w in words)


def parse_answer(s: str, source: str = "answer") -> list:
    """math-verify's parse of an answer candidate: a bare answer is parsed as the content of \\boxed{} (LaTeX
    extraction of the whole string); prose, `$...$` math and whole texts go through math-verify's own extraction."""
    mv = _math_verify()
    if not s:
        return []
    if source == "text" or "$" in s or _looks_like_prose(s):
        return mv.parse(s, parsing_timeout=None)
    parsed = mv.parse("\\boxed{" + s + "}", parsing_timeout=None)
    if not _has_math(parsed):
        parsed = mv.parse(s, parsing_timeout=None) or parsed
    return parsed


_warm = False


def warmup() -> None:
    """Import math-verify and run one parse+verify (the first call builds its parsers: ~1 s), so that the first
    real item is not charged for it against its timeout. Idempotent; the rewards call it before their first item."""
    global _warm
    if not _warm:
        judge("<answer> \\frac{1}{2} </answer>", "0.5")
        _warm = True


class _LRU(OrderedDict):
    def put(self, key, value, max_size: int) -> None:
        self[key] = value
        while len(self) > max_size:
            try:
                self.popitem(last=False)
            except KeyError:  # emptied concurrently
                break


_GOLDS = _LRU()  # gold string -> parsed gold (tuple) or None
_TIMED_OUT = _LRU()  # (candidate, source, gold) that timed out here: a second reward on the same item (cosine after
_JUDGED = _LRU()  # accuracy) fails fast instead of burning another timeout; _JUDGED caches finished verdicts


def parse_gold(gold: str) -> tuple | None:
    """The parsed gold answer, or None if math-verify finds no mathematical object in it. Cached per process, so a
    batch (or a GRPO group) sharing a gold parses it once."""
    cached = _GOLDS.get(gold, _GOLDS)  # (a bounded FIFO; get() rather than `in` + [], safe if another thread evicts)
    if cached is not _GOLDS:
        return cached
    fired = fired_count()
    s = clean_answer(gold)
    if "\\boxed" in s or "\\fbox" in s:
        parsed = _math_verify().parse(s, parsing_timeout=None)
    else:
        parsed = parse_answer(s, "answer")
    if fired_count() != fired:  # a timeout fired and was swallowed inside math-verify/sympy: do not trust []
        raise ItemTimeout("gold parse interrupted")
    result = tuple(parsed) if _has_math(parsed) else None
    _GOLDS.put(gold, result, 4096)
    return result




def integer_verdict(candidate: str, gold: str) -> float | None:
    """1.0/0.0 when both are plain integers of at most 15 digits (where math-verify's verdict is exact integer
    equality: tests/rewards/test_accuracy.py checks the agreement), else None. Skips two LaTeX parses (~1 ms)."""
    g = gold.strip()
    if _INTEGER.fullmatch(candidate) and _INTEGER.fullmatch(g):
        return 1.0 if int(candidate) == int(g) else 0.0
    return None


def judge(text: str, gold: Any, max_chars: int = DEFAULT_MAX_CHARS, fast_integers: bool = True) -> float | None:
    """1.0 if the final answer in `text` equals `gold`, 0.0 if not (or no answer found), None if gold is unparseable.
    May raise ItemTimeout (from an enclosing deadline)."""
    if gold is None:
        return None
    gold = str(gold)
    if len(gold) > max_chars:
        return None
    candidate, source = extract_answer(cap_tail(text, max_chars))
    if fast_integers and source != "text":
        verdict = integer_verdict(candidate, gold)
        if verdict is not None:
            return verdict
    key = (candidate, source, gold) if len(candidate) <= 1000 else None
    if key is not None:
        cached = _JUDGED.get(key, _JUDGED)
        if cached is not _JUDGED:
            return cached
        if key in _TIMED_OUT:
            raise ItemTimeout("timed out before on this answer")
    fired = fired_count()
    try:
        value = _judge(candidate, source, gold)
        if fired_count() != fired:
            raise ItemTimeout("interrupted")  # swallowed somewhere inside: the verdict is not trustworthy
    except ItemTimeout:
        if key is not None:
            _TIMED_OUT.put(key, True, 256)
        raise
    if key is not None:
        _JUDGED.put(key, value, 4096)
    return value


def _judge(candidate: str, source: str, gold: str) -> float | None:
    gold_parsed = parse_gold(gold)
    if gold_parsed is None:
        return None
    pred = parse_answer(candidate, source)
    if not pred:
        return 0.0
    return 1.0 if _math_verify().verify(list(gold_parsed), pred, timeout_seconds=None) else 0.0


def _check_positive(reward: str, **values: Any) -> None:
    for k, v in values.items():
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)) or v <= 0):
            raise ValueError(f"reward {reward!r}: parameter {k!r} must be a positive number, got {v!r}")


@register_reward("accuracy", factory=True)
def make_accuracy(timeout_s: float | None = 5.0, max_chars: int = DEFAULT_MAX_CHARS, fast_integers: bool = True):
    """1.0/0.0 per completion against the `answer` column (None: gold unparseable). `timeout_s`: per item, when
    called outside the scorer's workers; `max_chars`: only the text's tail of that length is parsed;
    `fast_integers`: compare plain integers (<= 15 digits) directly instead of through math-verify (same verdict)."""
    _check_positive("accuracy", timeout_s=timeout_s, max_chars=max_chars)
    if not isinstance(fast_integers, bool):
        raise ValueError(f"reward 'accuracy': parameter 'fast_integers' must be true or false, got {fast_integers!r}")
    max_chars = int(max_chars)

    def accuracy(completions: list, answer: list | None = None, **kwargs: Any) -> list[float | None]:
        if answer is None:
            raise ValueError("reward 'accuracy' needs an 'answer' column")
        warmup()
        out: list[float | None] = []
        timeouts = 0
        for c, gold in zip(completions, answer, strict=True):
            text = completion_text(c)
            value = run_with_deadline(lambda: judge(text, gold, max_chars, fast_integers), timeout_s,
                                      on_timeout="timeout")
            if value == "timeout":
                timeouts, value = timeouts + 1, 0.0
            out.append(value)
        if timeouts:
            logger.warning("accuracy: %d completion(s) timed out after %ss and scored 0.0", timeouts, timeout_s)
        return out

    accuracy.warmup, accuracy.requires = warmup, ("answer",)
    return accuracy
