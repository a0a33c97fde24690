"""`tool_format`: the syntax of tool calls in multi-turn episodes (docs/tools.md).

Multi-turn episodes hand each episode's counts to the rewards as columns: `tool_calls` (well-formed calls) and
`tool_format_errors` (calls that did not parse: bad JSON, no name, arguments not an object, an unterminated tag).

    r = well-formed / (well-formed + malformed), 1.0 for an episode without any call, None without the columns

    >>> make_tool_format()(["", "", ""], tool_calls=[2, 0, 1], tool_format_errors=[0, 0, 3])
    [1.0, 1.0, 0.25]

(2 of 2 parsed: 1.0; no call: 1.0, the reward is about form, not about calling; 1 of 4: 0.25.) A single-turn run has
no such columns: None ("cannot judge"), counted by the scorer, never rewarded.
"""
from __future__ import annotations

from typing import Any

from rewards.scoring.registry import register_reward


@register_reward("tool_format", factory=True, cheap=True)
def make_tool_format():
    """Share of an episode's tool calls that parsed (see the module docstring)."""

    def tool_format(completions: list, tool_calls: list | None = None, tool_format_errors: list | None = None,
                    **kwargs: Any) -> list[float | None]:
        if tool_calls is None or tool_format_errors is None:
            return [None] * len(completions)
        out: list[float | None] = []
        for good, bad in zip(tool_calls, tool_format_errors, strict=True):
            good, bad = float(good or 0), float(bad or 0)
            out.append(1.0 if good + bad == 0 else good / (good + bad))
        return out

    return tool_format
