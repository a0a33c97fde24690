"""Reading tool calls out of an assistant turn, and shaping what the tools answer (pure string functions).

Two call styles:

- `hermes` (Qwen2.5/Qwen3, Hermes, and every template that renders `tools` the same way): one JSON object per call,
  `<tool_call>{"name": ..., "arguments": {...}}</tool_call>`, several allowed in one turn; the turn then ends with the
  template's end of turn, and the answers come back as `tool` messages rendered by the chat template.

      parse_hermes('Let me compute.<tool_call>\\n{"name": "python", "arguments": {"code": "print(2**10)"}}\\n'
                   '</tool_call>')
      -> ParsedTurn(items=[ToolCall("python", {"code": "print(2**10)"})])

- `torl` (ToRL, the built-in `python` tool only, for base models without a tool template): the policy writes a fenced
  python block followed by "```output"; decoding stops there (a stop string), the code runs, and its output is
  inserted as text, closing the fence: "\\n<output>\\n```\\n", after which the policy goes on.

      parse_torl("So:\\n```python\\nprint(3 * 4)\\n```\\n```output")
      -> ParsedTurn(items=[ToolCall("python", {"code": "print(3 * 4)"})])

A malformed call (bad JSON, no name, arguments that are not an object, an unterminated tag) is not dropped: it is an
error the policy reads as the tool's answer ("error: ..."), so the format of calls is learned, not hidden.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

STYLES = ("hermes", "torl")
TORL_STOP = "```output"
_CALL = re.compile(r"<tool_call>(.*?)</tool_call>", re.S)
_FENCE = re.compile(r"```(?:python|py)[ \t]*\n(.*?)```", re.S)


@dataclass(frozen=True)
class ToolCall:
    name: str
    arguments: dict


@dataclass(frozen=True)
class ParsedTurn:
    items: list[ToolCall | str] = field(default_factory=list)  # in the turn's order: a call, or why one is malformed

    @property
    def calls(self) -> list[ToolCall]:
        return [x for x in self.items if isinstance(x, ToolCall)]

    @property
    def errors(self) -> list[str]:
        """Malformed calls: each gets an error observation, in its place among the answers."""
        return [x for x in self.items if isinstance(x, str)]

    @property
    def wants_tools(self) -> bool:
        """Whether the turn asked for a tool (well-formed or not): the episode then goes on with the answers."""
        return bool(self.calls or self.errors)


def parse_hermes(text: str, max_calls: int = 8) -> ParsedTurn:
    """The `<tool_call>{json}</tool_call>` calls of one assistant turn, at most `max_calls` (more are errors).

        '<tool_call>{"name": "f", "arguments": {"x": 1}}</tool_call>'  -> calls [f(x=1)]
        '<tool_call>{"name": "f", "arguments": 3}</tool_call>'         -> errors ['tool call arguments must be ...']
        '<tool_call>{"name": "f"'                                      -> errors ['unterminated <tool_call>']
    """
    items: list[ToolCall | str] = []
    for body in _CALL.findall(text):
        if len(items) >= max_calls:
            items.append(f"too many tool calls in one turn (at most {max_calls})")
            break
        try:
            obj = json.loads(body.strip())
        except (ValueError, RecursionError) as e:
            items.append(f"tool call is not valid JSON ({str(e)[:80]})")
            continue
        if not isinstance(obj, dict) or not isinstance(obj.get("name"), str):
            items.append('tool call must be {"name": <tool name>, "arguments": {...}}')
            continue
        args = obj.get("arguments", {})
        if isinstance(args, str):  # some models write the arguments as a JSON string
            try:
                args = json.loads(args)
            except (ValueError, RecursionError):
                pass
        if not isinstance(args, dict):
            items.append(f"tool call arguments must be a JSON object, not {type(args).__name__}")
            continue
        items.append(ToolCall(obj["name"], args))
    last_open, last_close = text.rfind("<tool_call>"), text.rfind("</tool_call>")
    if last_open > last_close:
        items.append("unterminated <tool_call> (no </tool_call>)")
    return ParsedTurn(items)


def parse_torl(text: str) -> ParsedTurn:
    """The ToRL call of one turn: the last ```python block, when the turn ends with "```output" (the stop string).
    A turn that does not end so asks for nothing (it is the final answer).

        "x\\n```python\\nprint(1)\\n```\\n```output"  -> calls [python(code="print(1)")]
        "```output"                                  -> errors ['no ```python block before ```output']
        "The answer is 4."                           -> no calls, no errors
    """
    stripped = text.rstrip()
    if not stripped.endswith(TORL_STOP):
        return ParsedTurn()
    blocks = _FENCE.findall(stripped[:-len(TORL_STOP)])
    if not blocks:
        return ParsedTurn(["no ```python block before ```output"])
    return ParsedTurn([ToolCall("python", {"code": blocks[-1].strip("\n")})])


def parse_turn(text: str, style: str, max_calls: int = 8) -> ParsedTurn:
    if style == "hermes":
        return parse_hermes(text, max_calls)
    if style == "torl":
        return parse_torl(text)
    raise ValueError(f"tool call style {style!r} unknown; valid: {', '.join(STYLES)}")


def truncate_observation(text: str, max_chars: int) -> tuple[str, bool]:
    """(text cut to at most about `max_chars` characters, whether it was cut). The head and the tail are kept (a
    traceback's last line, a program's final result) and the cut is marked with the number of characters left out.

        truncate_observation("abcdefghij", 4) -> ("ab\\n...[6 characters truncated]...\\nij", True)
        truncate_observation("abc", 4)        -> ("abc", False)
    """
    if len(text) <= max_chars:
        return text, False
    head = max_chars - max_chars // 2
    tail = max_chars // 2
    dropped = len(text) - head - tail
    return f"{text[:head]}\n...[{dropped} characters truncated]...\n{text[len(text) - tail:] if tail else ''}", True


def torl_observation(output: str) -> str:
    """The text inserted after "```output" in the ToRL style: the output, then the fence closed.

        torl_observation("12") -> "\\n12\\n```\\n"
    """
    return f"\n{output.rstrip(chr(10))}\n```\n"
