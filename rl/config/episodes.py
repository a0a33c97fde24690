"""The recipe's multi-turn episode keys (docs/tools.md): `tools` (top level) and the `episodes` section.

    tools: [python, my_pkg.my_mod:search]   # the built-in sandboxed interpreter and your own functions
    episodes:
      style: hermes          # hermes (<tool_call>{json}</tool_call>, needs data.template: chat) | torl (```python +
                             # ```output, any template, the python tool only)
      max_turns: 4           # assistant turns per episode
      max_tool_calls: 8      # per episode (more: error answers)
      ...
The whole episode shares ONE token budget, rollout.max_completion_length (every turn and every tool answer).
"""
from __future__ import annotations

from dataclasses import dataclass

from rl.config.recipe import ConfigError


@dataclass
class EpisodesConfig:
    style: str = "hermes"  # hermes | torl
    environment: str | None = None  # module:factory, an environment per episode (docs/tools.md); None: the tool loop
    max_turns: int = 4
    max_tool_calls: int = 8  # per episode
    max_calls_per_turn: int = 4
    max_turn_tokens: int | None = None  # one assistant turn; None: what is left of max_completion_length
    max_observation_chars: int = 2000  # a longer tool answer is cut, head and tail kept, the cut marked
    tool_timeout_s: float = 10.0  # a plain function tool's deadline
    python_stateful: bool = True  # the python tool keeps an episode's state across its calls (else fresh per call)
    python_timeout_s: float = 5.0  # wall clock of one python call (sandbox)
    python_memory_mb: int = 1024  # address space of one python call (sandbox)
    sandboxes: int = 4  # warm sandboxes shared by all episodes' python calls (bounded parallelism)
    workers: int = 8  # environments answering at once

    def check(self, tools: list[str], template: str) -> None:
        """Any engine, synchronous or asynchronous rollouts (the worker runs whole episodes: async_episodes.py)."""
        if not tools and self.environment is None:
            return
        if self.style not in ("hermes", "torl"):
            raise ConfigError(f"episodes.style={self.style!r} is not one of: hermes, torl")
        if self.style == "hermes" and template != "chat":
            raise ConfigError("episodes.style=hermes shows the tools through the chat template: it needs "
                              f"data.template=chat (not {template!r}); episodes.style=torl works on any template")
        if self.style == "torl" and any(t != "python" for t in tools):
            raise ConfigError(f"episodes.style=torl calls only the python tool; tools={tools}")
        for key in ("max_turns", "max_tool_calls", "max_calls_per_turn", "max_observation_chars", "sandboxes",
                    "workers", "python_memory_mb"):
            if getattr(self, key) < 1:
                raise ConfigError(f"episodes.{key}={getattr(self, key)} must be at least 1")
        if self.max_turn_tokens is not None and self.max_turn_tokens < 1:
            raise ConfigError(f"episodes.max_turn_tokens={self.max_turn_tokens} must be at least 1 (or null)")
        if self.tool_timeout_s <= 0 or self.python_timeout_s <= 0:
            raise ConfigError("episodes.tool_timeout_s and episodes.python_timeout_s must be > 0")
        check_importable(tools, self.environment)


def check_importable(tools: list[str], environment: str | None) -> None:
    """Each `module:function` tool imports and has a schema (type hints, docstring), the environment factory
    imports: a one-line ConfigError now rather than after the models load."""
    import importlib

    from transformers.utils import get_json_schema
    for key, spec in [("tools", t) for t in tools if t != "python"] + [("episodes.environment", environment)] * (
            environment is not None):
        module, sep, attr = spec.partition(":")
        if not sep or not module or not attr:
            raise ConfigError(f"{key}: {spec!r} is not `module.path:name`" + (" (or `python`)" if key == "tools"
                                                                            else ""))
        try:
            obj = getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError) as e:
            raise ConfigError(f"{key}: cannot load {spec!r} ({e})") from None
        if key == "tools":
            try:
                get_json_schema(obj)
            except Exception as e:  # noqa: BLE001 (transformers' docstring / type-hint errors)
                raise ConfigError(f"tools: {spec!r} has no usable schema ({e})") from None
