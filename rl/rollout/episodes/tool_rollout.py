"""Multi-turn episodes from the recipe: `tools` and the `episodes` section (rl/config/episodes.py) -> an engine
wrapper whose episodes run the loop of multi_turn.py. Without tools or an environment nothing is wrapped.

    engine = episode_engine(cfg, engine, tokenizer)     # rl/grpo.py, after make_engine
    collect_episodes(engine, ...)                       # calls engine.episodes(...) for a MultiTurnEngine

Everything else (update_weights, release_memory, close, evaluation's plain `generate`) goes to the wrapped engine.
`episode_spec(cfg)` is the picklable part of the recipe it is built from (`build_episode_engine`): the asynchronous
rollout worker builds the same machinery in its own process from it (rl/rollout/episodes/async_episodes.py).
"""
from __future__ import annotations

import importlib
import time
from dataclasses import asdict, dataclass
from typing import Any, Callable

from data.templates import render_prompt
from rl.core.episode import Episode, SamplingParams
from rl.rollout.episodes.environments.base import ToolEnvironment, ToolLimits, TRLEnvironment
from rl.rollout.episodes.multi_turn import (ChatRenderer, EpisodeLimits, ToRLRenderer, episode_metrics,
                                            extend_prompt, run_episodes)


class MultiTurnEngine:
    def __init__(self, engine, tokenizer, make_env: Callable[[], Any], style: str, limits: EpisodeLimits,
                 system_prompt: str | None = None, pool=None, template: str = "chat"):
        self.engine, self.make_env, self.style, self.limits = engine, make_env, style, limits
        self.system_prompt, self.pool = system_prompt, pool
        probe = make_env()
        self.renderer = (ChatRenderer(tokenizer, list(probe.tools)) if style == "hermes"
                         else ToRLRenderer(tokenizer, chat=template == "chat"))
        self.metrics: dict[str, float] = {}  # the last call's episode metrics

    def __getattr__(self, name):  # only for names not set here: the wrapped engine's
        if name == "engine":
            raise AttributeError(name)
        return getattr(self.engine, name)

    def episodes(self, encoder, batch: list[tuple[int, dict]], params: SamplingParams, first_group_id: int
                 ) -> list[Episode]:
        """params.n episodes per (index, row), each with its own environment reset from the row."""
        starts, meta = [], []
        for g, (i, row) in enumerate(batch):
            for _ in range(params.n):
                env = self.make_env()
                extra = env.reset(row)
                if self.style == "hermes":
                    messages = render_prompt(extend_prompt(row["prompt"], extra), "chat", self.system_prompt)
                    ids = self.renderer.prompt_ids(messages)
                    if len(ids) > encoder.max_prompt_length:  # cut from the left, counted as the encoder does
                        encoder.cut.add(i)
                        ids = ids[-encoder.max_prompt_length:]
                else:
                    messages = []
                    ids = encoder(i, row) if not extra else encoder.tokenizer(
                        extend_prompt(row["prompt"], extra), add_special_tokens=False)["input_ids"]
                starts.append((ids, messages, env))
                meta.append((first_group_id + g, row))
        t0 = time.time()
        completions = run_episodes(self.engine, self.renderer, starts, params, self.limits)
        self.metrics = episode_metrics(completions, time.time() - t0)
        for _, _, env in starts:
            close = getattr(env, "close", None)
            if callable(close):
                close()
        return [Episode(group_id=gid, example=row, completion=c) for (gid, row), c in zip(meta, completions)]

    def close(self) -> None:
        if self.pool is not None:
            self.pool.close()
        self.engine.close()


@dataclass
class EpisodeSpec:
    """What building the episode machinery needs, taken from the recipe (picklable: the asynchronous rollout worker
    builds its own from it, rl/rollout/episodes/async_episodes.py)."""

    tools: list[str]
    episodes: dict  # the recipe's `episodes` section (EpisodesConfig's fields)
    max_completion_length: int  # the whole episode's token budget
    max_prompt_length: int | None  # the async worker's PromptEncoder (None: in-process, the caller's encoder)
    template: str
    system_prompt: str | None = None


def episode_spec(cfg) -> EpisodeSpec | None:
    """The recipe's episode spec; None when it lists no tools and no environment (single-turn episodes)."""
    if not cfg.tools and cfg.episodes.environment is None:
        return None
    r, d = cfg.rollout, cfg.data
    return EpisodeSpec(list(cfg.tools), asdict(cfg.episodes), r.max_completion_length, r.max_prompt_length,
                       d.template, d.system_prompt)


def build_episode_engine(spec: EpisodeSpec, engine, tokenizer) -> MultiTurnEngine:
    """`engine` wrapped by a MultiTurnEngine with the spec's tools (a SandboxPool of its own for `python`, closed
    by the MultiTurnEngine's close), environment and limits."""
    from rl.config.episodes import EpisodesConfig
    from rl.rollout.episodes.tools.base import PythonTool, SandboxPool, load_tools
    from sandbox import Limits
    e = EpisodesConfig(**spec.episodes)
    pool = None
    if "python" in spec.tools:
        pool = SandboxPool(e.sandboxes, Limits(memory_mb=e.python_memory_mb, wall_s=e.python_timeout_s,
                                               cpu_s=max(1, int(e.python_timeout_s) + 1)))
    tools = load_tools(spec.tools, lambda: PythonTool(pool, e.python_stateful, e.python_timeout_s), e.tool_timeout_s)
    limits = ToolLimits(e.max_tool_calls, e.max_calls_per_turn, e.max_observation_chars)
    if e.environment is None:
        def make_env():
            return ToolEnvironment(tools, e.style, limits)
    else:
        module, _, attr = e.environment.partition(":")
        factory = getattr(importlib.import_module(module), attr)

        def make_env():
            inst = factory()
            return inst if callable(getattr(inst, "step", None)) else TRLEnvironment(inst, tools, e.style, limits,
                                                                                    e.tool_timeout_s)
    episode_limits = EpisodeLimits(e.max_turns, spec.max_completion_length, e.max_turn_tokens, e.workers)
    return MultiTurnEngine(engine, tokenizer, make_env, e.style, episode_limits, spec.system_prompt, pool,
                           spec.template)


def episode_engine(cfg, engine, tokenizer):
    """The engine, wrapped for multi-turn episodes when the recipe lists tools or an environment."""
    spec = episode_spec(cfg)
    return engine if spec is None else build_episode_engine(spec, engine, tokenizer)
