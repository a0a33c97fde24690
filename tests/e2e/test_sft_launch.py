"""rl/sft.py launched as the docs say, on 2 CPU processes (gloo): each strategy x precision starts, trains, evaluates
(collectively where parameters are sharded) and writes a full final model.

Before this, ZeRO-3 did not start ("ds bf16.enabled=True vs hf bf16|bf16_full_eval=False": the launch config's
precision never reached TRL's training arguments); past that, the rank-0-only `save_pretrained` wrote tensors of shape
(0,), the rank-0-only evaluation would hang under ZeRO-3 (every forward is collective), and the model was loaded
before the training arguments existed, so zero.Init never sharded it.

Not here: FSDP2. On CPU, transformers' Trainer creates accelerate's state with use_cpu=True, which ignores the FSDP
plugin and runs plain DDP; the FSDP2 paths of rl/sft.py (collective evaluation, full-state-dict save) are untested.
"""
from __future__ import annotations

import re
import sys

import pytest
import torch
from safetensors.torch import load_file

from tests.conftest import ROOT
from tests.e2e.test_strategies import free_port, run

pytestmark = pytest.mark.slow

CELLS = [("ddp", "bfloat16"), ("zero2", "float32"), ("zero3", "bfloat16"), ("zero3", "float32")]
MATRIX_CELLS = [("ddp", "float32"), ("zero2", "bfloat16")]  # the rest of DDP/ZeRO x precision: make test-matrix
PARAMS = [*(pytest.param(s, d, id=f"{s}-{d}") for s, d in CELLS),
          *(pytest.param(s, d, id=f"{s}-{d}", marks=pytest.mark.matrix) for s, d in MATRIX_CELLS)]


@pytest.mark.parametrize("strategy, dtype", PARAMS)
def test_sft_launch_cell(strategy, dtype, micro_model_dir, tmp_path):
    out = tmp_path / "sft"
    proc = run([sys.executable, "-m", "accelerate.commands.launch", "--config_file",
                str(ROOT / f"recipes/accelerate/{strategy}.yaml"), "--num_processes", "2", "--main_process_port",
                str(free_port()), "rl/sft.py", "recipes/tiny/cold_start_sft.yaml",
                f"model.name_or_path={micro_model_dir}", f"model.dtype={dtype}", f"output_dir={out}",
                "train.max_steps=2", "train.batch_size=4", "train.learning_rate=1e-3", "data.num_train=16",
                "data.max_length=256", "rollout.max_prompt_length=512", "rollout.max_completion_length=8",
                "data.max_eval_samples=4", "logging.progress_bar=false"], timeout=600)
    log = proc.stdout + proc.stderr
    assert "2 process(es)" in log
    assert f"mixed precision {'no' if dtype == 'float32' else 'bf16'}" in log  # the recipe's, not the yaml's bf16
    assert re.search(r"\[sft\] eval/accuracy [\d.]+ -> [\d.]+", log)  # evaluated before and after
    if strategy == "zero3":  # zero.Init: each rank loaded its shard only
        held, total = (int(x.replace(",", "")) for x in
                       re.search(r"this rank holds ([\d,]+) of ([\d,]+) parameters", log).groups())
        assert held < total
    trained = load_file(str(out / "model" / "model.safetensors"))
    base = load_file(str(micro_model_dir / "model.safetensors"))
    if "lm_head.weight" in trained and "lm_head.weight" not in base:  # DeepSpeed's save writes the tied head too:
        assert torch.equal(trained.pop("lm_head.weight"), trained["model.embed_tokens.weight"])  # still tied
    assert {k: v.shape for k, v in trained.items()} == {k: v.shape for k, v in base.items()}  # full tensors
    moved = sum(not torch.equal(trained[k].float(), base[k].float()) for k in base)
    assert moved > len(base) // 2
    # 16-bit under DeepSpeed bf16 (ZeRO-2 and ZeRO-3 hold bf16 module weights, their float32 masters in the
    # optimizer; the saved model is the module's), float32 otherwise
    want = torch.bfloat16 if strategy.startswith("zero") and dtype == "bfloat16" else torch.float32
    assert {t.dtype for t in trained.values()} == {want}


def first_eval(out) -> dict:
    import json
    return next(m for m in map(json.loads, (out / "metrics.jsonl").read_text().splitlines()) if "eval/accuracy" in m)


@pytest.mark.matrix
def test_sft_evaluation_is_sharded_and_gives_one_process_figures(micro_model_dir, tmp_path):
    """The in-run evaluation is sharded as GRPO's (each rank greedy-decodes its share, results all-gathered): the
    step-0 evaluation of 2 DDP processes equals 1 process's, figure for figure (greedy, float32: the same model
    decodes each problem the same wherever it runs). Before, rank 0 evaluated everything while rank 1 waited."""
    common = ["recipes/tiny/cold_start_sft.yaml", f"model.name_or_path={micro_model_dir}", "model.dtype=float32",
              "train.max_steps=1", "train.batch_size=4", "data.num_train=16", "data.max_length=256",
              "rollout.max_prompt_length=512", "rollout.max_completion_length=8", "data.max_eval_samples=7",
              "logging.progress_bar=false"]  # 7 problems: rank 0 decodes 4, rank 1 3
    one, two = tmp_path / "one", tmp_path / "two"
    run([sys.executable, "rl/sft.py", *common, f"output_dir={one}"], timeout=600)
    log = run([sys.executable, "-m", "accelerate.commands.launch", "--config_file",
               str(ROOT / "recipes/accelerate/ddp.yaml"), "--num_processes", "2", "--main_process_port",
               str(free_port()), "rl/sft.py", *common, f"output_dir={two}"], timeout=600).stdout
    assert "[sft] evaluation sharded over 2 processes: 4 + 3 problems" in log
    a, b = first_eval(one), first_eval(two)
    assert a["step"] == b["step"] == 0
    assert {k: v for k, v in a.items() if k.startswith("eval/")} == {k: v for k, v in b.items() if k.startswith("eval/")}
