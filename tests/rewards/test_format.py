"""format, tag_count, reasoning_steps: table-driven, hand-derived values."""
from __future__ import annotations

import time

import pytest

from rewards import get_reward

FMT = get_reward("format")
FMT_PREFILLED = get_reward("format", prefilled_think=True)
TAGS = get_reward("tag_count")
TAGS_PREFILLED = get_reward("tag_count", prefilled_think=True)
STEPS = get_reward("reasoning_steps")

FORMAT_CASES = [  # (completion, format, format with prefilled <think>)
    ("<think> 3*4=12 </think> <answer> 12 </answer>", 1.0, 0.0),  # prefilled: a second <think> is an error
    ("  \n<think>\nx\n</think>\n\n<answer>\n12\n</answer>\n", 1.0, 0.0),  # whitespace around/between is fine
    ("<think></think><answer>12</answer>", 1.0, 0.0),  # empty think block (distilled models) is allowed
    ("3*4=12 </think> <answer> 12 </answer>", 0.0, 1.0),  # completion of a template that opened <think>
    ("</think><answer>12</answer>", 0.0, 1.0),
    ("<think> a </think> <answer> </answer>", 0.0, 0.0),  # blank answer
    ("<answer> 12 </answer>", 0.0, 0.0),  # no think block
    ("<think> a </think>", 0.0, 0.0),  # no answer block
    ("<answer> 12 </answer> <think> a </think>", 0.0, 0.0),  # wrong order
    ("<think> a </think> <answer> 12 </answer> and more", 0.0, 0.0),  # text after the answer
    ("hello <think> a </think> <answer> 12 </answer>", 0.0, 0.0),  # text before the think block
    ("<think> a </think> b <answer> 12 </answer>", 0.0, 0.0),  # text between the blocks
    ("<think> a </think> <answer> 1 </answer> <answer> 2 </answer>", 0.0, 0.0),  # two answers
    ("<think> a <think> b </think> <answer> 1 </answer>", 0.0, 0.0),  # nested think
    ("<think> a </think> <answer> 1 <answer> 2 </answer>", 0.0, 0.0),
    ("\uff1cthink\uff1e a \uff1c/think\uff1e <answer> 1 </answer>", 0.0, 0.0),  # full-width look-alike brackets
    ("<\u0442hink> a </\u0442hink> <answer> 1 </answer>", 0.0, 0.0),  # Cyrillic te in 'think'
    ("", 0.0, 0.0),
    (None, 0.0, 0.0),
]


@pytest.mark.parametrize("completion,plain,prefilled", FORMAT_CASES)
def test_format(completion, plain, prefilled):
    assert FMT([completion]) == [plain]
    assert FMT_PREFILLED([completion]) == [prefilled]


def test_format_chat_messages():
    msgs = [[{"role": "assistant", "content": "<think> a </think> <answer> 1 </answer>"}],
            [{"role": "assistant", "content": "a </think> <answer> 1 </answer>"}]]
    assert FMT(msgs) == [1.0, 0.0]
    assert FMT_PREFILLED(msgs) == [0.0, 1.0]


TAG_CASES = [  # (completion, tag_count, tag_count with prefilled <think>): 0.25 per tag present exactly once
    ("<think> a </think> <answer> 1 </answer>", 1.0, 0.75),  # prefilled: <think> twice -> 3 tags ok
    ("a </think> <answer> 1 </answer>", 0.75, 1.0),
    ("<think> a </think> <answer> 1", 0.75, 0.5),
    ("<answer> 1 </answer>", 0.5, 0.75),
    ("<think><think></think><answer>1</answer>", 0.75, 0.75),  # <think> twice: 3 * 0.25
    ("<answer>1</answer><answer>2</answer>", 0.0, 0.25),
    ("no tags", 0.0, 0.25),
    ("", 0.0, 0.25),
    (None, 0.0, 0.25),
    ("\uff1cthink\uff1e\uff1c/think\uff1e<answer>1</answer>", 0.5, 0.75),  # look-alikes do not count
]


@pytest.mark.parametrize("completion,plain,prefilled", TAG_CASES)
def test_tag_count(completion, plain, prefilled):
    assert TAGS([completion]) == [plain]
    assert TAGS_PREFILLED([completion]) == [prefilled]


STEP_CASES = [  # (completion, reward): min(1, markers / 3)
    ("Step 1: add. Step 2: multiply. Step 3: check.", 1.0),
    ("Step 1: add. Step 2: multiply.", 2 / 3),
    ("1. add\n2. multiply\n3. check\n4. done", 1.0),  # 4 markers, capped at 1
    ("- add\n- multiply", 2 / 3),
    ("* add", 1 / 3),
    ("First, add 3 and 4. Then, multiply by 5. Finally, check.", 1.0),
    ("first, we add.", 1 / 3),
    ("The answer is 3.14 and 2.5 here", 0.0),  # decimals are not list items
    ("no structure at all", 0.0),
    ("", 0.0),
    (None, 0.0),
]


@pytest.mark.parametrize("completion,expected", STEP_CASES)
def test_reasoning_steps(completion, expected):
    assert STEPS([completion]) == [pytest.approx(expected)]


def test_reasoning_steps_min_steps_param():
    assert get_reward("reasoning_steps", min_steps=2)(["Step 1: a. Step 2: b. Step 3: c."]) == [1.0]  # min(1, 3/2)
    assert get_reward("reasoning_steps", min_steps=4)(["Step 1: a. Step 2: b."]) == [0.5]  # 2/4
    with pytest.raises(ValueError, match="reasoning_steps.*min_steps"):
        get_reward("reasoning_steps", min_steps=0)


def test_prefilled_think_must_be_bool():
    with pytest.raises(ValueError, match="format.*prefilled_think"):
        get_reward("format", prefilled_think="yes")


HOSTILE = [
    "<think>" + "a " * 500_000 + "</think><answer>5</answer>",  # 1 MB, well formed
    "<think>" * 100_000 + "</think>" * 100_000,
    "1. " * 300_000,
    "\\boxed{" + "{" * 10_000 + "}" * 10_000 + "}",
    "\ud800 lone surrogate <think>",
]


@pytest.mark.parametrize("i", range(len(HOSTILE)))
def test_hostile_inputs_are_fast(i):
    start = time.perf_counter()
    for fn in (FMT, FMT_PREFILLED, TAGS, STEPS):
        assert len(fn([HOSTILE[i]])) == 1
    assert time.perf_counter() - start < 1.0
    assert FMT([HOSTILE[0]]) == [1.0] and TAGS([HOSTILE[1]]) == [0.0] and STEPS([HOSTILE[2]]) == [1.0]


BOXED = get_reward("boxed_format")
BOXED_CASES = [  # (completion, expected): DeepSeek-R1 / R1-Distill output, `</think>` then a boxed answer
    ("<think>\n4*5=20, 3+20=23\n</think>\n\nThe answer is $\\boxed{23}$.", 1.0),
    ("4*5=20, 3+20=23\n</think>\n\\boxed{23}", 1.0),  # the template prefilled <think>
    ("<think></think>\\boxed{\\frac{1}{2}}", 1.0),  # empty reasoning, nested braces
    ("<think> 4*5=20 \\boxed{20} </think> so 23", 0.0),  # the box is inside the reasoning only
    ("<think> a </think> \\boxed{23", 0.0),  # unbalanced box
    ("<think> a </think> 23", 0.0),  # no box
    ("<think> a </think> \\boxed{1} </think> \\boxed{2}", 0.0),  # two </think>
    ("intro <think> a </think> \\boxed{1}", 0.0),  # text before <think>
    ("<think> a <think> b </think> \\boxed{1}", 0.0),  # nested think
    ("<think> a", 0.0),  # cut off inside the reasoning
    ("<think> a </think> <answer> 23 </answer>", 0.0),  # the tag format is not this one
    ("", 0.0),
]


@pytest.mark.parametrize("completion, expected", BOXED_CASES)
def test_boxed_format(completion, expected):
    assert BOXED([completion]) == [expected]
