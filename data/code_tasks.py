"""Procedural code: small function-writing problems with hidden tests and an off-by-one trap, for the CPU recipes.

Each problem asks for a one-line Python function `f`; its hidden tests are MBPP-style asserts (`test_list`), run by
the `code` reward in its sandbox. Every family has a natural *buggy* version that a careless writer produces and
that fails the tests (the boundary is exactly where the tests look):

    family       question (constants drawn per problem)                          correct               buggy
    sum_to       "... the sum of the integers from 3 to n, inclusive"           sum(range(3, n + 1))  sum(range(3, n))
    count_above  "... how many items of xs are greater than 4"                  sum(x > 4 for x ...)  x >= 4
    slice_incl   "... the items of xs from index 1 to index 3, inclusive"       xs[1:3 + 1]           xs[1:3]
    between      "... True when n is between 2 and 7, inclusive"                2 <= n <= 7           2 < n < 7
    plus_times   "... n plus 3, and that sum times 4"                           (n + 3) * 4           n + 3 * 4
    multiples    "... how many of the integers from 1 to n are multiples of 3"  n // 3                (n - 1) // 3

This is the arithmetic world's shape (data/tasks.py) in code: a base model pretrained mostly on the buggy versions
(rl/tiny/code_corpus.py) fails most problems under greedy decoding but samples the careful version sometimes, which
is what GRPO with the sandboxed `code` reward turns into a policy.

    >>> train, test = code_dataset(3, 2, seed=0)
    >>> sorted(train[0])
    ['answer', 'family', 'prompt', 'test_list']
    >>> program("sum_to", (3,), careful=True), program("sum_to", (3,), careful=False)
    ('def f(n): return sum(range(3, n + 1))', 'def f(n): return sum(range(3, n))')
    >>> hidden_tests("plus_times", (3, 4), random.Random(0))[0]   # (13 + 3) * 4 = 64; the buggy 13 + 3 * 4 = 25
    'assert f(13) == 64'

Train and test splits are disjoint by question text, and each split is a pure function of its seed.
"""
from __future__ import annotations

import random
import re
from typing import Callable

# family -> (question with {0}, {1} for the constants, correct body, buggy body, careful thought, sloppy thought)
FAMILIES: dict[str, tuple[str, str, str, str, str]] = {
    "sum_to": ("Write f(n) that returns the sum of the integers from {0} to n, inclusive",
               "sum(range({0}, n + 1))", "sum(range({0}, n))",
               "inclusive, so the range stops at n + 1", "add the range from {0} to n"),
    "count_above": ("Write f(xs) that returns how many items of xs are greater than {0}",
                    "sum(x > {0} for x in xs)", "sum(x >= {0} for x in xs)",
                    "greater than, so {0} itself is not counted", "count the items from {0} up"),
    "slice_incl": ("Write f(xs) that returns the items of xs from index {0} to index {1}, inclusive",
                   "xs[{0}:{1} + 1]", "xs[{0}:{1}]",
                   "inclusive, so the slice ends at {1} + 1", "slice from {0} to {1}"),
    "between": ("Write f(n) that returns True when n is between {0} and {1}, inclusive",
                "{0} <= n <= {1}", "{0} < n < {1}",
                "inclusive, so the ends count", "n is between {0} and {1}"),
    "plus_times": ("Write f(n) that returns n plus {0}, and that sum times {1}",
                   "(n + {0}) * {1}", "n + {0} * {1}",
                   "add first, so the sum needs brackets", "n plus {0} times {1}"),
    "multiples": ("Write f(n) that returns how many of the integers from 1 to n are multiples of {0}",
                  "n // {0}", "(n - 1) // {0}",
                  "n itself may be a multiple, so divide n", "count below n"),
}
ARG = {"sum_to": "n", "count_above": "xs", "slice_incl": "xs", "between": "n", "plus_times": "n", "multiples": "n"}


def _constants(family: str, rng: random.Random) -> tuple[int, ...]:
    if family == "slice_incl":
        a = rng.randint(0, 9)
        return a, a + rng.randint(1, 5)
    if family == "between":
        a = rng.randint(0, 20)
        return a, a + rng.randint(2, 20)
    if family == "plus_times":
        return rng.randint(1, 20), rng.randint(2, 12)
    if family == "multiples":
        return (rng.randint(2, 30),)
    return (rng.randint(0, 30),)  # sum_to, count_above


def question(family: str, consts: tuple[int, ...]) -> str:
    return FAMILIES[family][0].format(*consts)


def program(family: str, consts: tuple[int, ...], careful: bool) -> str:
    """The one-line solution a careful (correct) or careless (buggy) writer gives."""
    body = FAMILIES[family][1 if careful else 2].format(*consts)
    return f"def f({ARG[family]}): return {body}"


def thought(family: str, consts: tuple[int, ...], careful: bool) -> str:
    return FAMILIES[family][3 if careful else 4].format(*consts)


def check_input(family: str, consts: tuple[int, ...]):
    """One input on the boundary, where the careless version goes wrong (what a writer who checks tries)."""
    c = consts
    inputs = {"sum_to": lambda: c[0] + 2, "count_above": lambda: [c[0], c[0] + 1],
              "slice_incl": lambda: list(range(c[1] + 2)), "between": lambda: c[1], "plus_times": lambda: 2,
              "multiples": lambda: 2 * c[0]}
    return inputs[family]()


def check_step(family: str, consts: tuple[int, ...]) -> str:
    """A writer checking the careless version by hand on `check_input` and finding it wrong:

    >>> check_step("sum_to", (3,))
    'wait, check f(5): that gives 7, but it should be 12. redo:'
    """
    x = check_input(family, consts)
    scope: dict = {}
    exec(program(family, consts, careful=False), scope)  # noqa: S102 (our own one-liner)
    shown = f"list(range({len(x)}))" if family == "slice_incl" else repr(x)
    return f"wait, check f({shown}): that gives {scope['f'](x)!r}, but it should be {_reference(family, consts)(x)!r}. redo:"


def _reference(family: str, consts: tuple[int, ...]) -> Callable:
    scope: dict = {}
    exec(program(family, consts, careful=True), scope)  # noqa: S102 (our own generated one-liner, not model output)
    return scope["f"]


def _inputs(family: str, consts: tuple[int, ...], rng: random.Random, n: int) -> list:
    """Inputs where the buggy version is wrong on most of them (the boundary), plus one ordinary case."""
    c = consts
    if family == "sum_to":
        return [c[0] + rng.randint(1, 12) for _ in range(n)]
    if family == "count_above":  # lists that contain the threshold itself
        return [rng.sample([c[0], *rng.sample([v for v in range(max(0, c[0] - 4), c[0] + 6) if v != c[0]], 4)], 5)
                for _ in range(n)]
    if family == "slice_incl":
        return [[rng.randint(0, 9) for _ in range(c[1] + rng.randint(2, 4))] for _ in range(n)]
    if family == "between":
        return [c[0], c[1], c[0] - 1, c[1] + 1, rng.randint(c[0] + 1, c[1] - 1)][:n]
    if family == "plus_times":  # (n + c) * k and n + c * k agree only at n = 0
        return [rng.randint(1, 20) for _ in range(n)]
    return [c[0] * rng.randint(1, 6) for _ in range(n)]  # multiples: n a multiple of the constant


def hidden_tests(family: str, consts: tuple[int, ...], rng: random.Random, n: int = 4) -> list[str]:
    """MBPP-style asserts `assert f(x) == expected`, expected computed by the correct solution."""
    ref = _reference(family, consts)
    return [f"assert f({x!r}) == {ref(x)!r}" for x in _inputs(family, consts, rng, n)]


def code_dataset(num_train: int, num_test: int, seed: int = 0) -> tuple[list[dict], list[dict]]:
    """Disjoint train/test lists of {"prompt", "answer" (the correct program), "test_list", "family"} rows.

    About 800 distinct problems exist; asking for more than half of them is an error (the draw would crawl)."""
    rng = random.Random(seed)
    seen: set[str] = set()
    rows: list[dict] = []
    if num_train + num_test > 400:
        raise ValueError(f"code task: at most 400 distinct problems, asked for {num_train + num_test}")
    families = sorted(FAMILIES)
    while len(rows) < num_train + num_test:
        fam = rng.choice(families)
        consts = _constants(fam, rng)
        q = question(fam, consts)
        if q in seen:
            continue
        seen.add(q)
        rows.append({"prompt": q, "answer": program(fam, consts, careful=True),
                     "test_list": hidden_tests(fam, consts, rng), "family": fam})
    return rows[num_test:], rows[:num_test]


def parse_code_question(q: str) -> tuple[str, tuple[int, ...]]:
    """Inverse of `question` (used by the corpus builder): (family, constants).

    >>> parse_code_question("Write f(n) that returns how many of the integers from 1 to n are multiples of 3")
    ('multiples', (3,))
    """
    for fam, (template, *_rest) in FAMILIES.items():
        pattern = re.escape(template).replace(re.escape("{0}"), r"(-?\d+)").replace(re.escape("{1}"), r"(-?\d+)")
        m = re.fullmatch(pattern, q)
        if m:
            return fam, tuple(int(g) for g in m.groups())
    raise ValueError(f"not a procedural code question: {q!r}")
