"""The procedural code world (data/code_tasks.py, rl/tiny/code_corpus.py) judged by the real sandboxed `code` reward:
every careful program passes its hidden tests, every careless one fails, and the splits behave like the arithmetic
world's. The learning run itself is tests/e2e/test_code_world_run.py."""
import random
import shutil

import pytest

from data.code_tasks import FAMILIES, code_dataset, hidden_tests, parse_code_question, program
from data.loading import DataError, load_examples
from rl.tiny.code_corpus import write_code_solution

needs_bwrap = pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap (bwrap) is not installed: "
                                 "`make setup-sandbox`")

# (family, constants, input, careful result, buggy result), derived by hand:
#   sum_to 3: f(5) = 3+4+5 = 12, buggy range(3, 5) = 3+4 = 7
#   count_above 4 on [4, 5, 1]: only 5 is > 4 -> 1; buggy >= counts 4 too -> 2
#   slice_incl 1..3 on [0, 1, 2, 3, 4]: [1, 2, 3]; buggy [1, 2]
#   between 2..7 at n=7: True; buggy 2 < 7 < 7 is False
#   plus_times 3, 4 at n=2: (2+3)*4 = 20; buggy 2 + 3*4 = 14
#   multiples of 3 up to n=9: 3, 6, 9 -> 3; buggy (9-1)//3 = 2
HAND = [("sum_to", (3,), 5, 12, 7), ("count_above", (4,), [4, 5, 1], 1, 2), ("slice_incl", (1, 3), [0, 1, 2, 3, 4],
        [1, 2, 3], [1, 2]), ("between", (2, 7), 7, True, False), ("plus_times", (3, 4), 2, 20, 14),
        ("multiples", (3,), 9, 3, 2)]


@pytest.mark.parametrize("family,consts,x,careful,buggy", HAND)
def test_careful_and_buggy_programs_by_hand(family, consts, x, careful, buggy):
    for is_careful, want in ((True, careful), (False, buggy)):
        scope: dict = {}
        exec(program(family, consts, is_careful), scope)
        assert scope["f"](x) == want


def test_every_family_is_drawn_and_the_splits_are_disjoint_and_seeded():
    train, test = code_dataset(320, 80, seed=0)
    assert len(train) == 320 and len(test) == 80
    assert not {r["prompt"] for r in train} & {r["prompt"] for r in test}
    assert {r["family"] for r in test} == set(FAMILIES) == {r["family"] for r in train}
    assert code_dataset(320, 80, seed=0) == (train, test) and code_dataset(320, 80, seed=1) != (train, test)
    for row in train + test:
        assert parse_code_question(row["prompt"])[0] == row["family"] and len(row["test_list"]) == 4


def test_too_many_problems_and_loading_through_a_recipe_source():
    with pytest.raises(DataError, match=r"procedural:code: code task: at most 400 distinct problems, asked for 2200"):
        load_examples("procedural:code", "train")  # the loader's defaults (2,000 + 200) are the arithmetic world's
    rows = load_examples("procedural:code", "test", num_train=100, num_test=10)
    assert len(rows) == 10 and sorted(rows[0]) == ["answer", "family", "prompt", "test_list"]
    with pytest.raises(DataError, match="unknown procedural task 'poetry'; valid: arithmetic, code, general, mixed, tools"):
        load_examples("procedural:poetry", "train")


@needs_bwrap
def test_the_sandboxed_reward_passes_careful_and_fails_buggy_solutions_in_every_style():
    """24 rows (4 per family) x {careful, buggy} x the corpus's 4 styles, through the real `code` reward: careful
    passes exactly where the style leaves a program to run (styles 0, 1, 3; style 2 has neither <answer> nor a
    fence), buggy never passes."""
    from rewards import get_reward
    train, _ = code_dataset(320, 80, seed=0)
    rows = [r for fam in sorted(FAMILIES) for r in [x for x in train if x["family"] == fam][:4]]
    completions, tests, want = [], [], []
    for r in rows:
        fam, consts = parse_code_question(r["prompt"])
        for careful in (True, False):
            for style in range(4):
                completions.append(write_code_solution(fam, consts, careful=careful, style=style))
                tests.append(r["test_list"])
                want.append(1.0 if careful and style != 2 else 0.0)
    code = get_reward("code")
    assert code(completions, test_list=tests) == want
    got = code.drain_metrics()
    assert got["no_program"] == 2 * len(rows)  # style 2, careful and buggy
    assert got["tests_run"] == 4 * 3 * 2 * len(rows) and got["tests_passed"] >= 4 * 3 * len(rows)


def test_hidden_tests_catch_the_bug_on_most_inputs():
    """The tests sit on the boundary. `between` tests both ends and one step outside each: the buggy 2 < n < 7 is
    wrong at the two ends only. Every other family's buggy version is wrong on all 4 inputs: off by the last term
    (sum_to, n >= a + 1), by the threshold item that every list holds (count_above), by one item (slice_incl), by
    n * (k - 1) != 0 (plus_times, n >= 1), by one multiple (multiples: n is a multiple)."""
    rng = random.Random(0)
    from data.code_tasks import _constants
    for fam in FAMILIES:
        for _ in range(20):
            consts = _constants(fam, rng)
            scope: dict = {}
            exec(program(fam, consts, careful=False), scope)
            wrong = sum(not eval(t.removeprefix("assert "), dict(scope)) for t in hidden_tests(fam, consts, rng))
            assert wrong == (2 if fam == "between" else 4), (fam, consts, wrong)
