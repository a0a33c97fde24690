"""`repetition`: n-gram repetition penalty (open-r1's, after Yeo et al. 2025).

Words are the lower-cased whitespace-separated tokens. With T n-grams of which U are distinct,

    penalty = max_penalty * (1 - U / T)        (0 when there are fewer than n words)

so a text without repeated n-grams scores 0 and a text that is one n-gram over and over tends to `max_penalty`.
`max_penalty` must be <= 0 (a positive value would reward repetition: a ValueError).

    >>> rep = make_repetition(ngram_size=3, max_penalty=-1.0)
    >>> rep(["a b c a b c", "a b c d e f", "a b"])
    [-0.25, 0.0, 0.0]

("a b c a b c": 3-grams abc, bca, cab, abc -> T=4, U=3 -> -1 * (1 - 3/4) = -0.25.)
"""
from __future__ import annotations

from typing import Any

from rewards.extract import completion_text
from rewards.registry import register_reward


def repetition_penalty(text: str, ngram_size: int, max_penalty: float, max_words: int | None = None) -> float:
    words = text.lower().split()[:max_words]
    total = len(words) - ngram_size + 1
    if total <= 0:
        return 0.0
    distinct = len(set(zip(*(words[i:] for i in range(ngram_size)))))
    return max_penalty * (1.0 - distinct / total) or 0.0  # never -0.0


@register_reward("repetition", factory=True, cheap=True)
def make_repetition(ngram_size: int = 3, max_penalty: float = -1.0, max_words: int = 100_000):
    """Penalty in [max_penalty, 0] for repeated word n-grams; only the first `max_words` words are counted."""
    if isinstance(ngram_size, bool) or not isinstance(ngram_size, int) or ngram_size < 1:
        raise ValueError(f"reward 'repetition': parameter 'ngram_size' must be an integer >= 1, got {ngram_size!r}")
    if isinstance(max_penalty, bool) or not isinstance(max_penalty, (int, float)):
        raise ValueError(f"reward 'repetition': parameter 'max_penalty' must be a number, got {max_penalty!r}")
    if max_penalty > 0:
        raise ValueError(f"reward 'repetition': parameter 'max_penalty' must be <= 0, got {max_penalty!r}")
    if isinstance(max_words, bool) or not isinstance(max_words, int) or max_words < 1:
        raise ValueError(f"reward 'repetition': parameter 'max_words' must be an integer >= 1, got {max_words!r}")
    max_chars = max_words * 64  # cut the text before split(), so that the work stays bounded on huge inputs

    def repetition(completions: list, **kwargs: Any) -> list[float]:
        out = []
        for c in completions:
            text = completion_text(c)[:max_chars]
            out.append(repetition_penalty(text, ngram_size, float(max_penalty), max_words))
        return out

    return repetition
