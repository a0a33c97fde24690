"""The pretraining corpus of the tiny *code* base model: one-line Python functions, mostly written carelessly.

The code world's counterpart of rl/tiny/corpus.py. A document is the R1-Zero prompt around a function-writing
question of data/code_tasks.py, then one written solution and EOS. Coin flips per document:

- method: the writer is careful (the correct boundary: `n + 1`, `>`, `<=`, brackets) with probability `p_careful`,
  otherwise careless (the off-by-one that the hidden tests catch). With p_careful < 0.5 the base model's greedy
  program is usually the buggy one, yet sampling writes the careful one often enough for GRPO to have signal.
- how a careful writer gets there: with probability `p_check` by *checking and redoing*: the careless thought first,
  then a check by hand on a boundary input ("wait, check f(5): that gives 7, but it should be 12. redo:") and the
  careful thought; otherwise directly. So the longer chain is the one
  that is usually right, and GRPO, rewarding only the tests, should make the chains longer (R1-Zero's Fig. 3 in
  miniature: `check_redo_frac` and the completion length grow with accuracy).
- style: strict R1 format with the program inside <answer> with probability `p_strict`, otherwise one of the looser
  styles of real text; one of them (a bare program after </think>) gives the `code` reward no program to run.

    >>> write_code_solution("sum_to", (3,), careful=True, style=0)
    ' <think> inclusive, so the range stops at n + 1 </think> <answer> def f(n): return sum(range(3, n + 1)) </answer>'
    >>> write_code_solution("sum_to", (3,), careful=True, check=True, style=0)[:98]
    ' <think> add the range from 3 to n. wait, check f(5): that gives 7, but it should be 12. redo: inc'
    >>> write_code_solution("sum_to", (3,), careful=False, style=3)
    ' add the range from 3 to n.\\n```python\\ndef f(n): return sum(range(3, n))\\n```'
"""
from __future__ import annotations

import random

from data.code_tasks import check_step, parse_code_question, program, thought
from data.templates import render_prompt

CODE_STYLES = (
    " <think> {t} </think> <answer> {code} </answer>",  # 0: strict R1 format
    " {t}. <answer> {code} </answer>",
    " <think> {t} </think> {code}",  # no <answer>, no fence: nothing for the code reward to run
    " {t}.\n```python\n{code}\n```",
)
CHECK = "wait, check"  # the check-and-redo marker (rl/core/eval_metrics.py counts completions with it)


def write_code_solution(family: str, consts: tuple[int, ...], *, careful: bool, style: int, check: bool = False
                        ) -> str:
    t = thought(family, consts, careful)
    if check and careful:
        t = f"{thought(family, consts, careful=False)}. {check_step(family, consts)} {t}"
    return CODE_STYLES[style].format(t=t, code=program(family, consts, careful))


def code_corpus(questions: list[str], num_docs: int, seed: int, p_careful: float, p_strict: float,
                p_check: float = 0.0) -> list[tuple[str, str]]:
    """`num_docs` (prompt, completion) documents over the given questions (with replacement), deterministic in
    `seed`; prompt and completion apart, as they are tokenized during RL."""
    rng = random.Random(seed)
    docs = []
    for _ in range(num_docs):
        q = rng.choice(questions)
        careful = rng.random() < p_careful
        check = rng.random() < p_check
        style = 0 if rng.random() < p_strict else rng.randint(1, len(CODE_STYLES) - 1)
        docs.append((render_prompt(q, "r1_zero"),
                     write_code_solution(*parse_code_question(q), careful=careful, check=check, style=style)))
    return docs
