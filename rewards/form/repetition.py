"""`repetition`: n-gram repetition penalty (open-r1's, after Yeo et al. 2025).

Tokens are the lower-cased whitespace-separated words; with the default `language="auto"`, every CJK character (Han,
kana, CJK punctuation) is a token of its own as well, since Chinese and Japanese are written without spaces (open-r1
offers `language="zh"` with jieba word segmentation; character n-grams need no extra package). With T n-grams of
which U are distinct,

    penalty = max_penalty * (1 - U / T)        (0 when there are fewer than n words)

so a text without repeated n-grams scores 0 and a text that is one n-gram over and over tends to `max_penalty`.
`max_penalty` must be <= 0 (a positive value would reward repetition: a ValueError).

    >>> rep = make_repetition(ngram_size=3, max_penalty=-1.0)
    >>> rep(["a b c a b c", "a b c d e f", "a b"])
    [-0.25, 0.0, 0.0]

("a b c a b c": 3-grams abc, bca, cab, abc -> T=4, U=3 -> -1 * (1 - 3/4) = -0.25.)

    >>> make_repetition(ngram_size=2)(["这个这个这个", "答案是 42 答案是 42"])
    [-0.6, -0.4285714285714286]

(这个 个这 这个 个这 这个: T=5, U=2 -> -0.6; 答案 案是 是42 42答 答案 案是 是42: T=7, U=4 -> -3/7.)
    >>> make_repetition(ngram_size=2, language="en")(["这个这个这个"])  # one whitespace "word"
    [0.0]

`language`: "auto" (the default; text without CJK characters is split exactly as "en"), "en" (whitespace words
only), "zh"/"ja" (the same as "auto": accepted for open-r1 recipes), "char" (every non-space character is a token,
in any script).
"""
from __future__ import annotations

import re
from typing import Any

from rewards.extract import completion_text
from rewards.scoring.registry import register_reward


_CJK = "\u3001-\u303f\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uff01-\uff65"
_AUTO_TOKENS = re.compile(f"[{_CJK}]|[^\\s{_CJK}]+")
_CHAR_TOKENS = re.compile(r"\S")
LANGUAGES = ("auto", "en", "zh", "ja", "char")


def tokens(text: str, language: str = "auto") -> list[str]:
    """The lower-cased tokens that n-grams are made of (see the module docstring)."""
    text = text.lower()
    if language == "en":
        return text.split()
    if language == "char":
        return _CHAR_TOKENS.findall(text)
    return _AUTO_TOKENS.findall(text)


def repetition_penalty(text: str, ngram_size: int, max_penalty: float, max_words: int | None = None,
                       language: str = "auto") -> float:
    words = tokens(text, language)[:max_words]
    total = len(words) - ngram_size + 1
    if total <= 0:
        return 0.0
    distinct = len(set(zip(*(words[i:] for i in range(ngram_size)))))
    return max_penalty * (1.0 - distinct / total) or 0.0  # never -0.0


@register_reward("repetition", factory=True, cheap=True)
def make_repetition(ngram_size: int = 3, max_penalty: float = -1.0, max_words: int = 100_000, language: str = "auto"):
    """Penalty in [max_penalty, 0] for repeated n-grams of tokens (words; CJK characters with `language` auto/zh/ja;
    all characters with "char"); only the first `max_words` tokens are counted."""
    if isinstance(ngram_size, bool) or not isinstance(ngram_size, int) or ngram_size < 1:
        raise ValueError(f"reward 'repetition': parameter 'ngram_size' must be an integer >= 1, got {ngram_size!r}")
    if isinstance(max_penalty, bool) or not isinstance(max_penalty, (int, float)):
        raise ValueError(f"reward 'repetition': parameter 'max_penalty' must be a number, got {max_penalty!r}")
    if max_penalty > 0:
        raise ValueError(f"reward 'repetition': parameter 'max_penalty' must be <= 0, got {max_penalty!r}")
    if isinstance(max_words, bool) or not isinstance(max_words, int) or max_words < 1:
        raise ValueError(f"reward 'repetition': parameter 'max_words' must be an integer >= 1, got {max_words!r}")
    if language not in LANGUAGES:
        raise ValueError(f"reward 'repetition': parameter 'language' must be one of {', '.join(LANGUAGES)}, "
                         f"got {language!r}")
    max_chars = max_words * 64  # cut the text before split(), so that the work stays bounded on huge inputs

    def repetition(completions: list, **kwargs: Any) -> list[float]:
        out = []
        for c in completions:
            text = completion_text(c)[:max_chars]
            out.append(repetition_penalty(text, ngram_size, float(max_penalty), max_words, language))
        return out

    return repetition
