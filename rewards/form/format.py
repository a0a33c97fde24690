"""Structure rewards: `format` (strict R1 format), `boxed_format` (DeepSeek-R1's own output: reasoning, `</think>`,
then a boxed answer), `tag_count` (partial credit per tag), `reasoning_steps`.

All three are linear-time string scans (no backtracking regex over the whole text), safe on megabytes of input, so
the scorer runs them in the parent process.

    >>> fmt = make_format()
    >>> fmt(["<think> 3*4=12 </think>\\n<answer> 12 </answer>", "<answer> 12 </answer>", "<think>a</think><answer>1</answer> extra"])
    [1.0, 0.0, 0.0]

Chat templates that open `<think>` in the prompt (DeepSeek-R1-Distill, Qwen3 thinking): the completion starts inside
the think block. With `prefilled_think=True` the completion is read as if it began with `<think>`, so those
completions are not zeroed, and a second `<think>` is (still) a format error:

    >>> make_format(prefilled_think=True)(["3*4=12 </think> <answer> 12 </answer>", "<think> 3*4 </think> <answer> 12 </answer>"])
    [1.0, 0.0]

DeepSeek-R1 and the R1-Distill models do not write `<answer>` tags: they reason, close `</think>`, then state the
answer with `\\boxed{}` (R1-Distill templates prefill `<think>`, so it may be absent from the completion):

    >>> make_boxed_format()(["<think> 3*4 </think> The answer is \\\\boxed{12}.", "3*4 </think> \\\\boxed{12}",
    ...                      "<think> 3*4 \\\\boxed{12} </think> twelve", "<answer> 12 </answer>"])
    [1.0, 1.0, 0.0, 0.0]
    >>> make_tag_count()(["<think> x </think> <answer> 1", "<think><think></think><answer>1</answer>"])  # 3 tags ok; 3 ok
    [0.75, 0.75]
    >>> make_reasoning_steps()(["Step 1: add. Step 2: multiply.", "1. a\\n2. b\\n3. c\\n4. d"])  # 2/3 capped at 1
    [0.6666666666666666, 1.0]
"""
from __future__ import annotations

import re
from typing import Any

from rewards.extract import ANSWER_CLOSE, ANSWER_OPEN, TAGS, THINK_CLOSE, THINK_OPEN, completion_text, last_boxed
from rewards.scoring.registry import register_reward


def _check_bool(reward: str, name: str, value: Any) -> None:
    if not isinstance(value, bool):
        raise ValueError(f"reward {reward!r}: parameter {name!r} must be true or false, got {value!r}")


def is_r1_format(text: str, prefilled_think: bool = False) -> bool:
    """Exactly `<think>...</think><answer>...</answer>`, whitespace allowed around and between the blocks, each tag
    exactly once, a non-blank answer. The think block may be empty (distilled models emit `<think>\\n\\n</think>`)."""
    if prefilled_think:
        text = THINK_OPEN + text
    if any(text.count(tag) != 1 for tag in TAGS):
        return False
    a, b = text.index(THINK_OPEN), text.index(THINK_CLOSE)
    c, d = text.index(ANSWER_OPEN), text.index(ANSWER_CLOSE)
    if not a < b < c < d:
        return False
    if text[:a].strip() or text[b + len(THINK_CLOSE):c].strip() or text[d + len(ANSWER_CLOSE):].strip():
        return False
    return bool(text[c + len(ANSWER_OPEN):d].strip())


@register_reward("format", factory=True, cheap=True)
def make_format(prefilled_think: bool = False):
    """1.0 if the completion is exactly one think block then one answer block (see `is_r1_format`), else 0.0."""
    _check_bool("format", "prefilled_think", prefilled_think)

    def format(completions: list, **kwargs: Any) -> list[float]:  # noqa: A001 (TRL logs the __name__)
        return [1.0 if is_r1_format(completion_text(c), prefilled_think) else 0.0 for c in completions]

    return format


def is_boxed_format(text: str) -> bool:
    """Reasoning, exactly one `</think>`, then a non-blank final part with a balanced `\\boxed{...}`; `<think>`
    at most once and only at the start (absent when the template prefilled it); no `<answer>` tags needed."""
    if text.count(THINK_CLOSE) != 1 or text.count(THINK_OPEN) > 1:
        return False
    if THINK_OPEN in text and text[:text.index(THINK_OPEN)].strip():
        return False
    after = text[text.index(THINK_CLOSE) + len(THINK_CLOSE):]
    return last_boxed(after) is not None


@register_reward("boxed_format", factory=True, cheap=True)
def make_boxed_format():
    """1.0 for DeepSeek-R1's own format (see `is_boxed_format`), else 0.0: the rejection filter for R1-style
    teachers in distillation, where `format` (which needs <answer> tags) would keep nothing."""

    def boxed_format(completions: list, **kwargs: Any) -> list[float]:
        return [1.0 if is_boxed_format(completion_text(c)) else 0.0 for c in completions]

    return boxed_format


@register_reward("tag_count", factory=True, cheap=True)
def make_tag_count(prefilled_think: bool = False):
    """0.25 for each of <think>, </think>, <answer>, </answer> that appears exactly once (0.0 to 1.0)."""
    _check_bool("tag_count", "prefilled_think", prefilled_think)

    def tag_count(completions: list, **kwargs: Any) -> list[float]:
        out = []
        for c in completions:
            text = completion_text(c)
            if prefilled_think:
                text = THINK_OPEN + text
            out.append(0.25 * sum(text.count(tag) == 1 for tag in TAGS))
        return out

    return tag_count


# Step markers, each at the start of a line or sentence: "Step 3:", "1." / "2)" list items, "-"/"*" bullets, and
# sequencing words. Every alternative is anchored and bounded, so a scan is linear.
_STEP = re.compile(
    r"(?:^|(?<=[\n.!?;:]))[ \t]*(?:"
    r"step[ \t]*\d{1,4}[ \t]*[:.)]"
    r"|\d{1,3}[.)][ \t]"
    r"|[-*\u2022][ \t]"
    r"|(?:first|second|third|then|next|finally|lastly)\b,?"
    r")",
    re.IGNORECASE | re.MULTILINE,
)


@register_reward("reasoning_steps", factory=True, cheap=True)
def make_reasoning_steps(min_steps: int = 3):
    """min(1, number of step markers / min_steps): "Step 1:", numbered/bulleted list items, "First,"/"Then,"..."""
    if isinstance(min_steps, bool) or not isinstance(min_steps, int) or min_steps < 1:
        raise ValueError(f"reward 'reasoning_steps': parameter 'min_steps' must be an integer >= 1, got {min_steps!r}")

    def reasoning_steps(completions: list, **kwargs: Any) -> list[float]:
        out = []
        for c in completions:
            count = 0
            for _ in _STEP.finditer(completion_text(c)):
                count += 1
                if count >= min_steps:
                    break
            out.append(min(1.0, count / min_steps))
        return out

    return reasoning_steps
