"""countdown: equations over the given numbers, evaluated by a safe parser (never eval)."""
from __future__ import annotations

import time

import pytest

from rewards import get_reward
from rewards.math.countdown import evaluate

CD = get_reward("countdown")
NUMS, TARGET = [6, 4, 3], 30

CASES = [  # (completion, expected) for nums [6, 4, 3], target 30
    ("<answer> (6 + 4) * 3 </answer>", 1.0),
    ("<answer>3*(4+6)</answer>", 1.0),
    ("<answer> (6 + 4) * 3 = 30 </answer>", 1.0),  # a trailing "= result" is allowed
    ("<answer> (6 + 4) \u00d7 3 </answer>", 1.0),  # multiplication sign
    ("<think> try 6*5 </think> <answer> (6+4)*3 </answer>", 1.0),
    ("thinking...\n(6 + 4) * 3", 1.0),  # no answer tag: the last line
    ("<answer> 6 + 4 * 3 </answer>", 0.0),  # 18: precedence matters
    ("<answer> 6 * 5 </answer>", 0.0),  # 5 is not given, 4 and 3 unused
    ("<answer> (6 + 4) * 3 * 1 </answer>", 0.0),  # 1 is not given
    ("<answer> (6 + 4 + 4) * 3 </answer>", 0.0),  # 4 used twice
    ("<answer> 6 * 4 + 3 </answer>", 0.0),  # 27
    ("<answer> 6 / (4 - 4) * 3 </answer>", 0.0),  # division by zero, and 4 twice
    ("<answer> -6 + 4 * 3 </answer>", 0.0),  # no unary minus
    ("<answer> (6 + 4) ** 3 </answer>", 0.0),  # no powers
    ("<answer> __import__('os').system('echo pwned') </answer>", 0.0),
    ("<answer> (lambda: 30)() </answer>", 0.0),
    ("<answer> 6e1 / 4 </answer>", 0.0),
    ("<answer></answer>", 0.0),
    ("", 0.0),
    (None, 0.0),
    ("<answer>" + "(" * 10_000 + "6" + ")" * 10_000 + "</answer>", 0.0),  # too long / too deep
    ("<answer>" + "9" * 100_000 + "</answer>", 0.0),  # huge integer
]


@pytest.mark.parametrize("completion,expected", CASES)
def test_countdown(completion, expected):
    start = time.perf_counter()
    assert CD([completion], nums=[NUMS], target=[TARGET]) == [expected]
    assert time.perf_counter() - start < 0.5


def test_division_is_exact():
    # 7 / 2 * 4 = 14 exactly with rationals
    assert CD(["<answer> 7 / 2 * 4 </answer>"], nums=[[7, 2, 4]], target=[14]) == [1.0]
    # 1 / 3 * 3 = 1 exactly (floats would also pass here, rationals never drift)
    assert CD(["<answer> 1 / 3 * 3 </answer>"], nums=[[1, 3, 3]], target=[1]) == [1.0]


def test_format_score_and_none():
    cd = get_reward("countdown", format_score=0.1)
    out = cd(["<answer> 6 + 4 * 3 </answer>", "<answer> 6 * 5 </answer>", "<answer> 1 </answer>"],
             nums=[NUMS, NUMS, None], target=[TARGET, TARGET, 1])
    assert out == [0.1, 0.0, None]  # valid equation, wrong value -> format_score; invalid -> 0; no nums -> None


def test_missing_columns_is_an_error():
    with pytest.raises(ValueError, match="countdown.*nums"):
        CD(["<answer> 1 </answer>"])


def test_evaluate_never_uses_eval(monkeypatch):
    import builtins
    monkeypatch.setattr(builtins, "eval", lambda *a, **k: pytest.fail("eval called"))
    assert evaluate("((6 + 4)) * 3")[0] == 30
    with pytest.raises(ValueError):
        evaluate("(((1)")
    with pytest.raises(ValueError):
        evaluate("(" * 40 + "1" + ")" * 40)  # deeper than 32


@pytest.mark.parametrize("params,match", [({"format_score": 2}, "countdown.*format_score"),
                                          ({"max_chars": 0}, "countdown.*max_chars")])
def test_bad_params(params, match):
    with pytest.raises(ValueError, match=match):
        get_reward("countdown", **params)
