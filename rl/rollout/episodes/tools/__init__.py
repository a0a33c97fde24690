"""Tools of multi-turn episodes: parse.py (pure: reading tool calls, shaping observations), base.py (functions as
tools, the sandboxed `python` tool, loading tools named in the recipe). See docs/tools.md."""
from rl.rollout.episodes.tools.base import (FunctionTool, PythonTool, SandboxPool, ToolResult, load_tools,
                                            tool_schema)
from rl.rollout.episodes.tools.parse import (ParsedTurn, ToolCall, parse_hermes, parse_torl, parse_turn,
                                             torl_observation, truncate_observation)

__all__ = ["FunctionTool", "ParsedTurn", "PythonTool", "SandboxPool", "ToolCall", "ToolResult", "load_tools",
           "parse_hermes", "parse_torl", "parse_turn", "tool_schema", "torl_observation", "truncate_observation"]
