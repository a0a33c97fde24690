"""The environment interface of multi-turn episodes, and the tool loop as one environment.

The convention is OpenEnv's / gym's `reset` + `step`, with TRL's `environment_factory` details (a factory makes one
environment per episode; `reset` receives the dataset row and may return a string appended to the last user
message; the environment may own a reward). Observations are chat messages, so the chat template renders them:

    class Environment(Protocol):
        tools: list[dict]                        # JSON schemas shown to the model (may be empty)
        def reset(self, row: dict) -> str | None # called once per episode, before the first turn
        def step(self, turn: str) -> StepResult  # the policy's turn (its text) -> what the environment answers
        def close(self) -> None                  # optional

    StepResult(messages=[{"role": "tool", "content": "56088"}], done=False, reward=None, info={...})

`done=True` ends the episode (its messages, if any, are then not shown). `reward` (the last one given) is handed to
the reward functions as the `env_reward` column; `info` counts (tool calls, errors, timeouts, seconds) are summed
per episode into the step's metrics. A TRL environment class (public methods as tools, `reset(**row)`,
`get_reward()`) runs here through `TRLEnvironment`; docs/tools.md shows a verifiers `MultiTurnEnv` adapter.
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any, Protocol

from rl.rollout.episodes.tools.base import FunctionTool
from rl.rollout.episodes.tools.parse import parse_turn, truncate_observation


@dataclass
class StepResult:
    messages: list[dict] = field(default_factory=list)  # role "tool" (a tool's answer) or "user"
    done: bool = False
    reward: float | None = None
    info: dict[str, float] = field(default_factory=dict)


class Environment(Protocol):
    tools: list[dict]

    def reset(self, row: dict) -> str | None: ...

    def step(self, turn: str) -> StepResult: ...


@dataclass(frozen=True)
class ToolLimits:
    max_tool_calls: int = 8  # per episode; calls beyond it are answered with an error
    max_calls_per_turn: int = 4
    max_observation_chars: int = 2000  # a longer answer is cut (head and tail kept, the cut marked)


class ToolEnvironment:
    """The tool loop: each turn's tool calls (in `style`: hermes or torl) are run and answered; a turn without a
    call ends the episode. Every failure (malformed call, unknown tool, exception, timeout, limit) is an answer
    starting with "error:"; nothing raises."""

    def __init__(self, tools: list, style: str = "hermes", limits: ToolLimits = ToolLimits()):
        self.by_name = {t.name: t for t in tools}
        self.tools = [t.schema for t in tools]
        self.style, self.limits = style, limits
        self.state: dict[str, Any] = {}
        self.calls = 0

    def reset(self, row: dict) -> str | None:
        self.state, self.calls = {}, 0
        return None

    def _answer(self, name: str | None, text: str) -> tuple[dict, bool]:
        text, cut = truncate_observation(text, self.limits.max_observation_chars)
        msg = {"role": "tool", "content": text}
        if name:
            msg["name"] = name
        return msg, cut

    def step(self, turn: str) -> StepResult:
        parsed = parse_turn(turn, self.style, self.limits.max_calls_per_turn)
        if not parsed.wants_tools:
            return StepResult(done=True)
        info = {"tool_calls": 0.0, "tool_errors": 0.0, "tool_format_errors": 0.0, "tool_timeouts": 0.0,
                "tool_seconds": 0.0, "observations_truncated": 0.0}
        answers = []
        for call in parsed.items:  # in the turn's order, so the answers line up with the calls
            if isinstance(call, str):  # a malformed call (the `tool_format` reward reads these counts)
                answers.append((None, f"error: {call}"))
                info["tool_errors"] += 1
                info["tool_format_errors"] += 1
                continue
            info["tool_calls"] += 1
            tool = self.by_name.get(call.name)
            if self.calls >= self.limits.max_tool_calls:
                answers.append((call.name, f"error: tool call limit ({self.limits.max_tool_calls}) reached; "
                                           "answer without tools"))
                info["tool_errors"] += 1
                continue
            self.calls += 1
            if tool is None:
                answers.append((call.name, f"error: unknown tool {call.name!r}; tools: "
                                           f"{', '.join(self.by_name) or 'none'}"))
                info["tool_errors"] += 1
                continue
            res = tool.call(call.arguments, self.state)
            info["tool_errors"] += float(res.error)
            info["tool_timeouts"] += float(res.timed_out)
            info["tool_seconds"] += res.seconds
            answers.append((call.name, res.text))
        messages = []
        for name, text in answers:
            msg, cut = self._answer(name, text)
            info["observations_truncated"] += float(cut)
            messages.append(msg)
        return StepResult(messages, done=False, info=info)


class TRLEnvironment(ToolEnvironment):
    """A TRL `environment_factory` environment: its public methods are its tools, `reset(**row)` may return a string
    for the prompt, `get_reward()` (optional) scores the finished episode (the `env_reward` column)."""

    def __init__(self, instance: Any, tools: list = (), style: str = "hermes", limits: ToolLimits = ToolLimits(),
                 timeout_s: float = 10.0):
        methods = [getattr(instance, name) for name, _ in inspect.getmembers(type(instance), inspect.isfunction)
                   if not name.startswith("_") and name not in ("reset", "get_reward")]
        if not callable(getattr(instance, "reset", None)):
            raise ValueError(f"environment {type(instance).__name__}: TRL environments define reset(**row)")
        super().__init__(list(tools) + [FunctionTool(m, timeout_s) for m in methods], style, limits)
        self.instance = instance

    def reset(self, row: dict) -> str | None:
        super().reset(row)
        return self.instance.reset(**row)

    def step(self, turn: str) -> StepResult:
        result = super().step(turn)
        if result.done and callable(getattr(self.instance, "get_reward", None)):
            result.reward = float(self.instance.get_reward())
        return result
