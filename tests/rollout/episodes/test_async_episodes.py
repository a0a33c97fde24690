"""Multi-turn episodes run whole in the rollout worker (rl/rollout/episodes/async_episodes.py): the episode spec
pickles, the worker's "episodes" command returns the completions the in-process MultiTurnEngine returns on the same
seed (ids, masks, logprobs, tool stats), prompt cuts reach the learner's encoder, bad input fails clearly."""
import pickle
from dataclasses import asdict
from pathlib import Path

import pytest
import torch

from rl.core.episode import SamplingParams
from rl.rollout.engines.worker import EngineSpec, RolloutWorker, RolloutWorkerError
from rl.rollout.episodes.async_episodes import RUNNER, EpisodeWorker, TickingEnv, WorkerEpisodes, worker_episodes
from rl.rollout.episodes.collect import PromptEncoder
from rl.rollout.episodes.tool_rollout import EpisodeSpec, build_episode_engine, episode_spec

ROOT = Path(__file__).resolve().parents[3]
ENV = "tests.rollout.episodes.tools_fixtures:CheckTwice"
# a two-turn environment (no sandbox needed), the ToRL style on the r1_zero template; 3 tokens a turn
SPEC = EpisodeSpec(tools=[], episodes={"style": "torl", "environment": ENV, "max_turns": 3, "max_turn_tokens": 3},
                   max_completion_length=24, max_prompt_length=256, template="r1_zero")  # prompts: 206, 497 tokens
ROWS = [(0, {"prompt": "What is 2+3?", "answer": "5"}), (1, {"prompt": "What is 7*8? " * 30, "answer": "56"})]


def test_the_recipes_episode_spec_pickles_and_rebuilds():
    from rl.config.grpo import GRPOConfig
    from rl.config.recipe import load_config
    cfg = load_config(GRPOConfig, str(ROOT / "recipes/tiny/r1_zero_tools.yaml"), ["rollout.async_steps=1"])
    runner, spec = worker_episodes(cfg)
    assert runner == RUNNER
    assert pickle.loads(pickle.dumps(spec)) == spec  # crosses to the worker process in EngineSpec
    rebuilt = EpisodeSpec(**spec)
    assert (rebuilt.tools, rebuilt.episodes["style"], rebuilt.episodes["max_turns"], rebuilt.max_completion_length,
            rebuilt.max_prompt_length, rebuilt.template) == (["python"], "torl", 3, 64, 64, "r1_zero")
    engine_spec = EngineSpec(engine="hf", model_path="m", episode_runner=runner, episode_spec=spec)
    assert EngineSpec(**pickle.loads(pickle.dumps(asdict(engine_spec)))) == engine_spec
    single = load_config(GRPOConfig, str(ROOT / "recipes/tiny/r1_zero.yaml"), [])
    assert worker_episodes(single) is None and episode_spec(single) is None  # single-turn: no episode machinery


@pytest.fixture(scope="module")
def episode_worker(micro_model_dir):
    w = RolloutWorker(EngineSpec(engine="hf", model_path=str(micro_model_dir), episode_runner=RUNNER,
                                 episode_spec=asdict(SPEC)), timeout_s=120)
    yield EpisodeWorker(w)
    w.close()


def test_worker_episodes_equal_the_in_process_engines(episode_worker, micro_model_dir):
    from rl.rollout.engines.hf import HFEngine
    from rl.train.models import load_causal_lm, load_tokenizer
    tok = load_tokenizer(str(micro_model_dir))
    model = load_causal_lm(str(micro_model_dir), "float32").eval()  # as the worker loads it
    local = build_episode_engine(SPEC, HFEngine(model, tok), tok)
    params = SamplingParams(n=2, max_tokens=24, seed=11)
    here = local.episodes(PromptEncoder(tok, "r1_zero", None, 256), ROWS, params, first_group_id=0)
    encoder = PromptEncoder(tok, "r1_zero", None, 256)  # the learner's: the worker's cut reaches it
    there = episode_worker.episodes(encoder, ROWS, params, first_group_id=0)
    assert [e.group_id for e in there] == [e.group_id for e in here] == [0, 0, 1, 1]
    assert [e.example for e in there] == [row for _, row in ROWS for _ in range(2)]
    for a, b in zip(here, there):
        assert b.completion.prompt_ids == a.completion.prompt_ids
        assert b.completion.completion_ids == a.completion.completion_ids
        assert b.completion.mask == a.completion.mask and b.completion.info == a.completion.info
        assert b.completion.finish_reason == a.completion.finish_reason
        torch.testing.assert_close(torch.tensor(b.completion.logprobs), torch.tensor(a.completion.logprobs),
                                   rtol=0, atol=1e-5)
        # two turns of 3 tokens, the environment's "check" answer between them (mask 0)
        assert b.completion.info["turns"] == 2 and b.completion.mask.count(1) == 6
        assert b.completion.mask.count(0) == b.completion.info["observation_tokens"] > 0
    assert encoder.cut == {1} and encoder.count_cut(ROWS) == 1  # row 1's prompt is over 256 tokens
    assert episode_worker.metrics["tools/turns"] == 2.0 and episode_worker.metrics["tools/checks"] == 1.0
    assert episode_worker.metrics == {k: v for k, v in local.metrics.items() if k != "time/episodes_s"} | {
        "time/episodes_s": episode_worker.metrics["time/episodes_s"]}


def test_submitted_episode_jobs_come_back_as_groups_with_their_version(episode_worker, micro_model_dir):
    from rl.train.models import load_tokenizer
    encoder = PromptEncoder(load_tokenizer(str(micro_model_dir)), "r1_zero", None, 256)
    params = SamplingParams(n=3, max_tokens=24, seed=5)
    first, second = (episode_worker.submit_rows(encoder, ROWS, params) for _ in range(2))
    groups_2, version, seconds = episode_worker.result(second)  # out of order: kept by job
    groups_1, _, _ = episode_worker.result(first)
    assert [len(g) for g in groups_1] == [3, 3] and version == 0 and seconds > 0
    assert [[c.completion_ids for c in g] for g in groups_1] == [[c.completion_ids for c in g] for g in groups_2]


def test_episodes_command_without_an_episode_spec_is_one_clear_error(micro_model_dir):
    w = RolloutWorker(EngineSpec(engine="hf", model_path=str(micro_model_dir)), timeout_s=120)
    try:
        job = w.submit_episodes(ROWS, SamplingParams(n=1, max_tokens=4))
        with pytest.raises(RolloutWorkerError, match="started without an episode spec"):
            w.result(job)
    finally:
        w.close()


def test_worker_episodes_refuses_a_spec_that_is_not_a_dict():
    with pytest.raises(TypeError, match="expected the dict of an EpisodeSpec, got EpisodeSpec"):
        WorkerEpisodes(SPEC, engine=None, model_path="unused")


def test_ticking_env_ticks_once_per_step_even_when_the_step_fails():
    """The worker's heartbeat counts each environment step (tool answers) as progress."""
    from tests.rollout.episodes.tools_fixtures import CheckTwice
    ticks = []
    env = TickingEnv(CheckTwice(), lambda: ticks.append(1))
    assert env.reset({}) is None and env.tools == []  # the rest is the environment's
    first, second = env.step("a"), env.step("b")
    assert (first.done, second.done, second.reward, len(ticks)) == (False, True, 1.0, 2)
    broken = TickingEnv(object(), lambda: ticks.append(1))
    with pytest.raises(AttributeError):
        broken.step("c")  # object() has no step: raised, and still ticked
    assert len(ticks) == 3
