"""Procedural arithmetic: a deterministic task with a reasoning trap, for the CPU recipes.

Each problem is `a op1 b op2 c` with single-digit operands and ops in {+, -, *}. Solving it takes two steps, and the
order of the steps matters when the second operator is `*` and the first is not (operator precedence):

    "3 + 4 * 5"   correct:  4*5=20, 3+20=23      -> 23
                  sloppy:   3+4=7, 7*5=35        -> 35   (left to right, the classic mistake)

The generator draws precedence-sensitive problems with probability `p_sensitive`, so a "base model" trained on a corpus
where most writers are sloppy (see rl/tiny/corpus.py) answers many problems wrongly under greedy decoding but samples the
right method some of the time: exactly the situation in which RL with a correctness reward helps.

Train and test splits are disjoint by question text, and every split is a pure function of its seed.
"""
from __future__ import annotations

import random

OPS = "+-*"


def _apply(x: int, op: str, y: int) -> int:
    return x + y if op == "+" else x - y if op == "-" else x * y


def is_precedence_sensitive(op1: str, op2: str) -> bool:
    return op2 == "*" and op1 != "*"


def solution_steps(a: int, op1: str, b: int, op2: str, c: int, *, sloppy: bool = False) -> tuple[list[str], int]:
    """The reasoning steps as strings and the final value.

    >>> solution_steps(3, "+", 4, "*", 5)
    (['4*5=20', '3+20=23'], 23)
    >>> solution_steps(3, "+", 4, "*", 5, sloppy=True)
    (['3+4=7', '7*5=35'], 35)
    """
    if is_precedence_sensitive(op1, op2) and not sloppy:
        m = _apply(b, op2, c)
        r = _apply(a, op1, m)
        return [f"{b}{op2}{c}={m}", f"{a}{op1}{m}={r}"], r
    m = _apply(a, op1, b)
    r = _apply(m, op2, c)
    return [f"{a}{op1}{b}={m}", f"{m}{op2}{c}={r}"], r


def random_problem(rng: random.Random, p_sensitive: float) -> tuple[int, str, int, str, int]:
    a, b, c = rng.randint(1, 9), rng.randint(1, 9), rng.randint(1, 9)
    if rng.random() < p_sensitive:
        op1, op2 = rng.choice("+-"), "*"
    else:
        op1, op2 = rng.choice([(o1, o2) for o1 in OPS for o2 in OPS if not is_precedence_sensitive(o1, o2)])
    return a, op1, b, op2, c


def question_text(a: int, op1: str, b: int, op2: str, c: int) -> str:
    return f"What is {a} {op1} {b} {op2} {c}?"


def arithmetic_dataset(num_train: int, num_test: int, seed: int = 0, p_sensitive: float = 0.6
                       ) -> tuple[list[dict], list[dict]]:
    """Disjoint train/test lists of {"prompt", "answer", "sensitive"} rows; the same seed gives the same lists.

    >>> train, test = arithmetic_dataset(3, 2, seed=0)
    >>> sorted(train[0])
    ['answer', 'prompt', 'sensitive']
    """
    rng = random.Random(seed)
    seen: set[str] = set()
    rows: list[dict] = []
    max_unique = 9 ** 3 * 9
    if num_train + num_test > max_unique // 2:
        raise ValueError(f"arithmetic task: at most {max_unique // 2} distinct problems, asked for {num_train + num_test}")
    while len(rows) < num_train + num_test:
        prob = random_problem(rng, p_sensitive)
        q = question_text(*prob)
        if q in seen:
            continue
        seen.add(q)
        _, value = solution_steps(*prob)
        rows.append({"prompt": q, "answer": str(value), "sensitive": is_precedence_sensitive(prob[1], prob[3])})
    test, train = rows[:num_test], rows[num_test:]
    return train, test


def parse_question(q: str) -> tuple[int, str, int, str, int]:
    """Inverse of question_text (used by the corpus builder)."""
    body = q.removeprefix("What is ").removesuffix("?").split()
    return int(body[0]), body[1], int(body[2]), body[3], int(body[4])


STRICT_FORMAT = " <think> {steps} </think> <answer> {r} </answer>"


def cold_start_dataset(num_train: int, num_test: int = 200, seed: int = 0, p_sensitive: float = 0.6) -> list[dict]:
    """Cold-start SFT data: `num_train` problems with a correct, strict-format chain of thought (the careful method).

    The problems are the *train* split of `arithmetic_dataset(num_train, num_test, seed)`, so they never overlap the
    test set that the same (num_test, seed) give to evaluation. Each row is TRL's prompt-completion format plus the
    gold answer; the prompt is the bare question (the SFT recipe renders it with its template, as GRPO does):

    >>> rows = cold_start_dataset(2, num_test=3, seed=0)
    >>> sorted(rows[0])
    ['answer', 'completion', 'prompt', 'sensitive']
    >>> cold_start_completion("What is 3 + 4 * 5?")
    ' <think> 4*5=20, 3+20=23 </think> <answer> 23 </answer>'
    """
    train, _ = arithmetic_dataset(num_train, num_test, seed=seed, p_sensitive=p_sensitive)
    return [{**row, "completion": cold_start_completion(row["prompt"])} for row in train]


def cold_start_completion(question: str) -> str:
    """The careful, strictly formatted trace for one question (same text as rl/tiny/corpus.py style 0)."""
    steps, value = solution_steps(*parse_question(question))
    return STRICT_FORMAT.format(steps=", ".join(steps), r=value)
