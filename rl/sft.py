"""Supervised fine-tuning with TRL's SFTTrainer: the R1 cold start, and the distillation students.

    python rl/sft.py recipes/tiny/cold_start_sft.yaml train.max_steps=20 output_dir=runs/x
    accelerate launch --config_file recipes/accelerate/ddp.yaml rl/sft.py recipes/cold_start_sft.yaml

Data are prompt/completion pairs (TRL's prompt-completion format), e.g. one cold-start row:

    {"prompt": "What is 3 + 4 * 5?", "completion": " <think> 4*5=20, 3+20=23 </think> <answer> 23 </answer>"}

The prompt is rendered with the recipe's template (`r1_zero` by default, the same text GRPO and evaluation show the
model), and the loss is on completion tokens only. With `data.tokenize: exact` (default) each row becomes

    input_ids       = prompt_token_ids(prompt)  + tokenize(completion) + END
    completion_mask = [0] * len(prompt ids)     + [1] * (len(completion ids) + len(END))

where END is [EOS] for the r1_zero and plain templates and the chat template's end of turn for `chat` (Qwen's
<|im_end|>, which its base tokenizer's EOS <|endoftext|> is not),

i.e. exactly the token sequence the model sees and writes at inference (prompt and completion are tokenized apart, as
during RL; byte-level BPE may merge across the boundary when they are tokenized together). TRL turns completion_mask
into labels (-100 on the prompt and on padding). `data.tokenize: trl` hands TRL the rendered pair instead.

Outputs in output_dir: checkpoint-N/ (HF Trainer checkpoints: weights or LoRA adapter, optimizer, scheduler, RNG, data
position; `resume: auto` continues from the latest; a new run into a directory holding another run is refused
unless `overwrite: true`, and the directory is locked while the run lives: rl/train/rundir.py), metrics.jsonl (train loss, eval/* every logging.eval_every steps
through the same `evaluate_greedy` GRPO uses), and model/ (the final model, LoRA merged, loadable by GRPO:
`model.name_or_path: <output_dir>/model`).
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

if __name__ == "__main__" and not __package__:  # `python rl/sft.py`: import from the repo root, not from rl/
    sys.path[0] = str(Path(__file__).resolve().parents[1])

from rl.tiny.sources import resolve_model_path  # noqa: E402
from rl.train.sft_trainer import (  # noqa: E402
    save_final_model, scheduled_trainer_class, shards_parameters, shared_weights_callback, training_args)


def load_sft_rows(d, split: str) -> list[dict[str, Any]]:
    """Rows {"prompt", "completion", **extra} of the recipe's train source, mixed with the data.mix sources (each
    renamed from its own columns, `count` rows drawn; data/mixing.py); a missing column is a one-line DataError."""
    from data.mixing import mix_rows, sft_source_rows

    rows = sft_source_rows(d.train, split, d.prompt_column, d.completion_column, d.num_train, d.num_test, d.seed)
    if not d.mix:
        return rows
    extras = [(m.source, sft_source_rows(m.source, m.split, m.prompt_column, m.completion_column, d.num_train,
                                         d.num_test, d.seed, where=f"data.mix[{i}]"), m.count)
              for i, m in enumerate(d.mix)]
    mixed, counts = mix_rows((d.train, rows), extras, d.seed)
    if int(os.environ.get("RANK", "0")) == 0:
        print(f"[sft] mixed {len(mixed)} rows: " + ", ".join(f"{n} of {src}" for src, n in counts.items()), flush=True)
    return mixed


def tokenize_exact(rows: list[dict], tokenizer, template: str, system_prompt: str | None, max_length: int
                   ) -> list[dict[str, list[int]]]:
    """Rows -> {"input_ids", "completion_mask"}: prompt ids as at inference + completion ids + the end of turn (the
    chat template's, e.g. <|im_end|>; else EOS). After a prompt that prefills <think>, a completion's own opening
    <think> is dropped so the tag is not doubled.
    Rows longer than max_length keep their start (the completion end is cut: a warning-worthy recipe problem)."""
    from data.loading import DataError
    from data.templates import completion_end_ids, prefills_think, prompt_token_ids, strip_opening_think

    end = completion_end_ids(tokenizer, template)  # the chat template's end of turn, else eos
    prefilled = prefills_think(tokenizer, template, system_prompt)
    out, cut = [], 0
    for row in rows:
        p = prompt_token_ids(tokenizer, row["prompt"], template, system_prompt)
        text = strip_opening_think(row["completion"]) if prefilled else row["completion"]
        c = tokenizer(text, add_special_tokens=False)["input_ids"] + end
        cut += len(p) + len(c) > max_length
        ids, mask = (p + c)[:max_length], ([0] * len(p) + [1] * len(c))[:max_length]
        if any(mask):
            out.append({"input_ids": ids, "completion_mask": mask})
    if cut:
        print(f"[sft] warning: {cut} of {len(rows)} rows exceed data.max_length={max_length} tokens and are cut "
              f"({len(rows) - len(out)} dropped: no completion token left)", flush=True)
    if not out:
        raise DataError(f"no SFT row fits data.max_length={max_length}: every prompt alone fills it")
    return out


def trl_rows(rows: list[dict], template: str, system_prompt: str | None) -> list[dict[str, Any]]:
    """Rows in TRL's prompt-completion format: text pairs, or message lists for the chat template."""
    from data.templates import render_prompt

    out = []
    for row in rows:
        prompt = render_prompt(row["prompt"], template, system_prompt)
        completion = row["completion"] if isinstance(prompt, str) else [{"role": "assistant",
                                                                          "content": row["completion"]}]
        out.append({"prompt": prompt, "completion": completion})
    return out


def make_eval_callback(cfg, tokenizer, test_rows: list[dict], logger, results: dict):
    """A TrainerCallback running `evaluate_greedy` (as GRPO does) before training, every logging.eval_every steps and
    at the last step; metrics go to metrics.jsonl and into `results` ("first_eval" / "last_eval")."""
    from transformers import TrainerCallback

    from rewards import get_reward
    from rl.rollout.episodes.collect import PromptEncoder
    from rl.rollout.episodes.evaluation import evaluate_greedy
    from rl.rollout.engines.hf import HFEngine

    rewards = {name: get_reward(name, **(params or {})) for name, params in cfg.eval_rewards.items()}
    encoder = PromptEncoder(tokenizer, cfg.data.template, cfg.data.system_prompt, cfg.rollout.max_prompt_length)

    class EvalCallback(TrainerCallback):
        said = False  # the sharding line is printed once

        def _evaluate(self, state, model) -> None:
            """Sharded as GRPO's: every rank decodes and scores its contiguous share of the problems and the
            results are all-gathered (rl/rollout/episodes/evaluation.py), so no rank idles while rank 0 evaluates
            the whole set; with sharded parameters every forward is collective, so the ranks decode in lock step."""
            if not test_rows:
                return
            from accelerate import PartialState

            from rl.train.distributed import DecodeSync, gather_objects
            ranks = PartialState()
            if ranks.num_processes > 1 and state.is_world_process_zero and not self.said:
                from rl.rollout.episodes.evaluation import shard_bounds
                shares = [hi - lo for lo, hi in (shard_bounds(len(test_rows), r, ranks.num_processes)
                                                 for r in range(ranks.num_processes))]
                print(f"[sft] evaluation sharded over {ranks.num_processes} processes: "
                      f"{' + '.join(map(str, shares))} problems", flush=True)
                self.said = True
            sync = DecodeSync(ranks) if shards_parameters() else None
            metrics, rows = evaluate_greedy(HFEngine(model, tokenizer, sync=sync), encoder, test_rows,
                                            cfg.rollout.max_completion_length, rewards, rank=ranks.process_index,
                                            world=ranks.num_processes, gather=gather_objects)
            if not state.is_world_process_zero:
                return
            logger.log(metrics, state.global_step)
            logger.log_completions([{"eval": True, **r} for r in rows[:cfg.logging.log_completions]],
                                   state.global_step)
            results.setdefault("first_eval", metrics)
            results["last_eval"] = metrics
            print(f"[sft] step {state.global_step}: " + ", ".join(f"{k} {v:.3f}" for k, v in metrics.items()),
                  flush=True)

        def on_train_begin(self, args, state, control, model=None, **kw):
            if state.global_step == 0:
                self._evaluate(state, model)

        def on_step_end(self, args, state, control, model=None, **kw):
            every = cfg.logging.eval_every
            if state.global_step >= state.max_steps:
                control.should_save = True  # always a full checkpoint at the end
                self._evaluate(state, model)
            elif every and state.global_step % every == 0:
                self._evaluate(state, model)

        def on_log(self, args, state, control, logs=None, **kw):
            if logs and state.is_world_process_zero:
                logger.log({f"train/{k}": v for k, v in logs.items() if isinstance(v, (int, float))},
                           state.global_step)

    return EvalCallback()


def build_trainer(cfg, args, model, tokenizer, rows: list[dict], callbacks=()):
    """The TRL SFTTrainer for `rows` (tokenized per data.tokenize); LoRA wraps the model when lora.enabled."""
    import datasets
    from trl import SFTTrainer

    d, t = cfg.data, cfg.train
    if d.tokenize == "exact":
        dataset = datasets.Dataset.from_list(tokenize_exact(rows, tokenizer, d.template, d.system_prompt,
                                                            d.max_length))
    else:
        dataset = datasets.Dataset.from_list(trl_rows(rows, d.template, d.system_prompt))
    peft_config = None
    if cfg.lora.enabled:
        from peft import LoraConfig
        lo = cfg.lora
        peft_config = LoraConfig(r=lo.r, lora_alpha=lo.alpha, lora_dropout=lo.dropout,
                                 target_modules=("all-linear" if list(lo.target_modules) == ["all-linear"]
                                                 else list(lo.target_modules)), task_type="CAUSAL_LM")
    return scheduled_trainer_class(SFTTrainer, t)(model=model, args=args, train_dataset=dataset,
                                                  processing_class=tokenizer, peft_config=peft_config,
                                                  callbacks=[*callbacks, shared_weights_callback()])


def check_model_fits(cfg, model_path: str, tokenizer) -> None:
    """One-line ConfigErrors, before the weights load: data.max_length beyond the model's positions (Qwen2.5-Math-1.5B
    has 4,096; SFT at 8,192 would train on positions it never learned) unless the model config sets a RoPE scaling;
    `data.tokenize: trl` with a chat template that drops the reasoning of assistant turns (R1-Distill, Qwen3)."""
    from data.templates import keeps_final_reasoning
    from rl.config.recipe import ConfigError
    from rl.train.models import context_length, rope_scaled

    positions = context_length(model_path)
    if positions is not None and cfg.data.max_length > positions and not rope_scaled(model_path):
        raise ConfigError(f"data.max_length={cfg.data.max_length} exceeds the model's {positions} positions "
                          f"({model_path}); lower it or use a model (or config) with RoPE scaling")
    if cfg.data.tokenize == "trl" and cfg.data.template == "chat" and not keeps_final_reasoning(tokenizer):
        raise ConfigError("data.tokenize=trl with this chat template trains on the answer only (the template drops "
                          "the reasoning of assistant turns): use data.tokenize=exact")


def load_recipe_and_data(argv: list[str]) -> tuple[Any, list[dict], list[dict]]:
    """The recipe (checked) and its rows: (cfg, train rows, test rows), before any model is loaded. The test set's
    gold column actually read (`solution` when it has no `answer`) is written back for config.yaml."""
    from data.loading import evaluation_set_line, load_examples_and_gold
    from rl.config.recipe import load_config, split_argv
    from rl.config.sft import SFTConfig

    cfg = load_config(SFTConfig, *split_argv(argv))
    d = cfg.data
    rows = load_sft_rows(d, d.train_split)
    test_rows: list[dict] = []
    if d.test:
        test_rows, gold = load_examples_and_gold(
            d.test, d.test_split, prompt_column=d.test_prompt_column or d.prompt_column,
            answer_column=d.test_answer_column or d.answer_column, limit=d.max_eval_samples, num_train=d.num_train,
            num_test=d.num_test, seed=d.seed)
        if gold != (d.test_answer_column or d.answer_column):
            d.test_answer_column = gold
    if int(os.environ.get("RANK", "0")) == 0:
        print(f"[sft] {evaluation_set_line(d.train, d.test, d.test_split, len(test_rows))}", flush=True)
    return cfg, rows, test_rows


def main(argv: list[str] | None = None) -> dict:
    from rl.config.recipe import ConfigError

    # 1. Recipe and data, fully checked before any model is loaded.
    cfg, rows, test_rows = load_recipe_and_data(sys.argv[1:] if argv is None else argv)
    d = cfg.data
    from rl.tiny.sources import check_model_source
    check_model_source(cfg.model.name_or_path)
    out = Path(cfg.output_dir)
    resume_from = None
    if cfg.resume != "never" and not cfg.overwrite:
        from transformers.trainer_utils import get_last_checkpoint
        resume_from = (get_last_checkpoint(str(out)) if out.is_dir() else None) if cfg.resume == "auto" else cfg.resume

    # 2. The model's config and tokenizer, checked (context, template, LoRA vs sharding) before anything is written
    from rl.train.models import load_tokenizer
    model_path = resolve_model_path(cfg.model.name_or_path)
    tokenizer = load_tokenizer(model_path)
    check_model_fits(cfg, model_path, tokenizer)
    from data.templates import end_of_turn_token
    turn_end = end_of_turn_token(tokenizer, d.template)
    if turn_end is not None:  # the trained model will end its replies with it: make it the eos the engines stop at
        print(f"[sft] eos {tokenizer.eos_token!r} -> {turn_end!r} (the chat template's end of turn)", flush=True)
        tokenizer.eos_token = turn_end
    args = training_args(cfg)  # before the model: ZeRO-3 then loads shards (see training_args)
    if cfg.lora.enabled and shards_parameters():
        raise ConfigError("lora.enabled with sharded parameters (ZeRO-3, FSDP) is not supported by rl/sft.py (the "
                          "merged final model needs the full base on one rank): use recipes/accelerate/zero2.yaml "
                          "or ddp.yaml")

    # rank 0 locks output_dir; a new run into another run's directory stops here (rl/train/rundir.py)
    from rl.train.rundir import claim_output_dir
    with claim_output_dir(out, "sft", resuming=resume_from is not None, overwrite=cfg.overwrite):
        return train(cfg, args, model_path, tokenizer, rows, test_rows, out, resume_from)


def train(cfg, args, model_path: str, tokenizer, rows: list[dict], test_rows: list[dict], out: Path,
          resume_from: str | None) -> dict:
    """Model and TRL trainer; training (resumed when `resume_from`), the final model and eval.json."""
    d = cfg.data
    # 3. Model, trainer.
    from transformers.integrations import is_deepspeed_zero3_enabled

    from rl.config.recipe import dump_yaml
    from rl.train.models import load_causal_lm
    from rl.train.tracking import RunLogger
    # float32 master weights, as in GRPO: AdamW updates at small learning rates round away in bf16 weights;
    # model.dtype reaches the Trainer as mixed precision (bf16 / fp16 autocast)
    model = load_causal_lm(model_path, "float32", cfg.model.attn_implementation)
    if is_deepspeed_zero3_enabled() and int(os.environ.get("RANK", "0")) == 0:  # zero.Init: a shard per rank
        held = sum(getattr(p, "ds_tensor", p).numel() for p in model.parameters())
        total = sum(getattr(p, "ds_numel", p.numel()) for p in model.parameters())
        print(f"[sft] ZeRO-3: this rank holds {held:,} of {total:,} parameters after loading", flush=True)
    results: dict[str, Any] = {}
    # metrics.jsonl only: trackers (tensorboard, wandb, trackio) get the Trainer's own report_to
    logger = RunLogger(out, "none", enabled=int(os.environ.get("RANK", "0")) == 0)
    callback = make_eval_callback(cfg, tokenizer, test_rows, logger, results)
    trainer = build_trainer(cfg, args, model, tokenizer, rows, [callback])
    if trainer.is_world_process_zero():
        (out / "config.yaml").write_text(dump_yaml(cfg))
        acc = trainer.accelerator
        print(f"[sft] {len(rows)} rows from {d.train}, model {model_path}; {acc.num_processes} process(es), "
              f"{acc.distributed_type.value.lower()}{' (fsdp2)' if trainer.is_fsdp_enabled else ''}, mixed precision "
              f"{acc.mixed_precision}" + (f", resuming from {resume_from}" if resume_from else ""), flush=True)

    # 4. Train (resumes optimizer, scheduler, RNG and data position), then the final model.
    trainer.train(resume_from_checkpoint=resume_from)
    final = save_final_model(trainer, tokenizer, out)  # every rank: the weights are gathered collectively
    if trainer.is_world_process_zero():
        (out / "eval.json").write_text(json.dumps(results, indent=1))
        if "first_eval" in results:
            f, la = results["first_eval"], results["last_eval"]
            print(f"[sft] eval/accuracy {f['eval/accuracy']:.3f} -> {la['eval/accuracy']:.3f}, "
                  f"eval/format {f['eval/format']:.3f} -> {la['eval/format']:.3f}", flush=True)
    logger.close()
    # every rank waits for rank 0's writes, then the process group ends explicitly (as rl/grpo.py does), not in
    # interpreter teardown, whose order is undefined (rank 1 once aborted there: "terminate called without an
    # active exception")
    trainer.accelerator.wait_for_everyone()
    trainer.accelerator.end_training()
    return {**results, "output_dir": str(out), "model_dir": str(final) if final else None,
            "global_step": trainer.state.global_step}


if __name__ == "__main__":
    from rl.config.cli import recipe_cli
    recipe_cli(main, "rl/sft.py", "cold_start_sft.yaml")
