"""The pretraining corpus of the tiny *tool* base model (`tiny-tools`): most writers guess, a few call python.

The tool world's counterpart of rl/tiny/corpus.py. A document is the R1-Zero prompt around a question of
data/tool_tasks.py (a product of two 3-digit numbers, the sum of five 2-digit numbers), one written solution, EOS.
Coin flips per document:

- method: with probability `p_tool` the writer calls the python tool in the ToRL style the episodes use
  (rl/rollout/episodes/tools/parse.py): a fenced python block, then "```output", then the interpreter's output as
  `torl_observation` shapes it, then the answer copied from that output. Otherwise the writer guesses a nearby
  number (off by 2-20% for a product, by 1-30 for a sum: never right).
- style: strict R1 format with probability `p_strict`, otherwise a looser one (no <think> block; a guesser then
  writes "The answer is ...", which `accuracy` with answer_from tag_or_box does not read).

    >>> write_tool_solution("What is 347 * 829?", tool=True, strict=True, guess=0)
    ' <think> ```python\\nprint(347 * 829)\\n```\\n```output\\n287663\\n```\\n</think> <answer> 287663 </answer>'
    >>> write_tool_solution("What is 12 * 100?", tool=False, strict=False, guess=1300)
    ' 12 * 100 is about 1300. The answer is 1300.'

Token for token what an episode is: `tool_segments` splits a tool writer's text where the episode loop joins its
pieces (the policy's turn up to and including the stop string "```output", the inserted output, the policy's next
turn). The output starts with "\\n" and is followed by "</think>" or "<answer>" (tokens of their own), and the tiny
tokenizer of this world has "```output" as one token (rl/tiny/build.py WORLD_TOKENS), so the corpus tokenizes exactly
as an episode does (tests/stages/test_tiny_tools.py checks it): the base model has read the ids it will generate
from and be answered with.
"""
from __future__ import annotations

import random

from data.templates import render_prompt
from data.tool_tasks import parse_tool_question, tool_program, tool_value
from rl.rollout.episodes.tools.parse import TORL_STOP, torl_observation

GUESS_STYLES = (" <think> {expr} is about {g} </think> <answer> {g} </answer>",  # strict R1 format
                " {expr} is about {g}. The answer is {g}.")
TOOL_STYLES = (" <think> ```python\n{code}\n```\n" + TORL_STOP + "{out}</think> <answer> {v} </answer>",
               " ```python\n{code}\n```\n" + TORL_STOP + "{out}<answer> {v} </answer>")


def expression(q: str) -> str:
    """'What is 347 * 829?' -> '347 * 829'; the sum question -> '12 + 45 + 78 + 23 + 91'."""
    family, nums = parse_tool_question(q)
    return f"{nums[0]} * {nums[1]}" if family == "product" else " + ".join(map(str, nums))


def write_tool_solution(q: str, *, tool: bool, strict: bool, guess: int) -> str:
    if tool:
        v = tool_value(q)
        return TOOL_STYLES[0 if strict else 1].format(code=tool_program(q), out=torl_observation(f"{v}\n"), v=v)
    return GUESS_STYLES[0 if strict else 1].format(expr=expression(q), g=guess)


def tool_segments(completion: str) -> list[str]:
    """A tool writer's completion as the episode's pieces: [turn 1 (ends with "```output"), the output, turn 2];
    a guesser's as one piece.

        ' <think> ```python\\nprint(2 * 3)\\n```\\n```output\\n6\\n```\\n</think> <answer> 6 </answer>'
        -> [' <think> ```python\\nprint(2 * 3)\\n```\\n```output', '\\n6\\n```\\n', '</think> <answer> 6 </answer>']
    """
    at = completion.find(TORL_STOP)
    if at < 0:
        return [completion]
    turn1 = completion[:at + len(TORL_STOP)]
    rest = completion[len(turn1):]
    close = rest.index("\n```\n") + len("\n```\n")
    return [turn1, rest[:close], rest[close:]]


def guess_for(q: str, rng: random.Random) -> int:
    """A wrong, nearby number: the product off by 2-20% (either way), the sum off by 1-30."""
    value = tool_value(q)
    family, _ = parse_tool_question(q)
    if family == "product":
        g = round(value * (1 + rng.choice((-1, 1)) * rng.uniform(0.02, 0.2)))
    else:
        g = value + rng.choice((-1, 1)) * rng.randint(1, 30)
    return g if g != value else value + 1


def tools_corpus(questions: list[str], num_docs: int, seed: int, p_tool: float, p_strict: float
                 ) -> list[tuple[str, str]]:
    """`num_docs` (prompt, completion) documents over the given questions (with replacement), deterministic in
    `seed`; prompt and completion apart, as they are tokenized during RL."""
    rng = random.Random(seed)
    docs = []
    for _ in range(num_docs):
        q = rng.choice(questions)
        tool = rng.random() < p_tool
        strict = rng.random() < p_strict
        guess = guess_for(q, rng)
        docs.append((render_prompt(q, "r1_zero"), write_tool_solution(q, tool=tool, strict=strict, guess=guess)))
    return docs
