"""Text helpers shared by the rewards: completion text, input caps, tags, `\\boxed{}` and final-answer extraction.
All linear-time.

    >>> completion_text([{"role": "assistant", "content": "<answer> 7 </answer>"}])
    '<answer> 7 </answer>'
    >>> extract_answer("<think> 3+4 </think> <answer> The sum is \\\\boxed{7}. </answer>")
    ('7', 'boxed')
    >>> extract_answer("so x = \\\\boxed{\\\\frac{1}{2}}")
    ('\\\\frac{1}{2}', 'boxed')
    >>> extract_answer("I think it's 12")
    ("I think it's 12", 'text')
    >>> last_boxed("\\\\boxed{a{b}c} and \\\\boxed{d")  # the last one is unbalanced: skipped
    'a{b}c'

Several final boxes joined only by connectors (commas, "and"/"or", `\\quad`, `\\text{and}`, `$`, `x =`) are one
answer in several parts; a box followed by other words is superseded by the next one (a self-correction):

    >>> find_answer("The solutions are $x = \\\\boxed{2}$ and $x = \\\\boxed{6}$.")
    (('2', '6'), 'boxed')
    >>> find_answer("\\\\boxed{5}. Wait, that is wrong: \\\\boxed{6}")
    (('6',), 'boxed')

A final-answer statement after the last box wins over it (the box held an intermediate result):

    >>> find_answer("Each crate holds \\\\boxed{10}. The final answer is $10,455$. I hope it is correct.")
    (('10455',), 'answer')
"""
from __future__ import annotations

import re
import unicodedata
from typing import Any

from rewards.math.hedges import cut_justification
from rewards.math.normalize import normalize_separators

THINK_OPEN, THINK_CLOSE, ANSWER_OPEN, ANSWER_CLOSE = "<think>", "</think>", "<answer>", "</answer>"
TAGS = (THINK_OPEN, THINK_CLOSE, ANSWER_OPEN, ANSWER_CLOSE)
DEFAULT_MAX_CHARS = 20_000
MAX_PARTS = 32  # at most this many final boxes make one answer

_ZERO_WIDTH = dict.fromkeys(map(ord, "\u200b\u200c\u200d\u2060\ufeff\u00ad"))
_BOX_TOKENS = re.compile(r"\\\\|\\(?:boxed|fbox)\s*\{|\\[{}]|[{}]")
# What may stand between two boxes of one answer: whitespace, punctuation, math delimiters, spacing commands, a short
# \text{...} ("and", "for part (a) and"), and/or, and a variable being assigned ("x_1 =").
_CONNECTOR = re.compile(r"""(?:\s|[,;&~]|\$|\\[()\[\],;:!\ ]|\\\\|\\q?quad(?![A-Za-z])
    |\\(?:text|mbox|textrm|mathrm|textnormal)\s*\{[^{}$\\]{0,40}\}|(?<![A-Za-z])(?:and|or)(?![A-Za-z])
    |(?<![A-Za-z\\])[A-Za-z](?:_\{?[A-Za-z0-9]{1,3}\}?)?\s*=)*""", re.X)
_MAX_GAP = 80
# ... or a few words with "and"/"or" among them ("papers and", "for part (a) and"), without sentence punctuation
_LATEX_NOISE = re.compile(r"\\(?:text|mbox|textrm|mathrm|textnormal)\s*\{|\\q?quad(?![A-Za-z])|\\[()\[\],;:! ]|[{}$~]")
_WORDY_GAP = re.compile(r"[\sA-Za-z,;()]*")
_AND_OR = re.compile(r"(?<![A-Za-z])(?:and|or)(?![A-Za-z])")
_WORD = re.compile(r"[A-Za-z]+")
# "The final answer is X", "Final Answer: X", "**Final Answer:** X" (not "... is the final answer.")
_FINAL = re.compile(r"final\s+answer(?:\s*\*\*)?\s*(?:is\b\s*:?|:|=)\s*(?:\*\*)?\s*", re.I)
# "The answer is 7, since ...": a statement too, when no "final answer" one exists and its value has math in it
_STATED = re.compile(r"(?<![A-Za-z])answer\s+is\s*:?\s*", re.I)
_HAS_MATH = re.compile(r"[0-9\\$]")
_DELIMS = (("$$", "$$"), ("$", "$"), ("\\(", "\\)"), ("\\[", "\\]"))
_SENTENCE_END = re.compile(r"\n|\.(?:\s|$)|\.?$")
_MAX_STATEMENT = 300


def completion_text(completion: Any) -> str:
    """The text of one completion: a string, a chat-message list (the assistant contents joined), or None -> ''."""
    if completion is None:
        return ""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, dict):
        return str(completion.get("content") or "")
    if isinstance(completion, (list, tuple)):
        parts = []
        for m in completion:
            if isinstance(m, dict):
                if m.get("role", "assistant") == "assistant":
                    parts.append(_content_text(m.get("content")))
            elif isinstance(m, str):
                parts.append(m)
        return "".join(parts)
    return str(completion)


def _content_text(content: Any) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # multimodal content parts: [{"type": "text", "text": ...}]
        return "".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return str(content)


def cap_tail(text: str, max_chars: int) -> str:
    """The last `max_chars` characters (a final answer lives at the end of a completion)."""
    return text if len(text) <= max_chars else text[-max_chars:]


def last_tag_content(text: str, open_tag: str, close_tag: str) -> str | None:
    """Content of the last `open_tag ... close_tag` block, or None."""
    end = text.rfind(close_tag)
    if end < 0:
        return None
    start = text.rfind(open_tag, 0, end)
    if start < 0:
        return None
    return text[start + len(open_tag):end]


def after_reasoning(text: str, delimiters: tuple[str, ...] | list[str] = (THINK_CLOSE,)) -> str | None:
    """The text after the last occurrence of the first delimiter found (TRL's `reasoning_accuracy_reward`), or None
    when the reasoning never closes.

    >>> after_reasoning("<think> maybe 4 </think> it is 5"), after_reasoning("<think> maybe 4")
    (' it is 5', None)
    """
    for delim in delimiters:
        at = text.rfind(delim)
        if at >= 0:
            return text[at + len(delim):]
    return None


def boxed_spans(text: str) -> list[tuple[int, int, int]]:
    """(start of `\\boxed`, start of content, closing brace) of every balanced top-level box, in order. One pass over
    the braces (nested and escaped braces allowed; a box inside a box belongs to the outer one)."""
    if "\\boxed" not in text and "\\fbox" not in text:
        return []
    spans = []
    stack: list[tuple[int, int] | None] = []  # an open brace: (box start, content start) for a box, else None
    boxes_open = 0
    for m in _BOX_TOKENS.finditer(text):
        tok = m.group()
        if tok[0] == "\\" and len(tok) == 2:
            continue  # \\ (line break), \{ or \} (escaped brace)
        if tok == "{":
            stack.append(None)
        elif tok == "}":
            if not stack:
                continue
            top = stack.pop()
            if top is not None:
                boxes_open -= 1
                if boxes_open == 0:
                    spans.append((top[0], top[1], m.start()))
        else:  # \boxed{
            stack.append((m.start(), m.end()))
            boxes_open += 1
    return spans


def last_boxed(text: str) -> str | None:
    """Content of the last balanced `\\boxed{...}` (nested braces allowed), or None. Linear in len(text)."""
    spans = boxed_spans(text)
    return text[spans[-1][1]:spans[-1][2]] if spans else None


def _joins(gap: str) -> bool:
    """Whether the text between two boxes joins them into one answer: connectors only, or at most five words with
    "and"/"or" among them and no sentence end ("papers and" joins; "no wait," and "Wait. That is wrong:" do not)."""
    if len(gap) > _MAX_GAP:
        return False
    if _CONNECTOR.fullmatch(gap):
        return True
    words = _LATEX_NOISE.sub(" ", gap)
    return bool(_WORDY_GAP.fullmatch(words) and _AND_OR.search(words) and len(_WORD.findall(words)) <= 5)


def _final_boxes(text: str, spans: list[tuple[int, int, int]]) -> list[str]:
    """Contents of the last box and of the boxes before it that `_joins` connects to it."""
    first = len(spans) - 1
    while first > 0 and len(spans) - first < MAX_PARTS:
        if not _joins(text[spans[first - 1][2] + 1:spans[first][0]]):
            break
        first -= 1
    return [text[b:e] for _, b, e in spans[first:]]


def final_statement(text: str, start: int = 0) -> str | None:
    """The value of the last "final answer is ..." statement that begins at or after `start`: the math of its first
    `$...$` / `\\(...\\)` / `\\[...\\]`, else the rest of its sentence. None if there is none (or it is empty)."""
    if "nswer" not in text and "NSWER" not in text:
        return None
    last = None
    for m in _FINAL.finditer(text, start):
        last = m
    if last is None:
        for m in _STATED.finditer(text, start):
            last = m
        if last is None or not _HAS_MATH.search(text, last.end(), last.end() + _MAX_STATEMENT):
            return None
    rest = text[last.end():last.end() + _MAX_STATEMENT]
    for open_, close in _DELIMS:
        if rest.startswith(open_):
            end = rest.find(close, len(open_))
            while end > 0 and rest[end - 1] == "\\" and close[0] == "$":  # \$ is a dollar sign, not the end
                end = rest.find(close, end + 1)
            value = rest[len(open_):end] if end >= 0 else ""
            return value.strip() or None
    m = _SENTENCE_END.search(rest)
    value = cut_justification(rest[:m.start()].strip() if m else rest.strip())
    return value or None


def clean_answer(s: str) -> str:
    """NFKC-normalise (full-width digits -> ASCII), drop zero-width characters and `\\$` (currency), strip
    whitespace, enclosing math delimiters (`$...$`, `$$...$$`, `\\(...\\)`, `\\[...\\]`) and a final period, and remove
    thousands separators (`1 000`, `10\\,000`)."""
    s = unicodedata.normalize("NFKC", s).translate(_ZERO_WIDTH).replace("\\$", "").strip()
    for open_, close in _DELIMS:  # one enclosing $$...$$, $...$, \(...\) or \[...\]
        if s.startswith(open_) and s.endswith(close) and len(s) >= len(open_) + len(close):
            inner = s[len(open_):len(s) - len(close)]
            if open_ not in inner and close not in inner:
                s = inner.strip()
            break
    if s.endswith(".") and not s[:-1].rstrip().endswith("."):
        s = s[:-1].rstrip()
    return normalize_separators(s)


def _dedupe(parts: list[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(p for p in parts if p)) or ("",)


def _final_in(text: str) -> tuple[tuple[str, ...], str] | None:
    """The final boxes of `text`, or a final statement after them; None if `text` has neither."""
    spans = boxed_spans(text)
    statement = final_statement(text, spans[-1][2] + 1 if spans else 0)
    if statement is not None:
        return (clean_answer(statement),), "answer"
    if spans:
        return _dedupe([clean_answer(b) for b in _final_boxes(text, spans)]), "boxed"
    return None


def find_answer(text: str, strict: bool = False) -> tuple[tuple[str, ...], str]:
    """The final answer of `text` as one or more parts, and where it came from:

    - `answer`/`boxed`: inside the last <answer>...</answer>, its final boxes (`boxed`) or its whole content;
    - `boxed`: else the final boxes of the text (one part each, duplicates merged);
    - `answer`: a "final answer is ..." statement after the last box (or in a text without boxes);
    - `text`: else the whole text, for math-verify's own extraction.

    `strict`: only the first two (an answer in the format a prompt asks for, which rules can verify); a text with
    neither gives `((), "none")`:

    >>> find_answer("xx 12 yy 9 zz"), find_answer("xx 12 yy 9 zz", strict=True)
    ((('xx 12 yy 9 zz',), 'text'), ((), 'none'))
    >>> find_answer("so \\\\boxed{9}. The answer is 8", strict=True), find_answer("The answer is 8.", strict=True)
    ((('9',), 'boxed'), ((), 'none'))
    """
    content = last_tag_content(text, ANSWER_OPEN, ANSWER_CLOSE)
    if content is not None:
        found = _final_in(content)
        return found if found is not None else ((cut_justification(clean_answer(content)),), "answer")
    if strict:
        spans = boxed_spans(text)
        return (_dedupe([clean_answer(b) for b in _final_boxes(text, spans)]), "boxed") if spans else ((), "none")
    found = _final_in(text)
    return found if found is not None else ((text,), "text")


def extract_answer(text: str) -> tuple[str, str]:
    """`find_answer` as one string: several parts are joined with ", " (a majority vote compares these)."""
    parts, source = find_answer(text)
    return ", ".join(parts), source
