"""Length-aware rewards: `cosine` (length-scaled correctness) and `soft_overlong` (DAPO's overlong punishment).

Lengths, in order of preference: a `completion_length` column (token counts), TRL's `completion_ids` kwarg (token id
lists), a `tokenizer` parameter (a tokenizer object, or a name/path loaded offline with AutoTokenizer), and, for
`cosine` only, the number of characters (open-r1's unit).

cosine ("Demystifying Long Chain-of-Thought Reasoning in LLMs", Yeo et al. 2025): with t = min(L / max_len, 1),

    r = lo + (hi - lo) * (1 + cos(pi * t)) / 2

where (hi, lo) = (max_value_correct, min_value_correct) for a correct answer: short correct answers earn more; and
(hi, lo) = (min_value_wrong, max_value_wrong) for a wrong one: long wrong answers are penalised less (more room to
think is worth exploring). None when the gold is unparseable.

    >>> cos = make_cosine(max_len=100)
    >>> cos(["<answer> 4 </answer>"] * 2 + ["<answer> 5 </answer>"], answer=["4"] * 3, completion_length=[0, 50, 100])
    [1.0, 0.75, -0.5]

(L=0 correct: 1.0; L=50 correct: 0.5 + 0.5 * (1 + cos(pi/2)) / 2 = 0.75; L=100 wrong: -0.5 + (-1 + 0.5) * 0 = -0.5.)

soft_overlong (DAPO, Yu et al. 2025): 0 for L <= max_len - buffer, then linear down to -1 at L = max_len, -1 beyond:

    >>> make_soft_overlong(max_len=100, buffer=20)([""] * 4, completion_length=[80, 90, 100, 130])
    [0.0, -0.5, -1.0, -1.0]
"""
from __future__ import annotations

import math
from typing import Any

from rewards.scoring.deadline import run_with_deadline
from rewards.extract import DEFAULT_MAX_CHARS, completion_text
from rewards.math.accuracy import GOLD_COLUMNS, _check_positive, gold_column, judge, warmup
from rewards.scoring.registry import register_reward


class _Lengths:
    """Completion lengths from a column, TRL's completion_ids, or a tokenizer (loaded lazily, once)."""

    def __init__(self, reward: str, tokenizer: Any, allow_chars: bool):
        if tokenizer is not None and not isinstance(tokenizer, str) and not callable(getattr(tokenizer, "encode", None)):
            raise ValueError(f"reward {reward!r}: parameter 'tokenizer' must be a name/path or a tokenizer, "
                             f"got {type(tokenizer).__name__}")
        self.reward, self.tokenizer, self.allow_chars = reward, tokenizer, allow_chars

    def _tok(self):
        if isinstance(self.tokenizer, str):
            from transformers import AutoTokenizer
            self.tokenizer = AutoTokenizer.from_pretrained(self.tokenizer)
        return self.tokenizer

    def __call__(self, completions: list, kwargs: dict) -> list[int]:
        lengths = kwargs.get("completion_length")
        if lengths is not None:
            return [int(x) for x in lengths]
        ids = kwargs.get("completion_ids")
        if ids is not None:
            return [len(x) for x in ids]
        texts = [completion_text(c) for c in completions]
        if self.tokenizer is not None:
            tok = self._tok()
            return [len(tok.encode(t, add_special_tokens=False)) for t in texts]
        if self.allow_chars:
            return [len(t) for t in texts]
        raise ValueError(f"reward {self.reward!r} needs token lengths: pass a 'completion_length' column, TRL's "
                         f"'completion_ids', or the 'tokenizer' parameter")


def cosine_value(length: int, max_len: int, lo: float, hi: float) -> float:
    """`hi` at length 0 down (or up) to `lo` at max_len and beyond, along half a cosine."""
    t = min(max(length, 0) / max_len, 1.0)
    return lo + (hi - lo) * (1.0 + math.cos(math.pi * t)) / 2.0


@register_reward("cosine", factory=True)
def make_cosine(min_value_wrong: float = -1.0, max_value_wrong: float = -0.5, min_value_correct: float = 0.5,
                max_value_correct: float = 1.0, max_len: int = 1000, tokenizer: Any = None,
                timeout_s: float | None = 5.0, max_chars: int = DEFAULT_MAX_CHARS):
    """Correctness (as `accuracy`) scaled by length; defaults are open-r1's."""
    _check_positive("cosine", max_len=max_len, timeout_s=timeout_s, max_chars=max_chars)
    for k, v in dict(min_value_wrong=min_value_wrong, max_value_wrong=max_value_wrong,
                     min_value_correct=min_value_correct, max_value_correct=max_value_correct).items():
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise ValueError(f"reward 'cosine': parameter {k!r} must be a number, got {v!r}")
    if min_value_wrong > max_value_wrong or min_value_correct > max_value_correct:
        raise ValueError("reward 'cosine': parameters need min_value_wrong <= max_value_wrong and "
                         "min_value_correct <= max_value_correct")
    lengths = _Lengths("cosine", tokenizer, allow_chars=True)

    def cosine(completions: list, answer: list | None = None, solution: list | None = None,
               **kwargs: Any) -> list[float | None]:
        golds = gold_column("cosine", answer, solution, kwargs)
        warmup()
        out: list[float | None] = []
        for c, gold, n in zip(completions, golds, lengths(completions, kwargs), strict=True):
            text = completion_text(c)
            correct = run_with_deadline(lambda: judge(text, gold, int(max_chars)), timeout_s, on_timeout=0.0)
            if correct is None:
                out.append(None)
            elif correct:
                out.append(cosine_value(n, max_len, min_value_correct, max_value_correct))
            else:
                out.append(cosine_value(n, max_len, max_value_wrong, min_value_wrong))
        return out

    cosine.warmup, cosine.requires = warmup, GOLD_COLUMNS
    return cosine


@register_reward("soft_overlong", factory=True, cheap=True)
def make_soft_overlong(max_len: int = 4096, buffer: int = 512, tokenizer: Any = None):
    """DAPO's soft overlong punishment over token lengths (see module docstring)."""
    for k, v in dict(max_len=max_len, buffer=buffer).items():
        if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
            raise ValueError(f"reward 'soft_overlong': parameter {k!r} must be a positive integer, got {v!r}")
    if buffer > max_len:
        raise ValueError(f"reward 'soft_overlong': parameter 'buffer' ({buffer}) must be <= max_len ({max_len})")
    lengths = _Lengths("soft_overlong", tokenizer, allow_chars=False)
    start = max_len - buffer

    def soft_overlong(completions: list, **kwargs: Any) -> list[float]:
        return [0.0 if n <= start else -1.0 if n >= max_len else (start - n) / buffer
                for n in lengths(completions, kwargs)]

    return soft_overlong
