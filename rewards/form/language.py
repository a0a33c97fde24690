"""`language_consistency`: the share of the chain of thought written in the target language (DeepSeek-R1 §2.3.2).

R1-Zero's chains mixed languages; R1 adds this reward, "the proportion of target language words in the CoT", to
accuracy + format and accepts a small accuracy cost for readable chains. Detection here is by script, which is all
the distinction the R1 case needs (Chinese words inside an English chain, or the reverse):

    a CJK word   every Han / kana / hangul character (these scripts are written without spaces)
    a Latin word every maximal run of Latin letters (accents included)
    neither      digits, operators, punctuation, tags: they belong to no language and are not counted

    score = target words / (CJK words + Latin words)      target `language`: "en" (Latin) or "zh" (CJK)

The chain of thought is the text inside the last <think>...</think>, or everything before </think> when the prompt
prefilled <think> (R1-Distill templates); `scope: "all"` scores the whole completion instead. No chain (no
</think>) scores 0.0; a chain with no words at all (only arithmetic) scores 1.0: nothing in it is mixed.

    >>> lc = make_language_consistency(language="en")
    >>> lc(["<think> add 2 and 3 </think> <answer> 5 </answer>", "<think> add 2 和 3 </think> 5", "5"])
    [1.0, 0.5, 0.0]

("add 2 和 3": Latin words add; CJK words 和 -> 1 / 2. "5": no chain.)
"""
from __future__ import annotations

import re
from typing import Any

from rewards.extract import THINK_CLOSE, THINK_OPEN, completion_text
from rewards.scoring.registry import register_reward

_CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uac00-\ud7af\u1100-\u11ff"
_CJK_WORD = re.compile(f"[{_CJK}]")
_LATIN_WORD = re.compile(r"[A-Za-z\u00c0-\u024f]+")
LANGUAGES = ("en", "zh")
SCOPES = ("think", "all")


def word_counts(text: str) -> tuple[int, int]:
    """(Latin words, CJK words) of `text`. Example: "add 2 和 3 then 加" -> (2, 2)."""
    return len(_LATIN_WORD.findall(text)), len(_CJK_WORD.findall(text))


def chain_of_thought(text: str) -> str | None:
    """The reasoning of an R1-style completion: inside the last <think>...</think>, or before </think> when the
    template prefilled <think>; None without </think>."""
    end = text.rfind(THINK_CLOSE)
    if end < 0:
        return None
    start = text.rfind(THINK_OPEN, 0, end)
    return text[start + len(THINK_OPEN):end] if start >= 0 else text[:end]


def consistency(text: str, language: str = "en", scope: str = "think") -> float:
    """The score of one completion text (see the module docstring)."""
    chain = text if scope == "all" else chain_of_thought(text)
    if chain is None:
        return 0.0
    latin, cjk = word_counts(chain)
    if latin + cjk == 0:
        return 1.0
    return (latin if language == "en" else cjk) / (latin + cjk)


def mixes_languages(text: str, language: str = "en") -> bool:
    """Whether the chain of thought of `text` has a word outside the target language (what the evaluation reports
    as the share of completions that mix languages; no chain, no mixing):

    >>> [mixes_languages(t) for t in ["<think> 先算 4*5=20, 再算 3+20=23 </think>", "<think> 4*5=20 </think>", "23"]]
    [True, False, False]
    """
    chain = chain_of_thought(text)
    if chain is None:
        return False
    latin, cjk = word_counts(chain)
    return (cjk if language == "en" else latin) > 0


@register_reward("language_consistency", factory=True, cheap=True)
def make_language_consistency(language: str = "en", scope: str = "think"):
    """Build the reward; `language` is the target ("en" | "zh"), `scope` what is scored ("think" | "all")."""
    if language not in LANGUAGES:
        raise ValueError(f"language_consistency: language {language!r} is not one of {', '.join(LANGUAGES)}")
    if scope not in SCOPES:
        raise ValueError(f"language_consistency: scope {scope!r} is not one of {', '.join(SCOPES)}")

    def language_consistency(completions: list, **columns: Any) -> list[float | None]:
        return [consistency(completion_text(c), language, scope) for c in completions]
    return language_consistency
