"""cosine and soft_overlong: values derived by hand (arithmetic in the comments)."""
from __future__ import annotations

import math

import pytest

from rewards import get_reward

RIGHT, WRONG = "<answer> 4 </answer>", "<answer> 5 </answer>"


# Defaults: correct goes from max_value_correct=1.0 (L=0) to min_value_correct=0.5 (L>=max_len); wrong goes from
# min_value_wrong=-1.0 (L=0) to max_value_wrong=-0.5 (L>=max_len). r = lo + (hi - lo) * (1 + cos(pi * L/max_len)) / 2.
COSINE_CASES = [  # (completion, length, expected) with max_len=100
    (RIGHT, 0, 1.0),  # 0.5 + 0.5 * (1 + cos 0) / 2 = 0.5 + 0.5 = 1.0
    (RIGHT, 25, 0.5 + 0.5 * (1 + math.sqrt(2) / 2) / 2),  # cos(pi/4) = 0.7071 -> 0.9268
    (RIGHT, 50, 0.75),  # cos(pi/2) = 0 -> 0.5 + 0.5 * 0.5
    (RIGHT, 100, 0.5),  # cos(pi) = -1 -> 0.5
    (RIGHT, 1000, 0.5),  # clamped at max_len
    (WRONG, 0, -1.0),  # lo=-0.5, hi=-1.0: -0.5 + (-0.5) * (1 + 1) / 2 = -1.0
    (WRONG, 50, -0.75),  # -0.5 + (-0.5) * 0.5
    (WRONG, 100, -0.5),  # long wrong answers are penalised less
    (WRONG, 5000, -0.5),
]


@pytest.mark.parametrize("completion,length,expected", COSINE_CASES)
def test_cosine_values(completion, length, expected):
    cos = get_reward("cosine", max_len=100)
    assert cos([completion], answer=["4"], completion_length=[length]) == [pytest.approx(expected)]


def test_cosine_custom_range_and_none():
    cos = get_reward("cosine", max_len=10, min_value_correct=0.0, max_value_correct=2.0, min_value_wrong=-2.0,
                     max_value_wrong=0.0)
    # correct, L=5: 0 + 2 * (1 + cos(pi/2)) / 2 = 1.0; wrong, L=5: 0 + (-2 - 0) * 0.5 = -1.0; unparseable gold: None
    assert cos([RIGHT, WRONG, RIGHT], answer=["4", "4", "{"], completion_length=[5, 5, 5]) == [1.0, -1.0, None]


def test_cosine_length_sources():
    cos = get_reward("cosine", max_len=100)
    # TRL's completion_ids: 50 tokens -> 0.75 (see above)
    assert cos([RIGHT], answer=["4"], completion_ids=[[7] * 50]) == [pytest.approx(0.75)]
    # no token information: characters. len(RIGHT) = 20 -> 0.5 + 0.5 * (1 + cos(pi/5)) / 2 = 0.5 + 0.25 * 1.809 = 0.9523
    assert cos([RIGHT], answer=["4"]) == [pytest.approx(0.5 + 0.25 * (1 + math.cos(math.pi / 5)))]
    chat = [[{"role": "assistant", "content": RIGHT}]]
    assert cos(chat, answer=["4"], completion_length=[0]) == [1.0]


@pytest.mark.parametrize("params,match", [
    ({"max_len": 0}, "cosine.*max_len"),
    ({"min_value_correct": 2.0}, "cosine.*min_value_correct <= max_value_correct"),
    ({"max_value_wrong": "x"}, "cosine.*max_value_wrong"),
    ({"tokenizer": 3}, "cosine.*tokenizer"),
])
def test_cosine_bad_params(params, match):
    with pytest.raises(ValueError, match=match):
        get_reward("cosine", **params)


# DAPO with max_len=100, buffer=20: 0 up to L=80, then (80 - L) / 20 down to -1 at L=100, -1 beyond.
OVERLONG_CASES = [
    (0, 0.0),
    (80, 0.0),  # exactly max_len - buffer: no punishment yet
    (81, -0.05),  # (80 - 81) / 20
    (90, -0.5),  # (80 - 90) / 20
    (99, -0.95),  # (80 - 99) / 20
    (100, -1.0),
    (101, -1.0),
    (10_000, -1.0),
]


@pytest.mark.parametrize("length,expected", OVERLONG_CASES)
def test_soft_overlong_values(length, expected):
    so = get_reward("soft_overlong", max_len=100, buffer=20)
    assert so(["x"], completion_length=[length]) == [pytest.approx(expected)]
    assert so(["x"], completion_ids=[[1] * length]) == [pytest.approx(expected)]  # TRL's kwarg


class _WordTokenizer:
    """A stand-in tokenizer: one token per whitespace-separated word."""

    def encode(self, text, add_special_tokens=False):
        return text.split()


def test_soft_overlong_with_tokenizer():
    so = get_reward("soft_overlong", max_len=10, buffer=4, tokenizer=_WordTokenizer())
    # 6 words: <= 10 - 4 -> 0; 8 words: (6 - 8) / 4 = -0.5; 12 words: -1
    assert so(["w " * 6, "w " * 8, "w " * 12, None]) == [0.0, -0.5, -1.0, 0.0]


def test_soft_overlong_needs_token_lengths():
    with pytest.raises(ValueError, match="soft_overlong.*completion_length"):
        get_reward("soft_overlong")(["text"])


@pytest.mark.parametrize("params,match", [
    ({"max_len": 0}, "soft_overlong.*max_len"),
    ({"buffer": -1}, "soft_overlong.*buffer"),
    ({"max_len": 10, "buffer": 20}, "soft_overlong.*buffer.*<= max_len"),
    ({"max_len": 10.5}, "soft_overlong.*max_len"),
])
def test_soft_overlong_bad_params(params, match):
    with pytest.raises(ValueError, match=match):
        get_reward("soft_overlong", **params)
