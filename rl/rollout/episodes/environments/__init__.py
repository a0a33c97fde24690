"""Environments of multi-turn episodes (reset from a row, step on an assistant turn): base.py holds the interface,
the tool loop (`ToolEnvironment`) and the adapter of TRL's environment classes. See docs/tools.md."""
from rl.rollout.episodes.environments.base import (Environment, StepResult, ToolEnvironment, ToolLimits,
                                                   TRLEnvironment)

__all__ = ["Environment", "StepResult", "ToolEnvironment", "ToolLimits", "TRLEnvironment"]
