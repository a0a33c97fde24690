"""rl/sft.py: the loss is on completion tokens only (checked on real collated batches), recipes fail early and in
one line, and a run checkpoints, resumes and writes a loadable final model (LoRA merged)."""
from __future__ import annotations

import json

import pytest
import torch

from data.tasks import cold_start_dataset
from data.templates import prompt_token_ids
from rl.config.recipe import ConfigError, load_config
from rl.config.sft import SFTConfig


def _batch(cfg, rows):
    from rl.train.models import load_causal_lm, load_tokenizer
    from rl.sft import build_trainer, training_args
    tok = load_tokenizer(cfg.model.name_or_path)
    trainer = build_trainer(cfg, training_args(cfg), load_causal_lm(cfg.model.name_or_path), tok, rows)
    return tok, trainer, [b for b in trainer.get_train_dataloader()]


def _expected(tok, row):
    """(prompt ids as GRPO renders them, completion ids + EOS)."""
    return (prompt_token_ids(tok, row["prompt"], "r1_zero"),
            tok(row["completion"], add_special_tokens=False)["input_ids"] + [tok.eos_token_id])


@pytest.mark.parametrize("tokenize", ["exact", "trl"])
def test_labels_cover_exactly_the_completion_tokens(sft_overrides, tokenize):
    cfg = load_config(SFTConfig, None, sft_overrides + [f"data.tokenize={tokenize}", "data.num_train=3",
                                                        "train.batch_size=3"])
    rows = cold_start_dataset(3, seed=0)
    tok, trainer, batches = _batch(cfg, rows)
    assert len(batches) == 1
    batch = batches[0]
    assert batch["labels"].shape == batch["input_ids"].shape
    seen = []
    for i in range(3):
        ids, labels = batch["input_ids"][i], batch["labels"][i]
        n = int(batch["attention_mask"][i].sum())  # right padding: real tokens first
        trained = (labels != -100).nonzero().flatten().tolist()
        # trained positions are one contiguous run that ends at the last real token (EOS) ...
        assert trained == list(range(trained[0], n))
        assert (labels[trained] == ids[trained]).all() and ids[n - 1].item() == tok.eos_token_id
        assert (labels[n:] == -100).all()  # ... padding is never trained ...
        seen.append((ids[:trained[0]].tolist(), ids[trained[0]:n].tolist()))
    # ... and it is exactly one row's completion (+ EOS) after exactly its prompt, as at inference.
    expected = sorted(_expected(tok, r) for r in rows)
    if tokenize == "exact":
        assert sorted(seen) == expected
    else:  # TRL tokenizes prompt+completion together: same number of trained tokens here (no merge at the boundary)
        assert sorted(len(c) for _, c in seen) == sorted(len(c) for _, c in expected)


def test_packing_keeps_completion_only_labels(sft_overrides):
    cfg = load_config(SFTConfig, None, sft_overrides + ["data.packing=true", "data.num_train=6",
                                                        "train.batch_size=2"])
    rows = cold_start_dataset(6, seed=0)
    tok, trainer, batches = _batch(cfg, rows)
    trained = sum(int((b["labels"] != -100).sum()) for b in batches)
    assert trained == sum(len(_expected(tok, r)[1]) for r in rows)  # every completion token once, nothing else
    assert all("position_ids" in b for b in batches)  # padding-free packing: per-row positions restart at 0


@pytest.mark.parametrize("override, message", [
    ("data.tokenize=bpe", "data.tokenize='bpe' is not one of: exact, trl"),
    ("data.packing=maybe", "data.packing: expected true/false, got 'maybe'"),
    ("train.batch_size=0", "train.batch_size=0 must be at least 1"),
    ("lora.rank=8", "unknown recipe key 'lora.rank'"),
    ("eval_rewards.cosine={}", "eval_rewards: only accuracy and format"),
])
def test_bad_recipe_is_one_line_error(override, message):
    with pytest.raises(ConfigError) as e:
        load_config(SFTConfig, "recipes/tiny/cold_start_sft.yaml", [override])
    assert message in str(e.value) and "\n" not in str(e.value)


def test_missing_data_file_fails_before_any_model_load(tmp_path, capsys):
    from data.loading import DataError
    from rl.sft import main
    with pytest.raises(DataError, match="dataset file not found"):
        main(["recipes/tiny/cold_start_sft.yaml", f"data.train={tmp_path}/nope.jsonl",
              "model.name_or_path=/does/not/exist", f"output_dir={tmp_path}"])


def test_missing_completion_column_is_named(tmp_path):
    from data.loading import DataError
    from rl.sft import main
    path = tmp_path / "rows.jsonl"
    path.write_text(json.dumps({"prompt": "What is 1 + 2 * 3?", "response": "x"}) + "\n")
    with pytest.raises(DataError, match="no column 'completion'; columns: prompt, response"):
        main(["recipes/tiny/cold_start_sft.yaml", f"data.train={path}", "model.name_or_path=/does/not/exist"])


def test_test_set_has_its_own_columns(tmp_path, monkeypatch):
    """Traces have `prompt`, MATH-500 has `problem`: the test set is read with data.test_prompt_column, and a wrong
    one is named at start-up, before any model is resolved."""
    from data.loading import DataError
    from rl import sft
    train = tmp_path / "traces.jsonl"
    train.write_text(json.dumps({"prompt": "What is 1 + 2?", "completion": "<think> 3 </think> <answer> 3 "
                                 "</answer>", "answer": "3"}) + "\n")
    test = tmp_path / "math500.jsonl"
    test.write_text(json.dumps({"problem": "What is 2 + 2?", "answer": "4"}) + "\n")
    base = ["recipes/tiny/cold_start_sft.yaml", f"data.train={train}", f"data.test={test}",
            f"output_dir={tmp_path / 'run'}"]
    with pytest.raises(DataError, match="has no column 'prompt'; columns: answer, problem"):
        sft.main(base)

    class Loaded(Exception):
        pass

    def stop(*_):  # reached only once the test set has loaded
        raise Loaded
    monkeypatch.setattr(sft, "resolve_model_path", stop)
    with pytest.raises(Loaded):
        sft.main(base + ["data.test_prompt_column=problem"])
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_sft_checkpoints_resumes_and_saves_final_model(sft_overrides, tmp_path):
    from transformers import AutoModelForCausalLM

    from rl.sft import main
    first = main(["recipes/tiny/cold_start_sft.yaml", *sft_overrides, "train.max_steps=2", "logging.save_every=1",
                  "logging.save_total_limit=5", "logging.eval_every=1"])
    out = tmp_path / "sft"
    assert first["global_step"] == 2 and sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-1",
                                                                                              "checkpoint-2"]
    evals = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines() if "eval/accuracy" in line]
    assert [e["step"] for e in evals] == [0, 1, 2]  # before training, every step, and at the end
    # resume: a longer run continues from checkpoint-2 (optimizer, scheduler, data position), no eval at step 0
    second = main(["recipes/tiny/cold_start_sft.yaml", *sft_overrides, "train.max_steps=3", "logging.save_every=1",
                   "logging.save_total_limit=5"])
    assert second["global_step"] == 3 and "first_eval" in second
    state = json.loads((out / "checkpoint-3" / "trainer_state.json").read_text())
    assert state["global_step"] == 3
    model = AutoModelForCausalLM.from_pretrained(out / "model")
    assert model.num_parameters() > 0


@pytest.mark.slow
def test_lora_sft_saves_adapter_checkpoints_and_a_merged_model(sft_overrides, tmp_path):
    from transformers import AutoModelForCausalLM

    from rl.sft import main
    res = main(["recipes/tiny/cold_start_sft.yaml", *sft_overrides, "train.max_steps=2", "lora.enabled=true",
                "lora.r=4", "train.learning_rate=5e-2", "data.max_eval_samples=2"])
    out = tmp_path / "sft"
    assert (out / "checkpoint-2" / "adapter_config.json").is_file()  # the checkpoint is the adapter ...
    merged = AutoModelForCausalLM.from_pretrained(res["model_dir"])  # ... the final model is merged (plain Llama)
    assert not any("lora" in name for name, _ in merged.named_parameters())
    base = AutoModelForCausalLM.from_pretrained(json.loads(
        (out / "checkpoint-2" / "adapter_config.json").read_text())["base_model_name_or_path"])
    w, w0 = merged.model.layers[0].self_attn.q_proj.weight, base.model.layers[0].self_attn.q_proj.weight
    assert not torch.equal(w, w0)  # the LoRA update is in the merged weights


@pytest.mark.slow
def test_bf16_sft_keeps_float32_master_weights_and_trains(sft_overrides, tmp_path):
    """model.dtype=bfloat16 is the compute dtype: the trained weights (and so Adam's state) stay float32 and move
    (before: the model was loaded in bf16 and trained as bf16 weights, where lr * update rounds away)."""
    from safetensors.torch import load_file

    import subprocess
    import sys

    from rl.train.models import load_causal_lm
    # its own process: TRL initialises accelerate's process-wide state in bf16, which later in-process runs inherit
    proc = subprocess.run([sys.executable, "rl/sft.py", "recipes/tiny/cold_start_sft.yaml", *sft_overrides,
                           "train.max_steps=2", "model.dtype=bfloat16", "logging.eval_every=0",
                           f"output_dir={tmp_path / 'bf16'}"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    trained = load_file(str(tmp_path / "bf16" / "model" / "model.safetensors"))
    assert {t.dtype for t in trained.values()} == {torch.float32}
    base = load_causal_lm(load_config(SFTConfig, None, sft_overrides).model.name_or_path).state_dict()
    assert set(trained) <= set(base)
    moved = [name for name, t in trained.items() if not torch.equal(t, base[name])]
    assert len(moved) > len(trained) // 2  # lr 1e-3: most tensors change


TRL_TEMPLATES = __import__("pathlib").Path(__import__("trl").__file__).parent / "chat_templates"


@pytest.mark.parametrize("template_file, end_text, prefilled", [
    ("qwen2_5.jinja", "<|im_end|>", False),                      # Qwen2.5: the turn ends with <|im_end|>, not eos
    ("deepseek_r1_distill.jinja", "<｜end▁of▁sentence｜>", True),  # R1-Distill: the prompt opens <think>
])
def test_exact_tokenization_ends_turns_as_the_chat_template_does(micro_model_dir, template_file, end_text,
                                                                  prefilled):
    from data.templates import completion_end_ids, prefills_think
    from rl.sft import tokenize_exact
    from rl.train.models import load_tokenizer
    tok = load_tokenizer(str(micro_model_dir))
    tok.chat_template = (TRL_TEMPLATES / template_file).read_text()
    end = tok(end_text, add_special_tokens=False)["input_ids"]
    assert completion_end_ids(tok, "chat") == end and completion_end_ids(tok, "r1_zero") == [tok.eos_token_id]
    assert prefills_think(tok, "chat") is prefilled
    completion = "<think> 4*5=20 </think> 23"
    (row,) = tokenize_exact([{"prompt": "What is 3 + 4 * 5?", "completion": completion}], tok, "chat", None, 512)
    ids = row["input_ids"]
    assert ids[-len(end):] == end and row["completion_mask"][-len(end):] == [1] * len(end)
    text = tok.decode(ids)
    assert text.count("<think>") == 1  # prefilled by the template, or written by the completion: never both
    body = completion[len("<think>"):] if prefilled else completion
    assert tok.decode([i for i, m in zip(ids, row["completion_mask"]) if m]) == body + end_text


def test_single_token_end_of_turn_becomes_the_eos(micro_model_dir):
    """A base tokenizer whose eos is not the template's end of turn (Qwen2.5 base: <|endoftext|> vs <|im_end|>):
    SFT makes the end of turn the eos, so the engines (which stop at eos) stop where the trained model stops."""
    from data.templates import end_of_turn_token
    from rl.train.models import load_tokenizer
    tok = load_tokenizer(str(micro_model_dir))
    tok.add_special_tokens({"additional_special_tokens": ["<|im_end|>"]})
    tok.chat_template = (TRL_TEMPLATES / "qwen2_5.jinja").read_text()
    assert end_of_turn_token(tok, "chat") == "<|im_end|>"
    assert end_of_turn_token(tok, "r1_zero") is None
    tok.eos_token = "<|im_end|>"
    assert end_of_turn_token(tok, "chat") is None  # already the eos: nothing to change


@pytest.mark.parametrize("overrides, message", [
    # the micro model has 256 positions (rl/tiny/build.py TinySpec.max_positions)
    (["data.max_length=512"], r"data.max_length=512 exceeds the model's 256 positions"),
    # R1-Distill's template drops the reasoning of assistant turns: TRL's tokenization would train on answers only
    (["data.tokenize=trl", "data.template=chat"], r"data.tokenize=trl with this chat template trains on the answer"),
])
def test_model_checks_fail_before_the_weights_load(sft_overrides, micro_model_dir, tmp_path, monkeypatch, overrides,
                                                   message):
    import shutil

    from rl import sft
    model = tmp_path / "model"
    shutil.copytree(micro_model_dir, model)
    tok_config = json.loads((model / "tokenizer_config.json").read_text())
    tok_config["chat_template"] = (TRL_TEMPLATES / "deepseek_r1_distill.jinja").read_text()
    (model / "tokenizer_config.json").write_text(json.dumps(tok_config))
    (model / "chat_template.jinja").unlink(missing_ok=True)
    monkeypatch.setattr("rl.train.models.load_causal_lm", lambda *a, **k: pytest.fail("weights loaded"))
    with pytest.raises(ConfigError, match=message):
        sft.main(["recipes/tiny/cold_start_sft.yaml", *sft_overrides, f"model.name_or_path={model}", *overrides])


def test_r1_distill_template_with_exact_tokenization_keeps_the_reasoning(micro_model_dir):
    from data.templates import keeps_final_reasoning
    from rl.train.models import load_tokenizer
    tok = load_tokenizer(str(micro_model_dir))
    tok.chat_template = (TRL_TEMPLATES / "deepseek_r1_distill.jinja").read_text()
    assert not keeps_final_reasoning(tok)
    tok.chat_template = (TRL_TEMPLATES / "qwen2_5.jinja").read_text()
    assert keeps_final_reasoning(tok)
