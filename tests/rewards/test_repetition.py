"""repetition: n-gram repetition penalty = max_penalty * (1 - distinct n-grams / total n-grams)."""
from __future__ import annotations

import time

import pytest

from rewards import get_reward

CASES = [  # (completion, ngram_size, max_penalty, expected)
    ("a b c a b c", 3, -1.0, -0.25),  # abc bca cab abc: T=4, U=3 -> -(1 - 3/4)
    ("a b c d e f", 3, -1.0, 0.0),  # all distinct
    ("a b", 3, -1.0, 0.0),  # fewer words than n
    ("", 3, -1.0, 0.0),
    (None, 3, -1.0, 0.0),
    ("x x x x x x", 2, -1.0, -0.8),  # 5 bigrams, all "x x": -(1 - 1/5)
    ("x x x x x x", 2, -0.5, -0.4),  # -0.5 * 0.8
    ("A b A B a b", 2, -1.0, -0.6),  # lower-cased: ab ba ab ba ab -> T=5, U=2 -> -(1 - 2/5)
    ("the cat the cat", 1, -1.0, -0.5),  # unigrams: T=4, U=2
    ("a b c a b c", 3, 0.0, 0.0),  # max_penalty 0 switches it off
]


@pytest.mark.parametrize("completion,n,max_penalty,expected", CASES)
def test_repetition_values(completion, n, max_penalty, expected):
    rep = get_reward("repetition", ngram_size=n, max_penalty=max_penalty)
    assert rep([completion]) == [pytest.approx(expected)]


# Unspaced languages (issue 11): with the default `language="auto"` every CJK character (Han, kana, CJK punctuation)
# is a token of its own, so Chinese and Japanese are scored on character n-grams; other text is split on whitespace,
# exactly as with `language="en"` (open-r1's), which sees a whole Chinese sentence as one word.
CJK = [  # (completion, language, ngram_size, expected)
    ("这个这个这个这个这个", "auto", 2, -(1 - 2 / 9)),  # 10 characters: 9 bigrams, 2 distinct (这个, 个这)
    ("这个这个这个这个这个", "zh", 2, -(1 - 2 / 9)),  # open-r1's language name: the same character n-grams
    ("这个这个这个这个这个", "en", 2, 0.0),  # one whitespace "word": never penalised (the old behaviour)
    ("答案是 42 答案是 42", "auto", 2, -(1 - 4 / 7)),  # 答 案 是 42 答 案 是 42: 7 bigrams, 4 distinct
    ("我今天去商店买了三个苹果", "auto", 3, 0.0),  # no repeated character trigram
    ("ですですですです", "ja", 2, -(1 - 2 / 7)),  # kana
    ("重复。重复。重复。", "auto", 3, -(1 - 3 / 7)),  # CJK punctuation is a token: 9 tokens, 7 trigrams, 3 distinct
    ("a b c a b c", "auto", 3, -0.25),  # no CJK: the same as "en"
    ("abcabc", "char", 3, -0.25),  # every non-space character is a token, in any script
    ("반복 반복 반복 반복", "auto", 2, -(1 - 1 / 3)),  # Korean is written with spaces: whitespace words
]


@pytest.mark.parametrize("completion,language,n,expected", CJK)
def test_unspaced_languages(completion, language, n, expected):
    rep = get_reward("repetition", ngram_size=n, language=language)
    assert rep([completion]) == [pytest.approx(expected)]


def test_auto_equals_en_without_cjk():
    auto, en = get_reward("repetition", ngram_size=2), get_reward("repetition", ngram_size=2, language="en")
    texts = [c for c, *_ in CASES if c] + ["The cat, the cat; THE CAT.", "x = 1\n x = 1", "émigré émigré émigré"]
    assert auto(texts) == en(texts)


def test_chat_messages():
    rep = get_reward("repetition", ngram_size=3)
    assert rep([[{"role": "assistant", "content": "a b c a b c"}]]) == [pytest.approx(-0.25)]


@pytest.mark.parametrize("params,match", [
    ({"max_penalty": 0.5}, "repetition.*max_penalty.*<= 0"),
    ({"ngram_size": 0}, "repetition.*ngram_size"),
    ({"ngram_size": 2.5}, "repetition.*ngram_size"),
    ({"max_words": 0}, "repetition.*max_words"),
    ({"n": 3}, "repetition.*unknown parameter 'n'"),
    ({"language": "fr"}, "repetition.*language.*auto, en, zh, ja, char"),
])
def test_bad_params(params, match):
    with pytest.raises(ValueError, match=match):
        get_reward("repetition", **params)


def test_hostile_1mb_is_fast_and_bounded():
    rep = get_reward("repetition", ngram_size=3, max_words=1000)
    start = time.perf_counter()
    # only the first 1000 words count: "ab ab ab ..." -> 998 trigrams, 1 distinct: -(1 - 1/998)
    assert rep(["ab " * 400_000]) == [pytest.approx(-(1 - 1 / 998))]
    assert get_reward("repetition")(["\ud800 " * 300_000])[0] <= 0
    # 1 MB of Chinese, one token per character: bounded by max_words tokens as well
    rep = get_reward("repetition", ngram_size=2, max_words=1000)
    assert rep(["这个" * 500_000]) == [pytest.approx(-(1 - 2 / 999))]
    assert time.perf_counter() - start < 1.0
