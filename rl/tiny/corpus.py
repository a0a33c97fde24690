"""The pretraining corpus of the tiny base model: arithmetic written by mostly sloppy, mostly unformatted writers.

A document is the R1-Zero prompt followed by one written solution and EOS. Two independent coin flips per document
decide what the base model will have seen:

- method: on precedence-sensitive problems the writer is careful (multiplication first) with probability
  `p_careful`, otherwise sloppy (left to right). With p_careful < 0.5 the base model's greedy answer is usually the
  sloppy one, yet sampling finds the careful one often enough for GRPO to have signal.
- style: strict R1 format (`<think> steps </think> <answer> r </answer>`) with probability `p_strict`, otherwise one of
  the looser styles real pretraining text has.
- language: a careful writer names the steps in Chinese (先算 "first compute", 再算 "then compute") with probability
  `p_mixed` (the tiny base: 1.0, every careful writer); sloppy writers never do. The chains are otherwise English (tags, "The answer is"), so a policy that
  learns the careful method from these writers also learns to mix languages inside its chain, as R1-Zero did (R1
  §2.3.2), and nothing in accuracy + format stops it; the `language_consistency` reward of the R1 stage does.

    >>> import random
    >>> write_solution(3, "+", 4, "*", 5, careful=True, style=0)
    ' <think> 4*5=20, 3+20=23 </think> <answer> 23 </answer>'
    >>> write_solution(3, "+", 4, "*", 5, careful=False, style=1)
    ' 3+4=7, 7*5=35. The answer is 35.'
    >>> write_solution(3, "+", 4, "*", 5, careful=True, style=0, mixed=True)
    ' <think> 先算 4*5=20, 再算 3+20=23 </think> <answer> 23 </answer>'
"""
from __future__ import annotations

import random

from data.tasks import parse_question, solution_steps
from data.templates import render_prompt

STYLES = (
    " <think> {steps} </think> <answer> {r} </answer>",  # 0: strict R1 format
    " {steps}. The answer is {r}.",
    " <think> {steps} </think> The answer is {r}.",
    " {steps} <answer> {r} </answer>",
)


MIXED_STEP_WORDS = ("先算", "再算")  # "first compute", "then compute"


def write_solution(a: int, op1: str, b: int, op2: str, c: int, *, careful: bool, style: int, mixed: bool = False
                   ) -> str:
    steps, r = solution_steps(a, op1, b, op2, c, sloppy=not careful)
    if mixed:
        steps = [f"{word} {step}" for word, step in zip(MIXED_STEP_WORDS, steps)]
    return STYLES[style].format(steps=", ".join(steps), r=r)


def base_corpus(questions: list[str], num_docs: int, seed: int, p_careful: float, p_strict: float,
                p_mixed: float = 0.0) -> list[tuple[str, str]]:
    """`num_docs` (prompt, completion) documents over the given questions (sampled with replacement), deterministic in
    `seed`. Prompt and completion are kept apart so that they are tokenized apart, exactly as during RL."""
    rng = random.Random(seed)
    docs = []
    for _ in range(num_docs):
        q = rng.choice(questions)
        careful = rng.random() < p_careful
        style = 0 if rng.random() < p_strict else rng.randint(1, len(STYLES) - 1)
        mixed = careful and p_mixed > 0 and rng.random() < p_mixed  # (no extra draw at p_mixed 0: same corpus)
        docs.append((render_prompt(q, "r1_zero"),
                     write_solution(*parse_question(q), careful=careful, style=style, mixed=mixed)))
    return docs
