"""R1's stages 3 and 4 with the REAL recipes (recipes/r1_rs_sft.yaml, recipes/r1_all_scenarios.yaml) start on 2 CPU
processes under DeepSpeed ZeRO-3 in bf16, offline, reward model included, with only sizes overridden:

- stage 3: the SFT command rl/distill.py builds for the recipe's student (recipes/cold_start_sft.yaml + the recipe's
  overrides, data.mix included) on a traces.parquet shaped as the distillation writes it, mixed with a second source
  under its own columns (prompt / response);
- stage 4: rl/grpo.py on math and general rows (`task` column, reward_sets math vs general), the reward model a
  random-init LlamaForSequenceClassification (Skywork-Reward's architecture, num_labels 1, a chat template) loaded
  whole on each rank beside the ZeRO-3 policy.

The policy is the tiny world's base with R1-Distill's chat template and special tokens (tests/e2e/test_real_chain.py);
the reward model is a 2-layer, 64-wide random one, and, in a second cell, one at Skywork-Reward-V2-Llama-3.1-8B's
widths (hidden 4,096, 32 / 8 heads, MLP 14,336, vocabulary 128,256) with one layer instead of 32, bf16, loaded whole
on each rank (~45 s for the cell here; scoring a rank's general rows took 0.7-1.2 s per step on 2 loaded cores). The
real model names need the hub. Not proven here: these recipes at their real depths and the 7B policy (no GPU)."""
import json
import sys

import pytest

from tests.conftest import ROOT
from tests.e2e.test_strategies import free_port, run

pytestmark = [pytest.mark.slow, pytest.mark.matrix]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    import pandas as pd
    from transformers import LlamaConfig, LlamaForSequenceClassification

    from data.general_tasks import general_prompt, general_split, in_format, write_reply
    from data.tasks import arithmetic_dataset, cold_start_completion
    from rl.tiny.sources import resolve_model_path
    from rl.train.models import load_tokenizer
    from tests.e2e.test_real_chain import r1_distill_shaped
    root = tmp_path_factory.mktemp("late")
    policy = r1_distill_shaped(resolve_model_path("tiny"), root / "policy")
    tok = load_tokenizer(str(policy))
    rm = root / "rm"
    config = LlamaConfig(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=2, num_labels=1, pad_token_id=tok.pad_token_id,
                         max_position_embeddings=512)
    LlamaForSequenceClassification(config).save_pretrained(rm)
    tok.save_pretrained(rm)
    math, _ = arithmetic_dataset(num_train=16, num_test=0, seed=5)
    general, _ = general_split(16, 0, seed=0)
    prompts = root / "mixed.jsonl"  # stage 4's data: MATH-500's column names + task
    prompts.write_text("".join(json.dumps(r) + "\n" for r in
                               [{"problem": m["prompt"], "answer": m["answer"], "task": "math"} for m in math]
                               + [{"problem": general_prompt(*t), "answer": "", "task": "general"} for t in general]))
    traces = root / "traces.parquet"  # stage 3's traces, as rl/distill.py writes them
    pd.DataFrame([{"prompt": m["prompt"], "completion": cold_start_completion(m["prompt"]), "answer": m["answer"]}
                  for m in math]).to_parquet(traces)
    chat = root / "general_sft.jsonl"  # the non-reasoning set, its own columns
    chat.write_text("".join(json.dumps({"prompt": general_prompt(*t), "response": in_format(
        write_reply(*t, "good"), 1)}) + "\n" for t in general))
    return {"root": root, "policy": policy, "rm": rm, "prompts": prompts, "traces": traces, "chat": chat}


def launch(script: str, argv: list[str]) -> str:
    res = run([sys.executable, "-m", "accelerate.commands.launch", "--config_file",
               str(ROOT / "recipes/accelerate/zero3.yaml"), "--num_processes", "2", "--main_process_port",
               str(free_port()), script, *argv], timeout=900)
    return res.stdout + res.stderr


def test_stage_3_real_recipe_sft_of_the_mix_under_zero3_bf16(world):
    from rl.config.distill import DistillConfig
    from rl.config.recipe import load_config
    from rl.distill import student_argv
    w = world
    cfg = load_config(DistillConfig, ROOT / "recipes/r1_rs_sft.yaml",
                      [f"output_dir={w['root'] / 'rs'}", f"student.name_or_path={w['policy']}"])
    argv = student_argv(cfg, w["traces"])  # recipes/cold_start_sft.yaml + the recipe's overrides (bf16, data.mix...)
    assert any(a.startswith("data.mix=") for a in argv) and "model.dtype=bfloat16" in argv
    out = launch("rl/sft.py", [str(ROOT / argv[0]), *argv[1:],
                               f"data.mix=[{{source: {w['chat']}, prompt_column: prompt, completion_column: response, "
                               f"count: 24}}]",  # the recipe's file is data/general_sft.jsonl: here a 16-row one
                               "model.attn_implementation=sdpa", "data.test=null", "data.max_length=256",
                               "train.max_steps=2", "train.batch_size=4", "train.gradient_accumulation_steps=1",
                               "logging.report_to=none", "logging.save_every=0", "logging.progress_bar=false"])
    # 16 traces + 24 replies drawn from 16 (one pass, then 8 more)
    assert f"mixed 40 rows: 16 of {w['traces']}, 24 of {w['chat']}" in out, out[-3000:]
    assert "2 process(es), deepspeed, mixed precision bf16" in out and "ZeRO-3: this rank holds" in out, out[-3000:]
    assert (w["root"] / "rs" / "student" / "model" / "config.json").is_file()


@pytest.fixture(scope="module")
def wide_rm(world):
    """The reward model at Skywork-Reward-V2-Llama-3.1-8B's widths (hidden 4,096, 32 heads / 8 KV heads, MLP 14,336,
    Llama 3's 128,256-token vocabulary), one layer instead of 32, random init, saved in bf16 (1.5 GB)."""
    import torch
    from transformers import LlamaConfig, LlamaForSequenceClassification

    from rl.train.models import load_tokenizer
    tok = load_tokenizer(str(world["policy"]))
    config = LlamaConfig(vocab_size=128256, hidden_size=4096, intermediate_size=14336, num_hidden_layers=1,
                         num_attention_heads=32, num_key_value_heads=8, num_labels=1, pad_token_id=tok.pad_token_id,
                         max_position_embeddings=8192, rope_theta=500000.0, torch_dtype="bfloat16")
    torch.manual_seed(0)
    rm = world["root"] / "rm_wide"
    LlamaForSequenceClassification(config).to(torch.bfloat16).save_pretrained(rm)
    tok.save_pretrained(rm)
    return rm


@pytest.mark.parametrize("rm_size", ["micro", "llama-8b-widths"])
def test_stage_4_real_recipe_with_the_reward_model_under_zero3_bf16(world, request, rm_size):
    """The micro reward model, and one at the real reward model's widths (one layer): each rank holds the whole
    reward model beside its ZeRO-3 shard of the policy and scores its general rows in bf16."""
    from rl.train.tracking import read_metrics
    w, out_dir = world, world["root"] / f"all_{rm_size}"
    rm = w["rm"] if rm_size == "micro" else request.getfixturevalue("wide_rm")
    out = launch("rl/grpo.py", [
        str(ROOT / "recipes/r1_all_scenarios.yaml"), f"output_dir={out_dir}", f"model.name_or_path={w['policy']}",
        "model.gradient_checkpointing=false", f"data.train={w['prompts']}", f"data.test={w['prompts']}",
        "data.max_eval_samples=4", "rollout.engine=hf", "rollout.group_size=4",
        "rollout.max_prompt_length=64", "rollout.max_completion_length=16", f"rewards.reward_model.model={rm}",
        "rewards.reward_model.max_length=128", "train.max_steps=2", "train.batch_size=16", "train.micro_batch_size=4",
        "train.warmup_steps=0", "logging.report_to=none", "logging.save_every=0", "logging.eval_every=0",
        "logging.progress_bar=false"])
    steps = [m for m in read_metrics(out_dir) if "loss" in m]
    assert len(steps) == 2, out[-4000:]
    assert "2 processes" in out and "mixed precision bf16" in out, out[-3000:]
    assert "per task: math accuracy + boxed_format + language_consistency; general reward_model + " \
           "language_consistency" in out, out[-3000:]
    general = [m for m in steps if "task/general/frac" in m]
    assert general and all("rewards/general/reward_model" in m and "rewards/general/accuracy" not in m
                           for m in general), steps
