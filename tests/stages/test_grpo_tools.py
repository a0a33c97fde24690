"""GRPO with multi-turn episodes (issue 27): the recipe's `tools` / `episodes` keys reach the rollout, the steps
train on episodes of two turns with the environment's tokens masked, and the tool metrics are logged. The micro
model (random weights) on the r1_zero template with the ToRL style and a two-turn environment."""
from __future__ import annotations

import math

import pytest

from rl.config.recipe import ConfigError
from rl.train.tracking import read_metrics
from tests.stages.test_grpo_prompts import TINY, run_grpo

ENV = "tests.rollout.episodes.tools_fixtures:CheckTwice"


def test_grpo_runs_multi_turn_episodes(micro_model_dir, tmp_path):
    rows = run_grpo(micro_model_dir, tmp_path, "tools=[python]", "episodes.style=torl",
                    f"episodes.environment={ENV}", "episodes.max_turn_tokens=3", "rollout.max_completion_length=24",
                    "episodes.sandboxes=1", f"data.test={tmp_path / 'prompts.jsonl'}", "data.max_eval_samples=2")
    assert len(rows) == 3
    for m in rows:
        assert math.isfinite(m["loss"])
        # every episode: turn 1 (<= 3 tokens), the environment's answer, turn 2 (<= 3 tokens), unless EOS came first
        assert 1 < m["tools/turns"] <= 2 and m["tools/observation_tokens"] > 0 and m["tools/checks"] == 1.0
    evals = [m for m in read_metrics(tmp_path / "run") if "eval/accuracy" in m]
    assert len(evals) == 2 and all(m["eval/tools/turns"] > 1 for m in evals)  # evaluation runs the same episodes


@pytest.mark.parametrize("overrides, message", [
    (["tools=[python]"], "needs data.template=chat"),  # hermes (the default style) on the r1_zero template
    (["tools=[python]", "episodes.style=torl", "episodes.max_turns=0"], "episodes.max_turns=0"),
    (["tools=[python, tests.rollout.episodes.tools_fixtures:multiply]", "episodes.style=torl"],
     "torl calls only the python tool"),
    (["tools=[tests.rollout.episodes.tools_fixtures:nothing]", "data.template=chat"], "cannot load"),
    (["tools=[tests.rollout.episodes.tools_fixtures:undocumented]", "data.template=chat"], "no usable schema"),
    (["tools=[search]", "data.template=chat"], "is not `module.path:name` \\(or `python`\\)"),
    (["episodes.environment=tests.rollout.episodes.tools_fixtures:Nope", "episodes.style=torl"], "cannot load"),
    (["tools=[python]", "episodes.style=torl", "rollout.engine=vllm", "rollout.stream=true",
      "rollout.max_staleness=1"], "^rollout.stream=true decodes single-turn requests only"),
])
def test_recipe_errors(overrides, message):
    from rl.config.grpo import GRPOConfig
    from rl.config.recipe import load_config
    with pytest.raises(ConfigError, match=message):
        load_config(GRPOConfig, TINY, overrides)  # validates


@pytest.mark.parametrize("mode", ["colocate", "server"])
def test_recipe_accepts_the_vllm_engines(mode):
    """Multi-turn episodes run on vLLM, colocated or server (stop strings passed through:
    tests/vllm/test_vllm_multi_turn.py, tests/vllm/test_vllm_server.py)."""
    from rl.config.grpo import GRPOConfig
    from rl.config.recipe import load_config
    cfg = load_config(GRPOConfig, TINY, ["tools=[python]", "episodes.style=torl", "rollout.engine=vllm",
                                         f"rollout.vllm_mode={mode}", "rollout.vllm_server_url=http://x:8000"])
    assert (cfg.rollout.engine, cfg.rollout.vllm_mode, cfg.tools) == ("vllm", mode, ["python"])


@pytest.mark.parametrize("overrides", [["rollout.async_steps=1"], ["rollout.max_staleness=2"],
                                       ["rollout.async_steps=1", "rollout.engine=vllm"],
                                       ["rollout.async_steps=1", "rollout.engine=vllm", "rollout.vllm_mode=server",
                                        "rollout.vllm_server_url=http://x:8000"]])
def test_recipe_accepts_async_rollouts(overrides):
    """Asynchronous rollouts with tools (refused until 2026-12-06): the worker runs whole episodes
    (rl/rollout/episodes/async_episodes.py), on its own engine or as the vLLM server's client
    (tests/vllm/test_vllm_server.py::test_rollout_worker_runs_multi_turn_episodes_against_the_server)."""
    from rl.config.grpo import GRPOConfig
    from rl.config.recipe import load_config
    cfg = load_config(GRPOConfig, TINY, ["tools=[python]", "episodes.style=torl", *overrides])
    assert cfg.rollout.async_steps >= 1 and cfg.tools == ["python"]
