"""Gold answers as datasets store them (issue 11): the `solution` column (open-r1, MATH, NuminaMath) as an alias of
`answer`, and gold values given as a worked solution ending in \\boxed{...}, as GSM8K's `... #### 72`, or bare."""
from __future__ import annotations

import pytest

from rewards import RewardScorer, get_reward
from rewards.math import accuracy as ma

ACC = get_reward("accuracy", timeout_s=2.0)

GSM8K = ("Natalia sold 48/2 = <<48/2=24>>24 clips in May.\n"
         "Natalia sold 48+24 = <<48+24=72>>72 clips altogether in April and May.\n#### 72")
GSM8K_DOLLARS = ("Weng earns 12/60 = $<<12/60=0.2>>0.2 per minute.\n"
                 "Working 50 minutes, she earned 0.2 x 50 = $<<0.2*50=10>>10.\n#### 10")
GSM8K_SEPARATOR = "He saves 1,000 + 250 = <<1000+250=1250>>1,250 dollars.\n#### 1,250"
MATH_SOLUTION = (r"Since $2x + 3 = 7$, we have $2x = 4$, so $x = 2$. Then $x^2 + 1 = \boxed{5}$.")
MATH_TWO_BOXES = r"Factoring, $(x-2)(x-6) = 0$, so the solutions are $x = \boxed{2}$ and $x = \boxed{6}$."
MATH_VECTOR = (r"Subtracting, the direction vector is $\boxed{\begin{pmatrix} -1 \\ 2 \end{pmatrix}}.$")
MATH_SEPARATOR = r"There are $100 \cdot 100 = \boxed{10,\!000}$ such pairs."
NUMINA_MARKDOWN = ("### Step 1: Add\n$3 + 4 = 7$.\n\n#### Step 2: Double\n"
                   "$2 \\cdot 7 = 14$, so the answer is $\\boxed{14}$.")  # markdown headings are not GSM8K's ####
MATH_INTERMEDIATE = (r"The first part gives $\boxed{12}$ (an intermediate result). "
                     r"Adding the remaining $5$, the final answer is $17$.")

GOLDS = [  # (completion, gold, expected)
    ("<answer>72</answer>", GSM8K, 1.0),
    ("<answer>24</answer>", GSM8K, 0.0),  # an intermediate number of the reasoning is not the answer
    ("<answer>48</answer>", GSM8K, 0.0),
    ("<answer>10</answer>", GSM8K_DOLLARS, 1.0),
    ("<answer>0.2</answer>", GSM8K_DOLLARS, 0.0),
    ("<answer>1250</answer>", GSM8K_SEPARATOR, 1.0),
    ("<answer>1 250</answer>", GSM8K_SEPARATOR, 1.0),
    ("<answer>1000</answer>", GSM8K_SEPARATOR, 0.0),
    ("<answer>5</answer>", MATH_SOLUTION, 1.0),
    ("<answer>2</answer>", MATH_SOLUTION, 0.0),
    ("<answer>2, 6</answer>", MATH_TWO_BOXES, 1.0),
    (r"\boxed{6} and \boxed{2}", MATH_TWO_BOXES, 1.0),
    ("<answer>6</answer>", MATH_TWO_BOXES, 0.0),  # half of a two-part gold
    (r"<answer>\begin{pmatrix} -1 \\ 2 \end{pmatrix}</answer>", MATH_VECTOR, 1.0),
    ("<answer>2</answer>", MATH_VECTOR, 0.0),
    ("<answer>10000</answer>", MATH_SEPARATOR, 1.0),
    ("<answer>100</answer>", MATH_SEPARATOR, 0.0),
    ("<answer>14</answer>", NUMINA_MARKDOWN, 1.0),
    ("<answer>2</answer>", NUMINA_MARKDOWN, 0.0),
    ("<answer>17</answer>", MATH_INTERMEDIATE, 1.0),
    ("<answer>12</answer>", MATH_INTERMEDIATE, 0.0),
    ("<answer>72</answer>", "72", 1.0),  # bare values
    ("<answer>0.5</answer>", r"\frac{1}{2}", 1.0),
    ("<answer>72</answer>", "#### 72", 1.0),
]


@pytest.mark.parametrize("completion,gold,expected", GOLDS)
def test_gold_formats(completion, gold, expected):
    assert ACC([completion], answer=[gold]) == [expected]


@pytest.mark.parametrize("gold", ["#### ", "Some prose, then #### nothing", "We are done. \\boxed{}"])
def test_gold_without_a_value_is_none(gold):
    assert ACC(["<answer>7</answer>"], answer=[gold]) == [None]


def test_solution_column_is_an_alias_of_answer():
    texts = [r"\boxed{\frac{63}{400}}", r"\boxed{\frac{64}{400}}"]
    assert ACC(texts, solution=[r"\frac{63}{400}"] * 2) == [1.0, 0.0]
    # both present (OpenR1-Math: `answer` is the bare value, `solution` the worked one): `answer` wins
    assert ACC(["<answer>5</answer>"], answer=["5"], solution=[r"... so it is $\boxed{6}$."]) == [1.0]
    assert get_reward("cosine", max_len=100)(["\\boxed{1}"], solution=["1"], completion_length=[50]) == [0.75]


def test_missing_gold_column_names_the_columns_present():
    with pytest.raises(ValueError, match=r"accuracy.*'answer'.*'solution'.*columns: completion_ids, prompts"):
        ACC(["<answer>4</answer>"], prompts=["p"], completion_ids=[[1]])


@pytest.mark.parametrize("columns", [{"solution": [r"so it is $\boxed{4}$", "#### 5"]}, {"answer": ["4", "#### 5"]}])
def test_scorer_accepts_either_gold_column(columns):
    with RewardScorer({"accuracy": 1.0}, num_workers=0) as scorer:
        assert scorer.score(["<answer>4</answer>", "<answer>4</answer>"], columns).per_reward["accuracy"] == [1.0, 0.0]


def test_scorer_without_gold_column_is_a_one_line_error():
    with RewardScorer({"accuracy": 1.0}, num_workers=0) as scorer:
        with pytest.raises(ValueError, match=r"accuracy.*'answer' \(or 'solution'\)"):
            scorer.score(["<answer>4</answer>"], {"question": ["q"]})


@pytest.mark.parametrize("gold,value", [(GSM8K, "72"), (MATH_SOLUTION, "5"), (MATH_SEPARATOR, "10000")])
def test_worked_gold_parsed_once_per_batch(monkeypatch, gold, value):
    ma._GOLDS.clear()
    ma._GOLD_TEXT.clear()
    ma._JUDGED.clear()
    calls = []
    real = ma.parse_answer
    monkeypatch.setattr(ma, "parse_answer", lambda s, source="answer": calls.append(s) or real(s, source))
    completions = [f"<answer> {x} </answer>" for x in (value, "3/7", "x+1", "0.25", value, "\\sqrt{2}", "9.5", "11")]
    assert ACC(completions, answer=[gold] * 8) == [1.0, 0, 0, 0, 1.0, 0, 0, 0]
    # the gold is extracted and parsed once; integer predictions are compared to the integer gold directly, the five
    # others are parsed once each
    assert calls.count(value) == 1
    assert len(calls) == 6
