"""The real distillation chain's shape, end to end on CPU, with the commands docs/r1_pipeline.md gives for 8 GPUs:

    python rl/distill.py recipes/distill.yaml student.name_or_path=null teacher.name_or_path=TEACHER ...
    accelerate launch --config_file recipes/accelerate/zero3.yaml --num_processes 2 rl/sft.py \\
        recipes/cold_start_sft.yaml model.name_or_path=STUDENT data.train=.../traces.parquet ...
    python rl/export.py .../student EXPORT --dtype bfloat16
    python rl/evaluate.py EXPORT --benchmarks PROMPTS.jsonl --template chat --prefilled-think

The real recipes (not the tiny ones) with only the sizes overridden; models shaped like R1-Distill where it matters
here: its chat template (TRL's deepseek_r1_distill.jinja, which prefills `<think>\\n` and drops the reasoning of
past turns), its special tokens (`<｜end▁of▁sentence｜>` is the eos and ends the turn, `<｜User｜>`, `<｜Assistant｜>`),
and a teacher that writes R1's format: reasoning, `</think>`, then `\\boxed{}` with no `<answer>` tags. The teacher
is the micro model trained in this file to answer 16 arithmetic prompts that way (rl/tiny/build.py's `pretrain`, a
plain loop: it is test set-up, not a stage under test).

What must hold, each a defect of issue 21 that stopped this chain: the distillation recipe's filter keeps the
teacher's traces (it needed `<answer>` tags: 0 kept); the traces file it writes is the one the SFT recipe reads
(parquet); SFT starts under ZeRO-3 x bf16 on 2 processes with the real cold-start recipe and saves a full model (not
shape-(0,) shards); the student learns (greedy accuracy on the 16 prompts from 0 to > 0); export reloads it in bf16
with identical logits; evaluate reads it with the chat template. ~2.5 min on 2 cores: `make test-matrix` (.ci/run).
"""
import json
import re
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.e2e.test_strategies import free_port, run

pytestmark = [pytest.mark.slow, pytest.mark.matrix]

R1_SPECIAL = {"bos_token": "<｜begin▁of▁sentence｜>", "eos_token": "<｜end▁of▁sentence｜>",
              "additional_special_tokens": ["<｜User｜>", "<｜Assistant｜>"]}
SPEC = dict(hidden_size=64, num_layers=2, num_heads=2, intermediate_size=128, vocab_size=300, num_docs=2000,
            pretrain=False)


def r1_distill_shaped(src: Path, out: Path) -> Path:
    """The micro model with R1-Distill's template and special tokens (embeddings resized for them)."""
    import trl

    from rl.train.models import load_causal_lm, load_tokenizer
    tok, model = load_tokenizer(str(src)), load_causal_lm(str(src))
    tok.add_special_tokens(R1_SPECIAL)
    tok.chat_template = (Path(trl.__file__).parent / "chat_templates" / "deepseek_r1_distill.jinja").read_text()
    model.resize_token_embeddings(len(tok))
    for config in (model.config, model.generation_config):
        config.eos_token_id, config.bos_token_id = tok.eos_token_id, tok.bos_token_id
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


def r1_trace(answer: str) -> str:
    """What the teacher writes after the template's `<think>\\n`: reasoning, </think>, a boxed answer."""
    return f"so it is {answer}\n</think>\n\n\\boxed{{{answer}}}"


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    import torch

    from data.tasks import arithmetic_dataset
    from rl.tiny.build import TinySpec, build_tiny_model, pretrain
    from rl.train.models import load_causal_lm, load_tokenizer
    root = tmp_path_factory.mktemp("real_chain")
    base = build_tiny_model(TinySpec(**SPEC), cache_dir=root / "cache")
    rows, _ = arithmetic_dataset(num_train=16, num_test=0, seed=5)
    prompts = root / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"prompt": r["prompt"], "answer": r["answer"]}) + "\n" for r in rows))

    teacher = r1_distill_shaped(base, root / "teacher")
    tok, model = load_tokenizer(str(teacher)), load_causal_lm(str(teacher))
    docs = [(tok.apply_chat_template([{"role": "user", "content": r["prompt"]}], add_generation_prompt=True,
                                     tokenize=False), r1_trace(r["answer"])) for r in rows]
    torch.manual_seed(0)
    pretrain(model, tok, docs, TinySpec(**{**SPEC, "steps": 300, "batch_size": 16, "learning_rate": 1e-2}),
             log_every=100)  # the eos (<｜end▁of▁sentence｜>) follows each trace: the teacher learns to stop
    model.save_pretrained(teacher)
    return {"root": root, "prompts": prompts, "teacher": teacher,
            "student": r1_distill_shaped(base, root / "student_init")}


def output(cmd, timeout=600) -> str:
    """stdout + stderr of a command that must succeed."""
    res = run(cmd, timeout=timeout)
    return res.stdout + res.stderr


def python(*args, timeout=600) -> str:
    return output([sys.executable, *args], timeout=timeout)


def test_r1_distill_chain_traces_zero3_bf16_sft_export_evaluate(world):
    w, root = world, world["root"]
    out = python("rl/distill.py", "recipes/distill.yaml", f"teacher.name_or_path={w['teacher']}",
                 "teacher.dtype=float32", "student.name_or_path=null", f"data.train={w['prompts']}",
                 "data.prompt_column=prompt", f"output_dir={root / 'distill'}", "num_prompts=16", "chunk_size=8",
                 "rollout.engine=hf", "rollout.max_prompt_length=64", "rollout.max_completion_length=32",
                 "filter.min_tokens=1", "filter.max_tokens=32", "progress_bar=false")
    # recipes/distill.yaml's own filter (accuracy, boxed_format, language_consistency, dedup, 2 per prompt at most):
    # the teacher has learnt its 16 answers in R1's format; sampled at T 0.6 it mostly writes them verbatim, so
    # nearly every prompt keeps one trace (dedup drops the identical others), and only verbatim traces pass
    prompts_kept = int(re.search(r"\[distill\] kept \d+ of 64 traces \((\d+) prompts\)", out).group(1))
    assert prompts_kept >= 12, out[-3000:]
    traces = root / "distill" / "traces.parquet"
    import pandas as pd
    kept = pd.read_parquet(traces)
    assert kept["prompt_index"].nunique() == prompts_kept
    assert all(c == r1_trace(a) for c, a in zip(kept["completion"], kept["answer"]))  # correct, R1 format

    student = root / "student"
    out = output([sys.executable, "-m", "accelerate.commands.launch", "--config_file",
               str(ROOT / "recipes/accelerate/zero3.yaml"), "--num_processes", "2", "--main_process_port",
               str(free_port()), "rl/sft.py", "recipes/cold_start_sft.yaml", f"model.name_or_path={w['student']}",
               "model.attn_implementation=sdpa", f"data.train={traces}", f"data.test={w['prompts']}",
               "data.test_prompt_column=prompt", "data.max_length=256", "rollout.max_prompt_length=64",
               "rollout.max_completion_length=32", "train.max_steps=60", "train.gradient_accumulation_steps=1",
               "train.learning_rate=1e-2", "logging.report_to=none", "logging.eval_every=0",
               "logging.save_every=0", "logging.progress_bar=false", f"output_dir={student}"])
    assert "2 process(es), deepspeed, mixed precision bf16" in out and "ZeRO-3: this rank holds" in out, out[-3000:]
    evals = json.loads((student / "eval.json").read_text())
    assert evals["first_eval"]["eval/accuracy"] == 0.0  # the untrained student
    assert evals["last_eval"]["eval/accuracy"] > 0.0, evals  # 60 steps on 16 traces: it learned some (0.44 here)

    export = root / "export"
    out = python("rl/export.py", str(student), str(export), "--dtype", "bfloat16")
    assert "logits max |diff| 0" in out, out[-2000:]  # the reloaded export computes what the student computes
    from safetensors import safe_open
    with safe_open(str(export / "model.safetensors"), "pt") as f:
        shapes = {k: f.get_slice(k).get_shape() for k in f.keys()}
        dtypes = {f.get_slice(k).get_dtype() for k in f.keys()}
    assert all(0 not in s and s for s in shapes.values()) and dtypes == {"BF16"}  # full tensors, not ZeRO-3 stubs
    assert json.loads((export / "tokenizer_config.json").read_text())["eos_token"] == "<｜end▁of▁sentence｜>"

    python("rl/evaluate.py", str(export), "--benchmarks", str(w["prompts"]), "--template", "chat",
           "--prefilled-think", "--max-tokens", "32", "--k", "2", "--out", str(root / "eval"))
    (row,) = json.loads((root / "eval" / "results.json").read_text()).values()
    assert row["num_problems"] == 16
    # the export in bf16 greedy-decodes about as the bf16-autocast student did at its last evaluation
    assert abs(row["eval/accuracy"] - evals["last_eval"]["eval/accuracy"]) <= 0.25, (row, evals)
