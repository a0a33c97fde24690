"""`accuracy`: is the final answer mathematically equal to the gold answer? 1.0 / 0.0, or None if the gold itself
cannot be parsed (counted by the scorer, never rewarded).

The final answer (rewards/extract.py `find_answer`) is the content of the last `<answer>...</answer>` (or the final
`\\boxed{}` inside it), else the final `\\boxed{...}` (nested braces allowed), else math-verify's own extraction on the
text's tail. Several final boxes joined only by connectors ("and", commas, `\\quad`, `$x = ...$`) are one answer, a set
(as math-verify reads them); a "The final answer is ..." statement after the last box wins over it. Answer and gold
are parsed and compared with math-verify: fractions (`\\dfrac`), decimals, percentages, thousands separators
(`1,000`, `1 000`, `10\\,000`, `10,\\!000`), units, intervals, sets/tuples, matrices, systems (`cases`), expressions,
negatives and `x = 5`:

    >>> acc = make_accuracy()
    >>> acc(["<answer> \\\\dfrac{1}{2} </answer>", "\\\\boxed{0.5}", "<answer> x = -3 </answer>", "it is 1,000 m"],
    ...     answer=["1/2", "\\\\frac12", "-3", "1000"])
    [1.0, 1.0, 1.0, 1.0]
    >>> acc(["\\\\boxed{2} and \\\\boxed{6}", "\\\\boxed{2} or \\\\boxed{6}", "<answer> 1 000 </answer>"],
    ...     answer=["2, 6", "6", "0"])
    [1.0, 0.0, 0.0]
    >>> acc(["<answer> 4 </answer>"], answer=["not a number {"])  # unparseable gold
    [None]

(Two boxes make the set {2, 6}: right for the gold "2, 6", a hedge against the gold 6; `1 000` is a thousand.)

The gold comes from the `answer` column, or `solution` (open-r1's name) when there is no `answer`. Both a bare value
and a dataset's worked solution work: MATH/NuminaMath's "... $\\boxed{5}$." (its final boxes), GSM8K's
"... #### 72" (the value after the last `####`):

    >>> acc(["<answer> 72 </answer>", "<answer> 24 </answer>"], solution=["48/2 = <<48/2=24>>24 ... #### 72"] * 2)
    [1.0, 0.0]

`after_think=True` judges only the text after the last `</think>` (`reasoning_delimiters`), as TRL's
`reasoning_accuracy_reward`: an answer that appears only inside the reasoning, or reasoning that never closes,
scores 0.0.

Each gold string is extracted and parsed once per process (bounded cache), so a GRPO group of G completions costs
one gold parse.

Timeouts. math-verify's own timeouts use `signal.alarm`, which (1) fails outside the main thread, (2) shares the
process's single ITIMER_REAL with our per-item `deadline` (its `alarm(0)` would cancel ours), (3) has whole-second
granularity and (4) is swallowed into a `False`/`[]` result, so timeouts could not be counted. We therefore call
math-verify with `parsing_timeout=None` / `timeout_seconds=None` and bound each item with our own `deadline`
(rewards/scoring/deadline.py): in the scorer's workers the worker times each item (and the parent kills a worker stuck in C
code); called directly (e.g. by TRL, in the main thread) each item gets `timeout_s` and scores 0.0 on timeout.
"""
from __future__ import annotations

import logging
import re
from collections import OrderedDict
from typing import Any

from rewards.scoring.deadline import ItemTimeout, fired_count, run_with_deadline
from rewards.extract import (DEFAULT_MAX_CHARS, THINK_CLOSE, after_reasoning, cap_tail, clean_answer, completion_text,
                             find_answer)
from rewards.math.hedges import hedged, prose_property
from rewards.math.normalize import looks_like_prose, math_delimit_environments, normalize_separators, rewrite_environments
from rewards.scoring.registry import register_reward

logger = logging.getLogger(__name__)

_INTEGER = re.compile(r"[+-]?\d{1,15}")
_GSM8K_MARK = "####"
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


def parse_answer(s: str, source: str = "answer") -> list:
    """math-verify's parse of one answer candidate. A bare answer is parsed as the content of \\boxed{} (LaTeX
    extraction of the whole string); prose, `$...$` math and whole texts (`source="text"`) go through math-verify's
    own extraction. Systems (`cases`, `aligned`) are read as the list of their rows, and a matrix inside prose is
    delimited as math first, so that neither collapses to its last entry."""
    mv = _math_verify()
    if not s:
        return []
    if source == "text":
        return mv.parse(math_delimit_environments(normalize_separators(s, spaces=False)), parsing_timeout=None)
    s = rewrite_environments(s)
    if "$" in s or looks_like_prose(s):
        return mv.parse(math_delimit_environments(s), parsing_timeout=None)
    parsed = mv.parse("\\boxed{" + s + "}", parsing_timeout=None)
    if not _has_math(parsed):
        parsed = mv.parse(s, parsing_timeout=None) or parsed
    return parsed


def parse_parts(parts: tuple[str, ...], source: str, ordered: bool = False) -> list:
    """One part: `parse_answer`. Several (final boxes): the set of their values, flattened (`\\boxed{1, 2},
    \\boxed{3}` is {1, 2, 3}), as math-verify reads boxes joined by "and"/","; with `ordered` (the gold is a tuple
    or an interval, e.g. (2, 3)) the tuple of their values in the order written. [] if any part is not math."""
    if len(parts) == 1:
        return parse_answer(parts[0], source)
    from sympy import FiniteSet, Tuple
    values: list = []
    for part in parts:
        value = next((p for p in parse_answer(part, source) if not isinstance(p, str)), None)
        if value is None:
            return []
        values.extend(value.args if isinstance(value, FiniteSet) and not ordered else [value])
    try:
        return [(Tuple if ordered else FiniteSet)(*values), ", ".join(parts)]
    except Exception:  # noqa: BLE001 (e.g. an unhashable mutable matrix among the parts)
        return []


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


_GOLD_TEXT = _LRU()  # gold string -> (parts, source): its final answer, extracted
_GOLDS = _LRU()  # gold string -> parsed gold (tuple) or None
_TIMED_OUT = _LRU()  # (parts, source, gold) that timed out here: a second reward on the same item (cosine after
_JUDGED = _LRU()  # accuracy) fails fast instead of burning another timeout; _JUDGED caches finished verdicts


def gold_answer(gold: str) -> tuple[tuple[str, ...], str]:
    """The final answer inside a gold value, as `find_answer` gives it for a completion: GSM8K's "... #### 72" ->
    ("72",); a worked solution (MATH, NuminaMath) -> its final boxes or final statement; anything else is a bare
    value. Cached per process.

    >>> gold_answer("48/2 = <<48/2=24>>24 clips.\\n#### 72")
    (('72',), 'answer')
    >>> gold_answer("so $x = \\\\boxed{2}$ or $x = \\\\boxed{6}$.")
    (('2', '6'), 'boxed')
    """
    cached = _GOLD_TEXT.get(gold, _GOLD_TEXT)
    if cached is not _GOLD_TEXT:
        return cached
    s = gold.strip()
    value = s[s.rfind(_GSM8K_MARK) + len(_GSM8K_MARK):].strip() if _GSM8K_MARK in s else None
    if _INTEGER.fullmatch(s):
        result = (s,), "answer"
    elif value is not None and "\n" not in value and "\\boxed" not in s:  # "#### 72" ends the text (a markdown
        result = (clean_answer(value),), "answer"  # heading "#### Step 1" in a worked solution does not)
    else:
        result = find_answer(s)
        if result[1] == "text":  # no box, tag or statement: the gold is the value itself
            result = (clean_answer(s),), "answer"
    _GOLD_TEXT.put(gold, result, 4096)
    return result


def parse_gold(gold: str) -> tuple | None:
    """The parsed gold answer, or None if math-verify finds no mathematical object in it. Cached per process, so a
    batch (or a GRPO group) sharing a gold parses it once."""
    cached = _GOLDS.get(gold, _GOLDS)  # (a bounded FIFO; get() rather than `in` + [], safe if another thread evicts)
    if cached is not _GOLDS:
        return cached
    fired = fired_count()
    parts, _ = gold_answer(gold)
    if len(parts) == 1 and prose_property(parts[0]):  # "Always greater than 20": a property, not a value
        _GOLDS.put(gold, None, 4096)
        return None
    parsed = parse_parts(*gold_answer(gold))
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


ANSWER_FROM = ("anywhere", "tag_or_box")  # where `accuracy` reads the answer (see make_accuracy)


def judge(text: str, gold: Any, max_chars: int = DEFAULT_MAX_CHARS, fast_integers: bool = True,
          after_think: bool = False, reasoning_delimiters: tuple[str, ...] = (THINK_CLOSE,),
          answer_from: str = "anywhere") -> float | None:
    """1.0 if the final answer in `text` equals `gold`, 0.0 if not (or no answer found), None if gold is unparseable.
    With `after_think`, only the text after the reasoning counts (0.0 if the reasoning never closes). With
    `answer_from="tag_or_box"` only an <answer> tag or a final \\boxed{} is read (0.0 without either). May raise
    ItemTimeout (from an enclosing deadline)."""
    if gold is None:
        return None
    gold = str(gold)
    if len(gold) > max_chars:
        return None
    if after_think:
        text = after_reasoning(text, reasoning_delimiters)
        if text is None:
            return None if parse_gold(gold) is None else 0.0
    parts, source = find_answer(cap_tail(text, max_chars), strict=answer_from == "tag_or_box")
    if source == "none":
        return None if parse_gold(gold) is None else 0.0
    if fast_integers and source != "text" and len(parts) == 1:
        gold_parts, _ = gold_answer(gold)
        verdict = integer_verdict(parts[0], gold_parts[0]) if len(gold_parts) == 1 else None
        if verdict is not None:
            return verdict
    key = (parts, source, gold) if sum(map(len, parts)) <= 1000 else None
    if key is not None:
        cached = _JUDGED.get(key, _JUDGED)
        if cached is not _JUDGED:
            return cached
        if key in _TIMED_OUT:
            raise ItemTimeout("timed out before on this answer")
    fired = fired_count()
    try:
        value = _judge(parts, source, gold)
        if fired_count() != fired:
            raise ItemTimeout("interrupted")  # swallowed somewhere inside: the verdict is not trustworthy
    except ItemTimeout:
        if key is not None:
            _TIMED_OUT.put(key, True, 256)
        raise
    if key is not None:
        _JUDGED.put(key, value, 4096)
    return value


def _ordered(gold_parsed: tuple) -> bool:
    """Whether the gold is an ordered pair/tuple (an open interval (2, 3) may be the pair (2, 3)): several boxes
    are then compared in the order written."""
    from sympy import Interval, Tuple
    value = next((p for p in gold_parsed if not isinstance(p, str)), None)
    return isinstance(value, (Tuple, Interval))


def _judge(parts: tuple[str, ...], source: str, gold: str) -> float | None:
    gold_parsed = parse_gold(gold)
    if gold_parsed is None:
        return None
    if source != "text" and hedged(parts, gold_answer(gold)[0], gold_parsed):
        return 0.0  # several candidates, a negation, a range or an inequality, against a single-value gold
    pred = parse_parts(parts, source, ordered=len(parts) > 1 and _ordered(gold_parsed))
    if not pred:
        return 0.0
    return 1.0 if _math_verify().verify(list(gold_parsed), pred, timeout_seconds=None) else 0.0


def _check_positive(reward: str, **values: Any) -> None:
    for k, v in values.items():
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)) or v <= 0):
            raise ValueError(f"reward {reward!r}: parameter {k!r} must be a positive number, got {v!r}")


def gold_column(reward: str, answer: list | None, solution: list | None, kwargs: dict) -> list:
    """The gold answers: the `answer` column, else its alias `solution` (open-r1's and many datasets' name)."""
    if answer is not None:
        return answer
    if solution is not None:
        return solution
    raise ValueError(f"reward {reward!r} needs an 'answer' column (or its alias 'solution'); columns: "
                     f"{', '.join(sorted(kwargs)) or 'none'}")


GOLD_COLUMNS = (("answer", "solution"),)  # `requires`: one of these columns


@register_reward("accuracy", factory=True)
def make_accuracy(timeout_s: float | None = 5.0, max_chars: int = DEFAULT_MAX_CHARS, fast_integers: bool = True,
                  after_think: bool = False, reasoning_delimiters: list[str] | tuple[str, ...] = (THINK_CLOSE,),
                  answer_from: str = "anywhere"):
    """1.0/0.0 per completion against the `answer` (or `solution`) column (None: gold unparseable). `timeout_s`: per
    item, when called outside the scorer's workers; `max_chars`: only the text's tail of that length is parsed;
    `fast_integers`: compare plain integers (<= 15 digits) directly instead of through math-verify (same verdict);
    `after_think`: judge only the text after the last of `reasoning_delimiters` (0.0 when the reasoning never
    closes); `answer_from`: where the answer is read, `tag_or_box` (the R1 recipes: the last <answer> tag, else the
    final \\boxed{}; any other text scores 0.0, as R1 asks for the answer "in a specified format" so that rules can
    verify it) or `anywhere` (also a "The answer is ..." statement, else math-verify's reading of the text's tail,
    e.g. its last number)."""
    if answer_from not in ANSWER_FROM:
        raise ValueError(f"reward 'accuracy': parameter 'answer_from' must be one of {', '.join(ANSWER_FROM)}, got "
                         f"{answer_from!r}")
    _check_positive("accuracy", timeout_s=timeout_s, max_chars=max_chars)
    for name, value in (("fast_integers", fast_integers), ("after_think", after_think)):
        if not isinstance(value, bool):
            raise ValueError(f"reward 'accuracy': parameter {name!r} must be true or false, got {value!r}")
    if (not isinstance(reasoning_delimiters, (list, tuple)) or not reasoning_delimiters
            or not all(isinstance(d, str) and d for d in reasoning_delimiters)):
        raise ValueError(f"reward 'accuracy': parameter 'reasoning_delimiters' must be a non-empty list of non-empty "
                         f"strings, got {reasoning_delimiters!r}")
    max_chars, delimiters = int(max_chars), tuple(reasoning_delimiters)

    def accuracy(completions: list, answer: list | None = None, solution: list | None = None,
                 **kwargs: Any) -> list[float | None]:
        golds = gold_column("accuracy", answer, solution, kwargs)
        warmup()
        out: list[float | None] = []
        timeouts = 0
        for c, gold in zip(completions, golds, strict=True):
            text = completion_text(c)
            value = run_with_deadline(lambda: judge(text, gold, max_chars, fast_integers, after_think, delimiters,
                                                        answer_from),
                                      timeout_s, on_timeout="timeout")
            if value == "timeout":
                timeouts, value = timeouts + 1, 0.0
            out.append(value)
        if timeouts:
            logger.warning("accuracy: %d completion(s) timed out after %ss and scored 0.0", timeouts, timeout_s)
        return out

    accuracy.warmup, accuracy.requires = warmup, GOLD_COLUMNS
    return accuracy
