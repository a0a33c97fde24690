"""Hedged math answers earn nothing unless the gold is itself a set, interval or inequality; a prose gold that states
a property is not judged; a stated answer followed by its justification is the stated answer (rewards/math/hedges.py)."""
from __future__ import annotations

import pytest

from rewards import get_reward
from rewards.math.hedges import cut_justification, hedge_kind


@pytest.fixture(scope="module")
def acc():
    return get_reward("accuracy")


HEDGES = {  # class -> [(answer, gold)]: each scored 1.0 before this rule
    "candidates": [("either 5 or 6", "6"), ("either 6 or 7", "6"), ("6, or possibly 5", "6"), ("maybe 6", "6"),
                   ("\\pm 3", "3"), ("x = \\pm 2", "2")],
    "negation": [("not 9", "9"), ("\\neq 9", "9"), ("x \\neq 4", "4"), ("anything except 3", "3"),
                 ("9 is not possible", "9")],
    "range": [("between 3 and 9", "9"), ("between 3 and 9", "3"), ("from 2 to 10", "10"), ("3 to 9", "9"),
              ("x \\in [3, 9]", "9"), ("somewhere within 1 of 5", "5")],
    "inequality": [("at least 4", "4"), ("at most 12", "12"), ("less than 10", "10"), ("no more than 4", "4"),
                   ("x \\geq 4", "4"), ("x > 3", "3"), ("greater than 7", "7"), ("12 or more", "12")],
    # A bare condition scores 0 (decided with issue 25 item 11): `x = 7 when y = 2` states x for one y only, which is
    # either the question restated (then the bare value says the same) or a partial answer; and it is how a
    # piecewise hedge begins (`7 when y = 2, 8 otherwise`). Before, math-verify read such strings to their LAST
    # number: the two cases marked * scored 1.0. Where a value is attained is said with "attained at/when"
    # (test_a_justification_after_the_answer_is_not_the_answer).
    "conditional": [("x = 7 when y = 2", "7"), ("x = 7 when y = 2", "2"),  # * (gold 2)
                    ("7 when y = 2, 8 otherwise", "8"),  # *
                    ("7 if n is odd", "7"), ("7, when m = n = 1", "7"),
                    ("7, attained at m = 1; otherwise 8", "7")],  # another value in the tail: not cut
}


@pytest.mark.parametrize("kind, answer, gold", [(k, a, g) for k, cases in HEDGES.items() for a, g in cases])
def test_hedges_score_zero_against_a_single_value(acc, kind, answer, gold):
    assert hedge_kind(answer) == kind
    assert acc([f"<think> hmm </think> <answer> {answer} </answer>"], answer=[gold]) == [0.0]
    assert acc([f"The answer is $\\boxed{{{answer}}}$"], answer=[gold]) == [0.0]


@pytest.mark.parametrize("answer, gold", [
    ("2 or 6", "2, 6"), ("2 and 6", "2, 6"), ("x = 2 or x = 6", "2, 6"),  # the gold is a set
    ("x > 3", "x > 3"), ("x \\geq 4", "x \\geq 4"),  # an inequality
    ("[3, 9]", "[3, 9]"), ("(3, 9)", "(3, 9)"),  # an interval
    ("\\pm 3", "\\pm 3"),  # the gold itself holds both signs
])
def test_set_interval_and_inequality_golds_allow_them(acc, answer, gold):
    assert acc([f"<answer> {answer} </answer>"], answer=[gold]) == [1.0]


@pytest.mark.parametrize("answer, gold", [
    ("6", "6"), ("x = 5", "5"), ("5 apples", "5"), ("\\frac{1}{2}", "0.5"), ("-3", "-3"), ("(2, 3)", "(2, 3)"),
    ("3 \\text{ cm}", "3"), ("\\infty", "\\infty"), ("1,000", "1000"), ("\\left( 1, 2 \\right)", "(1, 2)"),
])
def test_plain_answers_are_not_hedges(acc, answer, gold):
    assert hedge_kind(answer) is None
    assert acc([f"<answer> {answer} </answer>"], answer=[gold]) == [1.0]


@pytest.mark.parametrize("gold", ["Always greater than 20", "at least 4", "It is never less than 3",
                                  "not 5", "between 2 and 3 inclusive"])
def test_prose_golds_stating_a_property_cannot_be_judged(acc, gold):
    assert acc(["<answer> 7 </answer>", "<answer> 20 </answer>", "<answer> 4 </answer>"], answer=[gold] * 3) == \
        [None, None, None]


@pytest.mark.parametrize("text, gold, value", [
    ("The answer is 7, since m = n = 1", "7", 1.0),
    ("The answer is 7, since m = n = 1", "1", 0.0),
    ("<answer> The answer is 7, since m = n = 1 </answer>", "7", 1.0),
    ("<answer> 7, since m = n = 1 </answer>", "7", 1.0),
    ("<answer> 12 because 3 * 4 = 12 </answer>", "12", 1.0),
    ("<answer> 15, where a = 3 and b = 5 </answer>", "15", 1.0),
    ("So the answer is $\\frac{1}{2}$, as shown above with 4 terms.", "1/2", 1.0),
    ("The answer is 42.", "42", 1.0),
    # where the value is attained (issue 25 item 11): each scored 0.0 against its gold before, and the first against
    # the gold 1 scored 1.0 (math-verify read the last number, the witness m = n = 1)
    ("<answer>7, attained at m = n = 1</answer>", "7", 1.0),
    ("<answer>7, attained at m = n = 1</answer>", "1", 0.0),
    ("<answer> 7 (attained at m = n = 1) </answer>", "7", 1.0),
    ("<answer> 7, achieved when x = 2 </answer>", "7", 1.0),
    ("<answer> x = 7, which is attained when y = 2 </answer>", "7", 1.0),
    ("<answer> 7, with equality when a = b = 1 </answer>", "7", 1.0),
    ("<answer> 7, equality holds iff a = b </answer>", "7", 1.0),
    ("<answer> 7, attained at m = n = 1 or m = 2 </answer>", "7", 1.0),  # "or" among the witnesses, not the values
    ("<answer> \\frac{1}{2}, attained at x = 1 </answer>", "1/2", 1.0),
    ("<answer> 7, since otherwise the sum exceeds 20 </answer>", "7", 1.0),  # "since otherwise" is reasoning
    # ... and a hedge before the clause is still a hedge
    ("<answer> 7 or 8, attained at m = n = 1 </answer>", "7", 0.0),
    ("<answer> between 3 and 9, attained at m = 5 </answer>", "5", 0.0),
    ("<answer> not 9, attained at m = 1 </answer>", "9", 0.0),
    ("<answer> 7, attained at m = 1; otherwise 8 </answer>", "8", 0.0),
    ("<answer> 7, attained at m = 1, or else 8 </answer>", "7", 0.0),
])
def test_a_justification_after_the_answer_is_not_the_answer(acc, text, gold, value):
    assert acc([text], answer=[gold]) == [value]


@pytest.mark.parametrize("s, cut", [
    ("7, since m = n = 1", "7"), ("7 because 3 + 4 = 7", "7"), ("x = 5, where x > 0", "x = 5"),
    ("10; hence the total", "10"), ("x = 5", "x = 5"), ("since 5", "since 5"), ("\\frac{a}{b}", "\\frac{a}{b}"),
    ("7, attained at m = n = 1", "7"), ("7 attained at m = 1", "7"), ("7 (attained at m = n = 1)", "7"),
    ("7 (since m = n)", "7"), ("7, with equality at a = b", "7"), ("x = 7, which is achieved when y = 2", "x = 7"),
    ("7 or 8, attained at m = 1", "7 or 8"), ("x = 7 when y = 2", "x = 7 when y = 2"),
    ("7, attained at m = 1; otherwise 8", "7, attained at m = 1; otherwise 8"),
    ("7, since otherwise 8 > 7", "7"),
])
def test_cut_justification(s, cut):
    assert cut_justification(s) == cut
