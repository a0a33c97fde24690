"""accuracy on answer styles real reasoning models write (issue 11): several boxed answers, matrices/arrays/cases,
thousands separators, and the reasoning-only mode (`after_think`). Tables of (completion, gold, expected).

An expected 0.0 is a false-positive guard: a wrong, partial or hedged answer that must not be rewarded."""
from __future__ import annotations

import pytest

from rewards import get_reward

ACC = get_reward("accuracy", timeout_s=2.0)

# -- 1. several boxed answers ("find all solutions") ------------------------------------------------------------------
MULTI_BOX = [
    # the final boxes, joined by connectors (commas, and/or, \quad, \text{and}, $ ... $, x =), are one set answer
    (r"\boxed{(2, 2)} \quad\text{and}\quad \boxed{(6, 2)}", "(2, 2), (6, 2)", 1.0),
    (r"\boxed{(2, 2)} \quad\text{and}\quad \boxed{(6, 2)}", r"\{(2,2),(6,2)\}", 1.0),
    (r"\boxed{(6, 2)} \quad\text{and}\quad \boxed{(2, 2)}", "(2, 2), (6, 2)", 1.0),  # a set: any order
    (r"\boxed{1}, \boxed{2}, \boxed{3}", "1,2,3", 1.0),
    (r"\boxed{1}, \boxed{2}, \boxed{3}", r"\{1,2,3\}", 1.0),
    (r"The solutions are $x = \boxed{-2}$ and $x = \boxed{1}$.", "1, -2", 1.0),
    ("**Final Answer**\nThe integers are \\boxed{-2} and \\boxed{1}.", r"\{-2, 1\}", 1.0),
    (r"so $x = \boxed{2}$ or $x = \boxed{3}$", "2, 3", 1.0),
    ("\\[\n\\boxed{1}\n\\]\n\\[\n\\boxed{2}\n\\]", "1, 2", 1.0),
    (r"\(\boxed{1}\) and \(\boxed{-2}\).", "-2, 1", 1.0),
    (r"\boxed{1, 2}, \boxed{3}", r"\{1, 2, 3\}", 1.0),  # sets inside are flattened, as math-verify does
    (r"<answer> \boxed{1}, \boxed{2} </answer>", r"\{1, 2\}", 1.0),
    (r"\boxed{6} and \boxed{6}", "6", 1.0),  # the same answer twice is one answer
    (r"\boxed{2} and \boxed{3}", "(2, 3)", 1.0),  # an ordered gold: the boxes in the order written
    (r"$x = \boxed{2}$, $y = \boxed{3}$", "(2, 3)", 1.0),
    (r"\boxed{3} apples and \boxed{5} pears", "3, 5", 1.0),  # a few words with "and" join (Math-Verify's units)
    (r"$$\boxed{(3, 3)} \text{ for part (a) and } \boxed{(1, 1)}$$", "(3, 3), (1, 1)", 1.0),
    # a worked intermediate box, then a final statement: the statement counts
    (r"Each crate holds \boxed{10} boxes. ... The final answer is $10,455$. I hope it is correct.", "10455", 1.0),
    (r"Each crate holds \boxed{10} boxes. ... The final answer is $10,455$. I hope it is correct.", "10", 0.0),
    (r"First \boxed{12}. **Final Answer:** 42", "42", 1.0),
    (r"It costs \boxed{10} a box. The final answer is $\$10,455$.", "10455", 1.0),  # \$ inside $...$ is currency
    (r"The final answer is \boxed{5}.", "5", 1.0),  # the statement holds the box itself
    (r"\boxed{5} is the final answer.", "5", 1.0),  # a statement with nothing after it changes nothing
    # false-positive guards: hedges, partial and extra answers
    (r"\boxed{5} or \boxed{6}", "6", 0.0),  # hedging between two answers earns nothing
    (r"$x = \boxed{5}$ or $x = \boxed{6}$", "5", 0.0),
    (r"\boxed{1}, \boxed{2}", r"\{1,2,3\}", 0.0),  # partial
    (r"\boxed{1}, \boxed{2}, \boxed{3}, \boxed{4}", "1,2,3", 0.0),  # extra
    (r"\boxed{(2, 2)} \quad\text{and}\quad \boxed{(6, 3)}", "(2, 2), (6, 2)", 0.0),
    (r"\boxed{5}. Wait, that is wrong. \boxed{6}", "5, 6", 0.0),  # a correction, not a list: the last box counts
    (r"\boxed{5}. Wait, that is wrong. \boxed{6}", "6", 1.0),
    (r"\boxed{5}, no wait, \boxed{6}", "6", 1.0),  # words without and/or do not join
    (r"\boxed{5}, no wait, \boxed{6}", "5, 6", 0.0),
    (r"\boxed{5} is wrong or maybe \boxed{6}", "6", 0.0),  # "or maybe": a hedge, one set, not the gold
    (r"\boxed{3} and \boxed{2}", "(2, 3)", 0.0),  # an ordered pair in the wrong order
    (r"\boxed{3}, \boxed{2}, \boxed{1}", "(1, 2, 3)", 0.0),
    (r"\boxed{3}, \boxed{2}, \boxed{1}", r"\{1, 2, 3\}", 1.0),  # ... while a set has no order
]

# -- 2. matrices, arrays, cases: environment names are not prose -----------------------------------------------------
VEC = r"\begin{pmatrix} -1 \\ 2 \end{pmatrix}"
MAT = r"\begin{bmatrix} 1 & 2 \\ 3 & 4 \end{bmatrix}"
ARR = r"\left(\begin{array}{cc} 1 & 2 \\ 3 & 4 \end{array}\right)"
SYS = r"\begin{cases} x = 1 \\ y = 2 \end{cases}"
ENVIRONMENTS = [
    (f"<answer>{VEC}</answer>", VEC, 1.0),
    (r"<answer>\begin{bmatrix} -1 \\ 2 \end{bmatrix}</answer>", VEC, 1.0),
    (f"The vector is $\\boxed{{{VEC}}}$.", VEC, 1.0),
    (f"<answer>{MAT}</answer>", r"\begin{pmatrix} 1 & 2 \\ 3 & 4 \end{pmatrix}", 1.0),
    (r"<answer>\begin{pmatrix} 1 & 2 \\ 3 & 4 \end{pmatrix}</answer>", ARR, 1.0),
    (f"<answer>{SYS}</answer>", SYS, 1.0),
    (r"<answer>x = 1, y = 2</answer>", SYS, 1.0),
    (r"<answer>\begin{aligned} x &= 1 \\ y &= 2 \end{aligned}</answer>", SYS, 1.0),
    (r"<answer>\begin{Bmatrix} 1 \\ 2 \end{Bmatrix}</answer>", r"\begin{pmatrix} 1 \\ 2 \end{pmatrix}", 1.0),
    # false-positive guards: a partial answer (one entry) never matches a vector, matrix, array or system gold
    ("<answer>2</answer>", VEC, 0.0),
    ("<answer>-1</answer>", VEC, 0.0),
    (r"\boxed{2}", VEC, 0.0),
    ("<answer>2</answer>", r"\begin{bmatrix} -1 \\ 2 \end{bmatrix}", 0.0),
    ("<answer>2</answer>", r"\left(\begin{array}{c} -1 \\ 2 \end{array}\right)", 0.0),
    ("<answer>3</answer>", r"\begin{array}{ccc} 1 & 2 & 3 \end{array}", 0.0),
    ("<answer>4</answer>", MAT, 0.0),
    ("<answer>4</answer>", ARR, 0.0),
    ("<answer>2</answer>", SYS, 0.0),
    ("<answer>y = 2</answer>", SYS, 0.0),
    ("<answer>2</answer>", r"\begin{aligned} x &= 1 \\ y &= 2 \end{aligned}", 0.0),
    ("<answer>2</answer>", r"\begin{Bmatrix} 1 \\ 2 \end{Bmatrix}", 0.0),
    ("<answer>2</answer>", r"\begin{smallmatrix} 1 \\ 2 \end{smallmatrix}", 0.0),
    ("<answer>2</answer>", "(-1, 2)", 0.0),
    (r"<answer>\begin{pmatrix} 2 \\ -1 \end{pmatrix}</answer>", VEC, 0.0),  # entries swapped
    (r"<answer>\begin{pmatrix} 1 & 2 \\ 3 & 5 \end{pmatrix}</answer>", MAT, 0.0),
    # ... and a vector/system answer never matches a gold that is one of its entries
    (f"<answer>{VEC}</answer>", "2", 0.0),
    (r"<answer>The vector is \begin{pmatrix} 1 \\ 2 \end{pmatrix}</answer>", "2", 0.0),
    (r"<answer>\begin{cases} x = 3 \\ y = 2 \end{cases}</answer>", "2", 0.0),
    (r"Thus the answer is \begin{pmatrix} 1 \\ 2 \end{pmatrix}", "2", 0.0),
]

# -- 3. thousands separators ------------------------------------------------------------------------------------------
SEPARATORS = [
    ("<answer>1 000</answer>", "1000", 1.0),
    ("<answer>10\\,000</answer>", "10000", 1.0),
    ("<answer>10{,}000</answer>", "10000", 1.0),
    ("<answer>10,\\!000</answer>", "10000", 1.0),  # MATH's own style
    ("<answer>1\\,000\\,000</answer>", "1000000", 1.0),
    ("<answer>12 345 678</answer>", "12345678", 1.0),
    ("<answer>-1 000</answer>", "-1000", 1.0),
    ("<answer>1 000.5</answer>", "1000.5", 1.0),
    ("<answer>1\\,234.25</answer>", "1234.25", 1.0),
    ("<answer>1\u2009000</answer>", "1000", 1.0),  # thin space
    ("<answer>1\u202f000</answer>", "1000", 1.0),  # narrow no-break space
    ("<answer>1\u00a0000</answer>", "1000", 1.0),  # no-break space
    ("\\boxed{1 000}", "1000", 1.0),
    ("\\boxed{10\\,000}", "10000", 1.0),
    ("<answer>x = 10\\,000</answer>", "10000", 1.0),
    ("<answer>\\$10,\\!000</answer>", "10000", 1.0),
    ("<answer>10000</answer>", "10\\,000", 1.0),  # separators in the gold
    ("<answer>10000</answer>", "10 000", 1.0),
    ("<answer>10 000 \\text{ dollars}</answer>", "10000", 1.0),
    ("The total is $1\\,000$ apples.", "1000", 1.0),
    ("<answer>1,2</answer>", "\\{1,2\\}", 1.0),  # a list stays a list
    ("<answer>1, 2, 3</answer>", "1,2,3", 1.0),
    ("<answer>0,111</answer>", "0.111", 1.0),  # a leading 0 is no thousands group: math-verify's decimal comma
    # false-positive guards: `1 000` used to parse as 1*000 = 0, `10\,000` as 10*0
    ("<answer>1 000</answer>", "0", 0.0),
    ("\\boxed{1 000}", "0", 0.0),
    ("<answer>10\\,000</answer>", "0", 0.0),
    ("<answer>1 000</answer>", "1", 0.0),
    ("<answer>1,2</answer>", "12", 0.0),
    ("<answer>1 2</answer>", "12", 0.0),  # not a 3-digit group: not a separator
    ("<answer>1 0000</answer>", "10000", 0.0),
    ("<answer>10\\,000</answer>", "100", 0.0),
]

# -- 4. reasoning-only mode: only the text after </think> is judged (TRL's reasoning_accuracy_reward) ---------------
AFTER_THINK = [  # (completion, gold, expected with after_think=True, expected by default)
    (r"<think> The answer is \boxed{42} </think> Some other text.", "42", 0.0, 1.0),
    (r"<think> Maybe \boxed{42}, let me check", "42", 0.0, 1.0),  # never concluded
    (r"<think> It is \boxed{42} </think> The answer is \boxed{43}.", "42", 0.0, 0.0),
    (r"<think> 6*7 </think> <answer> 42 </answer>", "42", 1.0, 1.0),
    (r"<think> 6*7 </think> \boxed{42}", "42", 1.0, 1.0),
    (r"6*7 = 42 </think> <answer> 42 </answer>", "42", 1.0, 1.0),  # <think> opened by the chat template
    (r"<think> a </think> b </think> \boxed{42}", "42", 1.0, 1.0),  # after the last </think>
    (r"<think> 42 </think>", "42", 0.0, 1.0),  # nothing after the reasoning
    (r"<answer> 42 </answer>", "42", 0.0, 1.0),  # no reasoning block at all
]


@pytest.mark.parametrize("completion,gold,expected", MULTI_BOX)
def test_several_boxed_answers(completion, gold, expected):
    assert ACC([completion], answer=[gold]) == [expected]


@pytest.mark.parametrize("completion,gold,expected", ENVIRONMENTS)
def test_matrices_arrays_cases(completion, gold, expected):
    assert ACC([completion], answer=[gold]) == [expected]


@pytest.mark.parametrize("completion,gold,expected", SEPARATORS)
def test_thousands_separators(completion, gold, expected):
    assert ACC([completion], answer=[gold]) == [expected]


@pytest.mark.parametrize("completion,gold,after,default", AFTER_THINK)
def test_after_think(completion, gold, after, default):
    assert get_reward("accuracy", timeout_s=2.0, after_think=True)([completion], answer=[gold]) == [after]
    assert ACC([completion], answer=[gold]) == [default]


def test_after_think_custom_delimiters_and_unparseable_gold():
    acc = get_reward("accuracy", after_think=True, reasoning_delimiters=["</REASONING_END>"])
    texts = [r"<REASONING_START> work </REASONING_END> \boxed{\frac{63}{400}}", r"<think> a </think> \boxed{7}"]
    assert acc(texts, answer=[r"\frac{63}{400}", "7"]) == [1.0, 0.0]
    # the gold decides first: an unparseable gold is None (cannot judge), closed reasoning or not
    acc = get_reward("accuracy", after_think=True)
    assert acc(["<think> no end", "<think> a </think> 7"], answer=["forty two", "forty two"]) == [None, None]


@pytest.mark.parametrize("params,match", [
    ({"after_think": "yes"}, "accuracy.*after_think.*true or false"),
    ({"after_think": True, "reasoning_delimiters": []}, "accuracy.*reasoning_delimiters"),
    ({"after_think": True, "reasoning_delimiters": ["</think>", ""]}, "accuracy.*reasoning_delimiters"),
    ({"after_think": True, "reasoning_delimiters": "</think>"}, "accuracy.*reasoning_delimiters"),
])
def test_after_think_params_are_validated(params, match):
    with pytest.raises(ValueError, match=match):
        get_reward("accuracy", **params)
