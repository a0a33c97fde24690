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


def test_chat_messages():
    rep = get_reward("repetition", ngram_size=3)
    assert rep([[{"role": "assistant", "content": "a b c a b c"}]]) == [pytest.approx(-0.25)]


@pytest.mark.parametrize("params,match", [
    ({"max_penalty": 0.5}, "repetition.*max_penalty.*<= 0"),
    ({"ngram_size": 0}, "repetition.*ngram_size"),
    ({"ngram_size": 2.5}, "repetition.*ngram_size"),
    ({"max_words": 0}, "repetition.*max_words"),
    ({"n": 3}, "repetition.*unknown parameter 'n'"),
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
    assert time.perf_counter() - start < 1.0
