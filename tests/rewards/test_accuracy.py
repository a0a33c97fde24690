"""accuracy: messy-but-correct answers, wrong answers, extraction priority, None golds, hostile inputs."""
from __future__ import annotations

import time

import pytest

from rewards import get_reward
from rewards.math import accuracy as ma

ACC = get_reward("accuracy", timeout_s=1.0)

CORRECT = [  # (completion, gold): all must score 1.0
    ("<think> 3+4*5 </think> <answer> 23 </answer>", "23"),
    ("<answer>\\dfrac{3}{4}</answer>", "0.75"),
    ("<answer>\\frac{1}{2}</answer>", "1/2"),
    ("<answer>0.5</answer>", "\\frac12"),
    ("<answer>1/2</answer>", "\\frac{1}{2}"),
    ("<answer>-\\frac{1}{2}</answer>", "-0.5"),
    ("<answer>50\\%</answer>", "50\\%"),
    ("<answer>0.5</answer>", "50\\%"),
    ("<answer>3.5%</answer>", "0.035"),
    ("<answer>1,000</answer>", "1000"),
    ("<answer>1{,}000</answer>", "1000"),
    ("<answer>1,000,000</answer>", "1000000"),
    ("<answer>10000</answer>", "10,000"),
    ("<answer>5 cm</answer>", "5"),
    ("<answer>12 dollars</answer>", "12"),
    ("<answer>12 \\text{ dollars}</answer>", "12"),
    ("<answer>\\$12.50</answer>", "12.5"),
    ("<answer>x = 5</answer>", "5"),
    ("<answer>5</answer>", "x=5"),
    ("<answer>-7</answer>", "-7"),
    ("<answer>\u22127</answer>", "-7"),  # unicode minus sign
    ("<answer>(1, 2]</answer>", "(1,2]"),
    ("<answer>[0, 1)</answer>", "[0,1)"),
    ("<answer>x \\in [2, 5]</answer>", "[2,5]"),
    ("<answer>\\{1,2,3\\}</answer>", "\\{3,2,1\\}"),
    ("<answer>(3, 4)</answer>", "(3,4)"),
    ("<answer>x^2+2x+1</answer>", "(x+1)^2"),
    ("<answer>2\\sqrt{2}</answer>", "\\sqrt{8}"),
    ("<answer>2^{10}</answer>", "1024"),
    ("<answer>The answer is 42.</answer>", "42"),
    ("<answer>42.</answer>", "42"),
    ("<answer>\\boxed{7}</answer>", "7"),
    ("<answer>\uff15</answer>", "5"),  # full-width digit, NFKC-normalised
    ("<answer>4\u200b2</answer>", "42"),  # zero-width space inside the number
    ("The final answer is $\\boxed{\\frac{2}{3}}$.", "2/3"),
    ("\\boxed{\\frac{\\sqrt{3}}{2}}", "\\frac{\\sqrt3}{2}"),
    ("so it's 7", "7"),  # no tags, no box: math-verify's own extraction
    ("<answer>7</answer> <answer>8</answer>", "8"),  # the last answer block counts
    ("\\boxed{5} no wait \\boxed{6}", "6"),  # the last box counts
    ("<answer>6</answer> and then \\boxed{5}", "6"),  # <answer> beats \boxed
    (42, "42"),  # not even a string
]

WRONG = [  # must score 0.0
    ("<answer>24</answer>", "23"),
    ("<answer>0.3</answer>", "1/3"),
    ("<answer>-5</answer>", "5"),
    ("<answer>(1, 2)</answer>", "[1,2]"),
    ("<answer>5</answer> <answer>8</answer>", "5"),
    ("<answer></answer>", "7"),
    ("<answer>   </answer>", "7"),
    ("", "7"),
    (None, "7"),
    ("no numbers here", "7"),
    ("<answer>\u0417</answer>", "3"),  # Cyrillic Ze looks like 3: not a digit
]

UNPARSEABLE_GOLD = [None, "", "   ", "not a number {", "hello world"]


@pytest.mark.parametrize("completion,gold", CORRECT)
def test_correct(completion, gold):
    assert ACC([completion], answer=[gold]) == [1.0]


@pytest.mark.parametrize("completion,gold", WRONG)
def test_wrong(completion, gold):
    assert ACC([completion], answer=[gold]) == [0.0]


@pytest.mark.parametrize("gold", UNPARSEABLE_GOLD)
def test_unparseable_gold_is_none_never_rewarded(gold):
    assert ACC(["<answer> 7 </answer>"], answer=[gold]) == [None]


def test_chat_message_completions():
    completions = [[{"role": "assistant", "content": "<think> 2+2 </think> <answer> 4 </answer>"}],
                   [{"role": "assistant", "content": "<answer> 5 </answer>"}],
                   []]
    assert ACC(completions, answer=["4", "4", "4"]) == [1.0, 0.0, 0.0]


def test_trl_kwargs_are_accepted():
    out = ACC(prompts=["p"], completions=["<answer>4</answer>"], completion_ids=[[1, 2]], answer=["4"],
              trainer_state=object(), log_metric=lambda *a: None, log_extra=lambda *a: None)
    assert out == [1.0]


def test_missing_answer_column_is_an_error():
    with pytest.raises(ValueError, match="answer"):
        ACC(["<answer>4</answer>"])


def test_gold_parsed_once_per_batch(monkeypatch):
    ma._GOLDS.clear()
    ma._JUDGED.clear()
    calls = []
    real = ma.parse_answer
    monkeypatch.setattr(ma, "parse_answer", lambda s, source="answer": calls.append(s) or real(s, source))
    gold = "\\frac{17}{32}"
    completions = [f"<answer> {x} </answer>" for x in ("0.53125", "17/32", "1/2", "0.5", "3", "4", "5", "6")]
    assert ACC(completions, answer=[gold] * 8) == [1.0, 1.0, 0, 0, 0, 0, 0, 0]
    assert calls.count(gold) == 1  # 1 gold parse + 8 prediction parses
    assert len(calls) == 9


HOSTILE = {
    "1 MB of text": "a " * 500_000 + "<answer> 5 </answer>",
    "1 MB, no answer": "x" * 1_000_000,
    "10,000 nested braces": "\\boxed{" + "{" * 10_000 + "5" + "}" * 10_000 + "}",
    "10,000 unbalanced braces": "\\boxed{" + "{" * 10_000 + "5",
    "frac tower": "<answer>" + "\\frac{1}{" * 200 + "2" + "}" * 200 + "</answer>",
    "power tower": "<answer>9^{9^{9^{9}}}</answer>",
    "2^2^2^2^2^2": "\\boxed{2^{2^{2^{2^{2^{2}}}}}}",
    "huge integer": "<answer>" + "9" * 100_000 + "</answer>",
    "huge factorial": "<answer>100000!</answer>",
    "look-alike tags": "\uff1canswer\uff1e5\uff1c/answer\uff1e",
    "10,000 joined boxes": "\\boxed{1}, " * 10_000 + "\\boxed{2}",
    "10,000 final statements": "The final answer is " * 10_000,
    "nested systems": "<answer>" + "\\begin{cases} x \\\\ " * 2_000 + "\\end{cases}" * 2_000 + "</answer>",
    "unclosed environments": "\\begin{pmatrix} 1 \\\\ " * 5_000,
    "100,000 digit groups": "<answer>1" + " 000" * 100_000 + "</answer>",
    "empty": "",
    "None": None,
}


@pytest.mark.parametrize("name", list(HOSTILE))
def test_hostile_inputs_return_in_time(name):
    acc = get_reward("accuracy", timeout_s=0.5)
    start = time.perf_counter()
    out = acc([HOSTILE[name]], answer=["7"])
    assert out == [0.0]
    assert time.perf_counter() - start < 2.0  # timeout 0.5 s, plus the cap and math-verify's warm-up


def test_params_are_validated():
    with pytest.raises(ValueError, match="accuracy.*timeout_s"):
        get_reward("accuracy", timeout_s=-1)
    with pytest.raises(ValueError, match="accuracy.*unknown parameter 'tolerance'"):
        get_reward("accuracy", tolerance=0.1)


def test_integer_fast_path_agrees_with_math_verify():
    import random
    rng = random.Random(0)
    slow = get_reward("accuracy", fast_integers=False)
    pairs = [("007", "7"), ("-0", "0"), ("+5", "5"), ("123456789012345", "123456789012345"),
             ("123456789012345", "123456789012344"), ("-12", "12")]
    for _ in range(40):
        g = rng.randint(-10 ** 6, 10 ** 6)
        pairs.append((str(g if rng.random() < 0.5 else g + rng.randint(-3, 3)), str(g)))
    completions = [f"<answer> {p} </answer>" for p, _ in pairs]
    golds = [g for _, g in pairs]
    assert ACC(completions, answer=golds) == slow(completions, answer=golds)
    assert ma.integer_verdict("1234567890123456", "1234567890123456") is None  # 16 digits: math-verify decides


STRICT = get_reward("accuracy", timeout_s=1.0, answer_from="tag_or_box")


@pytest.mark.parametrize("completion, gold, anywhere, tag_or_box", [
    ("xx 12 yy 9 zz", "\\boxed{9}", 1.0, 0.0),              # the case: the last number, no format
    ("3+4=7, 7*5=35. The answer is 35.", "35", 1.0, 0.0),  # a stated answer, not the asked format
    ("<think> 4*5=20 </think> The answer is 23.", "23", 1.0, 0.0),
    ("<think> 4*5=20 </think> <answer> 23 </answer>", "23", 1.0, 1.0),  # the template's tag
    ("so it is \\boxed{23}", "23", 1.0, 1.0),                # a boxed answer
    ("\\boxed{23}, or in words, the answer is 24", "23", 0.0, 1.0),  # strict reads the box, not the statement
    ("<answer> The answer is 23. </answer>", "23", 1.0, 1.0),  # a statement inside the tag is the tag's content
    ("no answer at all", "not a number {", None, None),     # unparseable gold: None either way
])
def test_where_the_answer_is_read(completion, gold, anywhere, tag_or_box):
    assert ACC([completion], answer=[gold]) == [anywhere]
    assert STRICT([completion], answer=[gold]) == [tag_or_box]


def test_answer_from_is_checked():
    with pytest.raises(ValueError, match="parameter 'answer_from' must be one of anywhere, tag_or_box, got 'tag'"):
        get_reward("accuracy", answer_from="tag")
