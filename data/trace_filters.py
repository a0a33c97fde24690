"""The rejection-sampling filters of R1's distillation data (§2.3.3), as pure functions of strings.

DeepSeek-R1 kept only correct reasoning and "filtered out chain-of-thought with mixed languages, long paragraphs, and
code blocks"; open-r1 adds exact/near-duplicate removal and decontamination of the training prompts against the
evaluation sets. rl/distill.py applies them; the mixed-language filter is the `language_consistency` reward in
`filter.keep_if` (rewards/form/language.py), so it is scored like accuracy and format.

Words are lower-cased runs of letters/digits and single punctuation marks; a text's n-grams are its word n-grams, or
the whole word sequence when it has fewer than n words (so short prompts are compared exactly).

    >>> ngrams("What is 3 + 4?", 3) == {("what", "is", "3"), ("is", "3", "+"), ("3", "+", "4"), ("+", "4", "?")}
    True
    >>> round(jaccard(ngrams("a b c d", 2), ngrams("a b c e", 2)), 3)   # {ab, bc, cd} vs {ab, bc, ce}: 2 / 4
    0.5
    >>> index = NgramIndex(["What is 3 + 4 * 5 ?"], 8)                # 7 words < 8: the whole question is its gram
    >>> index.overlaps("what is 3 + 4 * 5 ?"), index.overlaps("What is 3 + 4 * 6 ?")
    (True, False)
    >>> has_code_block("```python\\nprint(1)\\n```"), longest_paragraph("ab\\n\\nabcd")
    (True, 4)
"""
from __future__ import annotations

import re

_WORD = re.compile(r"\w+|[^\w\s]")
_PARAGRAPH_BREAK = re.compile(r"\n\s*\n")


def words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def ngrams(text: str, n: int) -> set[tuple[str, ...]]:
    """Word n-grams of `text` (the whole word tuple when shorter than n; empty for a text without words)."""
    w = words(text)
    if len(w) < n:
        return {tuple(w)} if w else set()
    return {tuple(w[i:i + n]) for i in range(len(w) - n + 1)}


def jaccard(a: set, b: set) -> float:
    """|a ∩ b| / |a ∪ b| (1.0 for two empty sets)."""
    if not a and not b:
        return 1.0
    return len(a & b) / len(a | b)


class NgramIndex:
    """The n-grams of a set of texts (e.g. every evaluation prompt), to test other texts for overlap."""

    def __init__(self, texts: list[str], n: int = 8):
        self.n = n
        self.grams: set[tuple[str, ...]] = set()
        for t in texts:
            self.grams |= ngrams(t, n)

    def overlaps(self, text: str) -> bool:
        """True when `text` shares at least one n-gram with the indexed texts."""
        return not self.grams.isdisjoint(ngrams(text, self.n))


def has_code_block(text: str) -> bool:
    """A fenced code block (```) anywhere in the text."""
    return "```" in text


def longest_paragraph(text: str) -> int:
    """Characters of the longest paragraph (paragraphs are separated by blank lines)."""
    return max((len(p.strip()) for p in _PARAGRAPH_BREAK.split(text)), default=0)
