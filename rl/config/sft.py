"""The SFT recipe schema (cold start and distillation students). Sections shared with GRPO are reused from
rl/config/grpo.py, so `model.*`, `rollout.*` (evaluation decoding) and `logging.*` mean the same thing in both.

    python rl/sft.py recipes/tiny/cold_start_sft.yaml train.learning_rate=1e-3 lora.enabled=true

Example: `data.packing=maybe` -> "data.packing: expected true/false, got 'maybe'", before any model is loaded.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from rl.config.recipe import ConfigError
from rl.config.grpo import LoggingConfig, LoraSection, LRScheduleKeys, ModelConfig, RolloutConfig, check_resume


@dataclass
class MixSource:
    """One extra SFT source mixed into data.train (data/mixing.py): its own columns, `count` rows drawn from it
    (null: all; more than it holds: repeated). R1's stage 3: reasoning traces + non-reasoning data."""

    source: str = ""  # procedural:general_replies | procedural:cold_start | a local file | a hub dataset
    split: str = "train"
    prompt_column: str = "prompt"
    completion_column: str = "completion"
    count: int | None = None


@dataclass
class SFTDataConfig:
    # procedural:cold_start (data/tasks.py) | local .jsonl/.json/.parquet with prompt/completion columns | hub dataset
    train: str = "procedural:cold_start"
    train_split: str = "train"
    test: str | None = "procedural:arithmetic"  # evaluation prompts with gold answers (data/loading.py sources)
    test_split: str = "test"
    prompt_column: str = "prompt"
    completion_column: str = "completion"
    answer_column: str = "answer"
    # the test set's own columns (MATH-500 has `problem`, traces have `prompt`); null = prompt_column / answer_column
    test_prompt_column: str | None = None
    test_answer_column: str | None = None
    template: str = "r1_zero"  # r1_zero | chat | plain: the prompt the model sees, as in GRPO
    system_prompt: str | None = None
    num_train: int = 400  # procedural sources only
    num_test: int = 200
    max_eval_samples: int | None = 200
    seed: int = 0
    max_length: int = 512  # tokens (prompt + completion); longer rows are truncated (packing: the block length)
    packing: bool = False  # concatenate rows into max_length blocks (TRL bfd packing, per-row attention)
    # exact: prompt tokenized exactly as GRPO/evaluation do, completion apart, + EOS (train == inference tokens)
    # trl:   hand TRL the rendered prompt/completion pair and let SFTTrainer tokenize (its prompt-completion format)
    tokenize: str = "exact"
    # further sources mixed into data.train, each with its own columns and row count (data/mixing.py), e.g.
    # [{source: procedural:general_replies, prompt_column: instruction, completion_column: reply, count: 200}]
    mix: list[MixSource] = field(default_factory=list)


@dataclass
class SFTTrainConfig(LRScheduleKeys):
    learning_rate: float = 2e-5
    lr_scheduler: str = "cosine"  # constant | linear | cosine | step | wsd   (rl/core/schedules.py, as in GRPO)
    warmup_steps: int = 0
    warmup_ratio: float = 0.0
    lr_step_milestones: list[float] = field(default_factory=lambda: [0.8, 0.9])
    lr_step_values: list[float] = field(default_factory=lambda: [0.316, 0.1])
    lr_decay_fraction: float = 0.1
    lr_min_ratio: float = 0.0
    num_epochs: float = 1.0
    max_steps: int = -1  # > 0 overrides num_epochs
    batch_size: int = 16  # rows per device per optimizer step (before accumulation)
    gradient_accumulation_steps: int = 1
    max_grad_norm: float = 1.0
    weight_decay: float = 0.0
    seed: int = 0


@dataclass
class SFTConfig:
    output_dir: str = "runs/sft"
    resume: str = "auto"  # auto (latest checkpoint in output_dir) | never | path to a checkpoint
    overwrite: bool = False  # true: delete the run already in output_dir and start over (else such a run is refused)
    model: ModelConfig = field(default_factory=ModelConfig)
    data: SFTDataConfig = field(default_factory=SFTDataConfig)
    lora: LoraSection = field(default_factory=LoraSection)
    train: SFTTrainConfig = field(default_factory=SFTTrainConfig)
    rollout: RolloutConfig = field(default_factory=RolloutConfig)  # evaluation decoding (max_completion_length...)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    # the two evaluation rewards and their parameters, e.g. {format: {prefilled_think: true}}
    eval_rewards: dict[str, Any] = field(default_factory=lambda: {"accuracy": {}, "format": {}})

    def validate(self) -> None:
        def choose(key: str, value: Any, valid) -> None:
            if value not in valid:
                raise ConfigError(f"{key}={value!r} is not one of: {', '.join(map(str, valid))}")

        d, t = self.data, self.train
        choose("data.template", d.template, ["r1_zero", "chat", "plain"])
        choose("data.tokenize", d.tokenize, ["exact", "trl"])
        t.check_schedule()
        choose("model.dtype", self.model.dtype, ["float32", "bfloat16", "float16"])
        choose("logging.report_to", self.logging.report_to, ["none", "tensorboard", "wandb", "trackio"])
        choose("rollout.engine", self.rollout.engine, ["hf"])  # evaluation inside the trainer shares its model
        choose("resume", self.resume if self.resume in ("auto", "never") else "path", ["auto", "never", "path"])
        check_resume(self.resume, self.overwrite)
        for key, value in (("train.batch_size", t.batch_size),
                           ("train.gradient_accumulation_steps", t.gradient_accumulation_steps),
                           ("data.max_length", d.max_length), ("lora.r", self.lora.r),
                           ("rollout.max_completion_length", self.rollout.max_completion_length)):
            if value < 1:
                raise ConfigError(f"{key}={value} must be at least 1")
        if t.max_steps <= 0 and t.num_epochs <= 0:
            raise ConfigError("train.max_steps or train.num_epochs must be positive")
        if t.learning_rate <= 0:
            raise ConfigError(f"train.learning_rate={t.learning_rate} must be > 0")
        for i, m in enumerate(d.mix):
            if not m.source:
                raise ConfigError(f"data.mix[{i}].source is not set (a procedural source, a file or a hub dataset)")
            if m.count is not None and m.count < 0:
                raise ConfigError(f"data.mix[{i}].count={m.count} must be at least 0 (null: all of its rows)")
        unknown = set(self.eval_rewards) - {"accuracy", "format"}
        if unknown:
            raise ConfigError(f"eval_rewards: only accuracy and format are evaluated, got {sorted(unknown)}")
