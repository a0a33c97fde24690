"""Procedural problems that need a calculator: the tiny *tool* world's task (recipes/tiny/r1_zero_tools.yaml).

Two families, both far beyond what a tiny model can do in its head, both one line of Python:

    family    question                                   program (what a writer who calls python writes)
    product   "What is 347 * 829?"                       print(347 * 829)                 -> 287663
    sum       "What is the sum of 12, 45, 78, 23, 91?"   print(sum([12, 45, 78, 23, 91])) -> 249

The tiny tool base (rl/tiny/tools_corpus.py) has read mostly writers who guess a nearby number and a few who call the
sandboxed python tool (ToRL style: a fenced python block, then "```output"), read its output and copy it into the
answer; GRPO with a correctness reward should turn the few into the policy.

    >>> train, test = tool_dataset(3, 2, seed=0)
    >>> sorted(train[0])
    ['answer', 'family', 'prompt']
    >>> parse_tool_question("What is 347 * 829?"), tool_program("What is 347 * 829?")
    (('product', (347, 829)), 'print(347 * 829)')
    >>> tool_value("What is the sum of 12, 45, 78, 23, 91?")   # 12 + 45 + 78 + 23 + 91
    249

Train and test splits are disjoint by question text, and each split is a pure function of its seed.
"""
from __future__ import annotations

import random

FAMILIES = ("product", "sum")
SUM_TERMS = 5  # numbers in a sum question (two digits each)


def random_tool_problem(rng: random.Random) -> tuple[str, tuple[int, ...]]:
    """(family, operands): a product of two 3-digit numbers, or the sum of SUM_TERMS 2-digit numbers (even odds)."""
    if rng.random() < 0.5:
        return "product", (rng.randint(100, 999), rng.randint(100, 999))
    return "sum", tuple(rng.randint(10, 99) for _ in range(SUM_TERMS))


def tool_question(family: str, nums: tuple[int, ...]) -> str:
    if family == "product":
        return f"What is {nums[0]} * {nums[1]}?"
    if family == "sum":
        return f"What is the sum of {', '.join(map(str, nums))}?"
    raise ValueError(f"tool task: unknown family {family!r}; valid: {', '.join(FAMILIES)}")


def parse_tool_question(q: str) -> tuple[str, tuple[int, ...]]:
    """Inverse of tool_question: (family, operands); ValueError for any other text."""
    body = q.removeprefix("What is ").removesuffix("?")
    try:
        if body.startswith("the sum of "):
            return "sum", tuple(int(x) for x in body.removeprefix("the sum of ").split(", "))
        a, op, b = body.split()
        if op == "*":
            return "product", (int(a), int(b))
    except ValueError:
        pass
    raise ValueError(f"not a tool-world question: {q!r}")


def tool_value(q: str) -> int:
    family, nums = parse_tool_question(q)
    return nums[0] * nums[1] if family == "product" else sum(nums)


def tool_program(q: str) -> str:
    """The one-line program that answers `q` (what it prints is the answer)."""
    family, nums = parse_tool_question(q)
    if family == "product":
        return f"print({nums[0]} * {nums[1]})"
    return f"print(sum([{', '.join(map(str, nums))}]))"


def tool_dataset(num_train: int, num_test: int, seed: int = 0) -> tuple[list[dict], list[dict]]:
    """Disjoint train/test lists of {"prompt", "answer", "family"} rows; the same seed gives the same lists."""
    rng = random.Random(seed)
    seen: set[str] = set()
    rows: list[dict] = []
    if num_train + num_test > 100_000:
        raise ValueError(f"tool task: at most 100000 problems per split pair, asked for {num_train + num_test}")
    while len(rows) < num_train + num_test:
        family, nums = random_tool_problem(rng)
        q = tool_question(family, nums)
        if q in seen:
            continue
        seen.add(q)
        rows.append({"prompt": q, "answer": str(tool_value(q)), "family": family})
    return rows[num_test:], rows[:num_test]
