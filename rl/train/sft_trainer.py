"""The TRL side of rl/sft.py: the SFTConfig a recipe becomes, the Trainer subclass with the project's LR schedule,
weights readable by everyone after each checkpoint, and the final model gathered under every strategy.

Machinery only (no data preparation, no evaluation): rl/sft.py, the stage, reads top to bottom on top of it.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

PRECISION = {"float32": "no", "bfloat16": "bf16", "float16": "fp16"}


def shards_parameters() -> bool:
    """Whether this launch shards the parameters (DeepSpeed ZeRO-3 or FSDP): every forward is then collective."""
    from transformers.integrations import is_deepspeed_zero3_enabled
    return is_deepspeed_zero3_enabled() or os.environ.get("ACCELERATE_USE_FSDP", "false").lower() == "true"


def training_args(cfg):
    """TRL's SFTConfig for the recipe. Built BEFORE the model is loaded: under DeepSpeed ZeRO-3 creating it installs
    the DeepSpeed config that makes `from_pretrained` load each rank's shard only (zero.Init), instead of the full
    model on every rank. The recipe's model.dtype is the mixed precision, as in GRPO: it overrides the launch
    config's `mixed_precision` (which accelerate passes as ACCELERATE_MIXED_PRECISION and DeepSpeed reads; a
    mismatch would stop the Trainer with "ds bf16.enabled=True vs hf bf16=False")."""
    import torch
    from trl import SFTConfig as TRLSFTConfig

    d, t, log = cfg.data, cfg.train, cfg.logging
    launched = os.environ.get("ACCELERATE_MIXED_PRECISION")
    if launched is not None and launched != PRECISION[cfg.model.dtype]:
        if int(os.environ.get("RANK", "0")) == 0:
            print(f"[sft] mixed precision {PRECISION[cfg.model.dtype]} (model.dtype={cfg.model.dtype}) instead of the "
                  f"launch config's {launched}", flush=True)
        os.environ["ACCELERATE_MIXED_PRECISION"] = PRECISION[cfg.model.dtype]
    gpu = torch.cuda.is_available()
    if not gpu and os.environ.get("ACCELERATE_USE_DEEPSPEED", "false").lower() == "true":
        # before TRL's accelerator starts DeepSpeed's comm backend: its CPU shared-memory all-reduce op is built
        # otherwise, and its threads aborted rank 1 at exit ("terminate called without an active exception")
        from rl.train.distributed import skip_deepspeed_shm_build
        skip_deepspeed_shm_build()
    return TRLSFTConfig(
        output_dir=cfg.output_dir, per_device_train_batch_size=t.batch_size,
        gradient_accumulation_steps=t.gradient_accumulation_steps, learning_rate=t.learning_rate,
        lr_scheduler_type="constant",  # unused: ScheduledSFTTrainer builds the project's schedule (t.lr_scheduler)
        num_train_epochs=t.num_epochs, max_steps=t.max_steps,
        max_grad_norm=t.max_grad_norm, weight_decay=t.weight_decay, seed=t.seed, data_seed=t.seed,
        completion_only_loss=True, packing=d.packing, max_length=d.max_length,
        gradient_checkpointing=cfg.model.gradient_checkpointing,
        # model.dtype is the compute dtype (autocast); the weights and Adam state stay float32 (see main)
        bf16=cfg.model.dtype == "bfloat16", fp16=cfg.model.dtype == "float16", use_cpu=not gpu,
        logging_steps=max(1, min(10, log.eval_every or 10)), save_strategy="steps",
        save_steps=log.save_every or 10**9, save_total_limit=log.save_total_limit or None,
        report_to=[] if log.report_to == "none" else [log.report_to], disable_tqdm=not log.progress_bar,
        dataloader_num_workers=0,
    )


def shared_weights_callback():
    """After each Trainer checkpoint: its *.safetensors get the mode of the other files (safetensors writes 0600)."""
    from transformers import TrainerCallback

    from rl.train.rundir import share_file_modes

    class SharedWeights(TrainerCallback):
        def on_save(self, args, state, control, **kw):
            if state.is_world_process_zero:
                share_file_modes(args.output_dir)

    return SharedWeights()


def scheduled_trainer_class(trainer_cls, train_cfg):
    """`trainer_cls` (TRL's SFTTrainer) with the learning-rate schedule of rl/core/schedules.py, the same LambdaLR
    GRPO steps, instead of transformers' own (`Trainer.create_scheduler` is its documented override point; under
    DeepSpeed, transformers' deepspeed_init calls it too)."""
    from rl.train.learner import make_scheduler

    class ScheduledTrainer(trainer_cls):
        def create_scheduler(self, num_training_steps: int, optimizer=None):
            if self.lr_scheduler is None:
                self.lr_scheduler = make_scheduler(optimizer or self.optimizer, train_cfg, num_training_steps)
            return self.lr_scheduler
    ScheduledTrainer.__name__ = f"Scheduled{trainer_cls.__name__}"
    return ScheduledTrainer


def save_final_model(trainer, tokenizer, out: Path) -> Path | None:
    """output_dir/model: the trained model (LoRA merged into a copy) + tokenizer, written atomically. Called on EVERY
    rank: the weights are gathered collectively (`Trainer.save_model`, which under ZeRO-3 consolidates the shards;
    a rank-0-only `save_pretrained` would write tensors of shape (0,)); rank 0 writes. Returns the path on rank 0."""
    import copy

    from rl.train.rundir import share_file_modes

    final, tmp = out / "model", out / ".tmp-model"
    model = trainer.accelerator.unwrap_model(trainer.model)
    if model.generation_config is not None:  # stop where the tokenizer (maybe a new end of turn) says replies end
        model.generation_config.eos_token_id = tokenizer.eos_token_id
    main_rank = trainer.is_world_process_zero()
    if main_rank:
        shutil.rmtree(tmp, ignore_errors=True)
    if hasattr(model, "merge_and_unload"):  # a peft model (not with sharded parameters, refused at start)
        if main_rank:
            copy.deepcopy(model).merge_and_unload().save_pretrained(tmp, safe_serialization=True)
    elif trainer.is_fsdp_enabled:  # the full state dict, gathered collectively whatever fsdp_state_dict_type says
        state_dict = trainer.accelerator.get_state_dict(trainer.model)
        if main_rank:
            model.save_pretrained(tmp, state_dict=state_dict, safe_serialization=True)
    else:
        trainer.save_model(str(tmp))  # collective under ZeRO-3 (consolidates the shards); writes on rank 0
    trainer.accelerator.wait_for_everyone()
    if not main_rank:
        return None
    tokenizer.save_pretrained(tmp)
    for stray in ("training_args.bin",):  # save_model's, not part of a model
        (tmp / stray).unlink(missing_ok=True)
    share_file_modes(tmp)  # safetensors writes 0600
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    return final
