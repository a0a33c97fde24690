"""Text helpers shared by the rewards: completion text, input caps, tag and `\\boxed{}` extraction. All linear-time.

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
"""
from __future__ import annotations

import re
import unicodedata
from typing import Any

THINK_OPEN, THINK_CLOSE, ANSWER_OPEN, ANSWER_CLOSE = "<think>", "</think>", "<answer>", "</answer>"
TAGS = (THINK_OPEN, THINK_CLOSE, ANSWER_OPEN, ANSWER_CLOSE)
DEFAULT_MAX_CHARS = 20_000

_ZERO_WIDTH = dict.fromkeys(map(ord, "\u200b\u200c\u200d\u2060\ufeff\u00ad"))
_BOXED = re.compile(r"\\(?:boxed|fbox)\s*\{")
_BRACE = re.compile(r"\\[{}]|[{}]")


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


def last_boxed(text: str) -> str | None:
    """Content of the last balanced `\\boxed{...}` (nested braces allowed), or None. Linear in len(text)."""
    starts = [m.end() for m in _BOXED.finditer(text)]
    for begin in reversed(starts):
        depth = 1
        for m in _BRACE.finditer(text, begin):
            c = m.group()
            if len(c) == 2:
                continue  # escaped brace: \{ \}
            depth += 1 if c == "{" else -1
            if depth == 0:
                return text[begin:m.start()]
        # unbalanced: try an earlier \boxed. Each scan runs to the end of the text, so give up after a few.
        if len(starts) > 64:
            return None
    return None


def clean_answer(s: str) -> str:
    """NFKC-normalise (full-width digits -> ASCII), drop zero-width characters and `\\$` (currency), strip
    whitespace, enclosing `$...$` and a final period."""
    s = unicodedata.normalize("NFKC", s).translate(_ZERO_WIDTH).replace("\\$", "").strip()
    if len(s) >= 2 and s[0] == "$" and s[-1] == "$" and s.count("$") == 2:
        s = s[1:-1].strip()
    if s.endswith(".") and not s[:-1].rstrip().endswith("."):
        s = s[:-1].rstrip()
    return s


def extract_answer(text: str) -> tuple[str, str]:
    """The final-answer candidate and where it came from:

    - `answer`: content of the last <answer>...</answer> (or the last \\boxed{} inside it, tagged `boxed`);
    - `boxed`: else the last balanced \\boxed{...};
    - `text`: else the whole text, for math-verify's own extraction.
    """
    content = last_tag_content(text, ANSWER_OPEN, ANSWER_CLOSE)
    if content is not None:
        boxed = last_boxed(content)
        if boxed is not None:
            return clean_answer(boxed), "boxed"
        return clean_answer(content), "answer"
    boxed = last_boxed(text)
    if boxed is not None:
        return clean_answer(boxed), "boxed"
    return text, "text"
