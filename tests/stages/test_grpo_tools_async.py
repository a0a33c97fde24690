"""GRPO with multi-turn episodes and asynchronous rollouts (issue 27): the rollout worker runs whole episodes
(rl/rollout/episodes/async_episodes.py). With rollout.max_staleness=0 through the worker every batch is regenerated
with the newest weights, so the run is the synchronous one: the same episodes (rewards, tool metrics, lengths, cut
prompts) and the same losses and gradient norms up to float noise. The micro model (random weights) on the r1_zero
template with the ToRL style and a two-turn environment, as tests/stages/test_grpo_tools.py."""
from __future__ import annotations

import pytest

from rl.train.tracking import read_metrics
from tests.stages.test_grpo_prompts import prompt_lengths, run_grpo
from tests.stages.test_grpo_tools import ENV

EPISODES = ("tools=[python]", "episodes.style=torl", f"episodes.environment={ENV}", "episodes.max_turn_tokens=3",
            "rollout.max_completion_length=24", "episodes.sandboxes=1", "data.max_eval_samples=2",
            'rewards={"tests.rollout.episodes.tools_fixtures:text_checksum": 1.0}')
SAME = ("reward/mean", "completion_len/mean", "rollout/prompts_truncated", "tools/turns", "tools/checks",
        "tools/observation_tokens", "tools/cut_frac", "truncated_frac")


def test_max_staleness_zero_through_the_worker_is_the_synchronous_run(micro_model_dir, tmp_path):
    short, long = prompt_lengths(micro_model_dir)
    limit = (short + long) // 2  # one of the two prompts is cut each step: counted the same way in the worker
    runs = {}
    for name, extra in (("sync", []), ("k0", ["rollout.async_steps=1", "rollout.max_staleness=0"])):
        out = tmp_path / name
        out.mkdir()
        train = run_grpo(micro_model_dir, out, *EPISODES, f"data.test={out / 'prompts.jsonl'}",
                         f"rollout.max_prompt_length={limit}", *extra)
        runs[name] = train, [m for m in read_metrics(out / "run") if "eval/accuracy" in m]
    (sync, sync_evals), (k0, k0_evals) = runs["sync"], runs["k0"]
    assert [m["step"] for m in k0] == [m["step"] for m in sync] == [1, 2, 3]
    # 2 prompts a step (batch 4 / group 2): from step 2 on both groups are one version old, so regenerated
    assert [m["rollout/dropped_groups"] for m in k0] == [0.0, 2.0, 2.0]
    assert all(m["rollout/staleness_max"] == 0.0 for m in k0)
    assert all(m["rollout/prompts_truncated"] == 1.0 for m in sync)  # the premise: one cut prompt per step
    assert all(m["tools/checks"] == 1.0 for m in sync)  # two-turn episodes
    assert sum(m["grad_norm"] > 0 for m in sync) >= 2  # something to compare (a group whose rewards differ)
    for a, b in zip(sync, k0):
        for key in SAME:
            assert b[key] == a[key], (a["step"], key)
        for key in ("loss", "grad_norm", "entropy"):
            assert b[key] == pytest.approx(a[key], rel=1e-4, abs=1e-6), (a["step"], key)
        assert b["rollout/is_weight_mean"] == pytest.approx(1.0, abs=1e-4)
    # in-run evaluation runs the same greedy episodes through the worker (before the run and at the end)
    assert len(k0_evals) == len(sync_evals) == 2
    for a, b in zip(sync_evals, k0_evals):
        for key in ("eval/accuracy", "eval/completion_len", "eval/tools/turns", "eval/tools/checks"):
            assert b[key] == a[key], key
        assert b["eval/tools/turns"] > 1
