"""The distillation recipe schema: a teacher writes traces, rewards reject the bad ones, a student is fine-tuned.

    python rl/distill.py recipes/tiny/distill.yaml teacher.name_or_path=runs/tiny_r1 rollout.group_size=8

Sections reused from GRPO: `teacher` is a ModelConfig, `data` a DataConfig (the prompts: `data.train`), `rollout` a
RolloutConfig (engine hf | vllm, group_size = traces per prompt, temperature, top_p, max_completion_length;
at scale: `tensor_parallel_size` shards a colocated vLLM teacher over GPUs, `vllm_max_in_flight` is how many
requests a server-mode client keeps outstanding).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from rl.config.recipe import ConfigError
from rl.config.grpo import DataConfig, ModelConfig, RolloutConfig


@dataclass
class FilterConfig:
    """Rejection sampling: a trace is kept when every reward in `keep_if` scores at least its threshold (None fails),
    its completion length is within [min_tokens, max_tokens], it ended with EOS (unless allow_truncated), and its text
    was not kept before for the same prompt (dedup). At most `max_per_prompt` traces per prompt (None: all).
    R1's further filters (data/trace_filters.py): no code blocks, no paragraph over `max_paragraph_chars`, no near
    duplicate (word 5-gram Jaccard >= `near_dedup_threshold`) of a kept trace of the same prompt; mixed languages are
    the `language_consistency` reward in keep_if. Before any generation, prompts sharing a word n-gram
    (`decontaminate_ngram`) with a prompt of `decontaminate_against` (data sources, their test split) are dropped."""

    keep_if: dict[str, float] = field(default_factory=lambda: {"accuracy": 1.0, "format": 1.0})
    min_tokens: int = 1
    max_tokens: int | None = None
    allow_truncated: bool = False
    dedup: bool = True
    max_per_prompt: int | None = None
    drop_code_blocks: bool = False
    max_paragraph_chars: int | None = None
    near_dedup_threshold: float | None = None  # e.g. 0.8; None = exact dedup only
    decontaminate_against: list[str] = field(default_factory=list)  # e.g. [procedural:arithmetic, math500.jsonl]
    decontaminate_ngram: int = 8  # open-r1's default


@dataclass
class StudentConfig:
    """Optional second step: fine-tune a student on the kept traces with rl/sft.py (`name_or_path: null` = skip).
    The SFT recipe's model and data.train are replaced; `overrides` are further SFT overrides (`key=value`)."""

    name_or_path: str | None = None
    sft_recipe: str | None = None
    overrides: list[str] = field(default_factory=list)


@dataclass
class DistillConfig:
    output_dir: str = "runs/distill"  # traces.<format>, parts/, stats.json; the student under output_dir/student
    # true: delete the traces (and student) already in output_dir and start over; false: same settings resume,
    # other settings are refused
    overwrite: bool = False
    format: str = "jsonl"  # jsonl | parquet (both load with `datasets`)
    chunk_size: int = 64  # prompts per chunk: the unit of progress and resume
    num_prompts: int | None = None  # first N prompts of data.train (None: all)
    seed: int = 0
    progress_bar: bool = True
    # source columns copied into every kept row (by default none: e.g. OpenR1-Math's `generations` and `messages`
    # hold the original R1 traces, which a messages-reading trainer would train on instead of the kept ones)
    keep_columns: list[str] = field(default_factory=list)
    teacher: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    rollout: RolloutConfig = field(default_factory=RolloutConfig)
    filter: FilterConfig = field(default_factory=FilterConfig)
    student: StudentConfig = field(default_factory=StudentConfig)

    def validate(self) -> None:
        if self.format not in ("jsonl", "parquet"):
            raise ConfigError(f"format={self.format!r} is not one of: jsonl, parquet")
        if self.rollout.engine not in ("hf", "vllm"):
            raise ConfigError(f"rollout.engine={self.rollout.engine!r} is not one of: hf, vllm")
        if self.data.template not in ("r1_zero", "chat", "plain"):
            raise ConfigError(f"data.template={self.data.template!r} is not one of: r1_zero, chat, plain")
        for key, value in (("chunk_size", self.chunk_size), ("rollout.group_size", self.rollout.group_size),
                           ("rollout.max_completion_length", self.rollout.max_completion_length)):
            if value < 1:
                raise ConfigError(f"{key}={value} must be at least 1")
        if self.data.filter_overlong_prompts:
            raise ConfigError("data.filter_overlong_prompts is a GRPO key: distillation keeps every prompt (raise "
                              "rollout.max_prompt_length to fit long ones)")
        if self.num_prompts is not None and self.num_prompts < 1:
            raise ConfigError(f"num_prompts={self.num_prompts} must be at least 1 (or null for all)")
        self.rollout.check_parallel("distillation", tensor_parallel_ok=True)
        if self.rollout.temperature <= 0:
            raise ConfigError(f"rollout.temperature={self.rollout.temperature} must be > 0")
        f = self.filter
        if f.near_dedup_threshold is not None and not 0 < f.near_dedup_threshold <= 1:
            raise ConfigError(f"filter.near_dedup_threshold={f.near_dedup_threshold} must be in (0, 1]")
        if f.decontaminate_ngram < 1 or (f.max_paragraph_chars is not None and f.max_paragraph_chars < 1):
            raise ConfigError(f"filter.decontaminate_ngram={f.decontaminate_ngram} / max_paragraph_chars="
                              f"{f.max_paragraph_chars} must be at least 1")
        if f.max_tokens is not None and f.max_tokens < f.min_tokens:
            raise ConfigError(f"filter.max_tokens={f.max_tokens} < filter.min_tokens={f.min_tokens}")
        from rewards import validate_reward_spec
        try:
            validate_reward_spec({name: 1.0 for name in f.keep_if} or {"format": 1.0})
        except ValueError as e:
            raise ConfigError(f"filter.keep_if: {e}") from None
        if self.student.name_or_path and not self.student.sft_recipe:
            raise ConfigError("student.name_or_path is set but student.sft_recipe is not (the SFT recipe to use)")

    def provenance_key(self, teacher_path: str, teacher_weights: str) -> dict[str, Any]:
        """The settings that determine the traces: resuming under different ones is refused. The teacher counts by
        what it resolved to and by its weights (rl/train/models.py weights_fingerprint), not by its name: "runs/r1"
        trained further between two distillation runs is another teacher."""
        r = self.rollout
        return {"teacher": self.teacher.name_or_path, "teacher_path": teacher_path, "teacher_weights": teacher_weights,
                "data": [self.data.train, self.data.train_split,
                                                                self.data.num_train, self.data.seed,
                                                                self.data.template, self.data.system_prompt],
                "n": r.group_size, "temperature": r.temperature, "top_p": r.top_p, "top_k": r.top_k,
                "max_tokens": r.max_completion_length, "seed": self.seed, "chunk_size": self.chunk_size,
                "keep_columns": list(self.keep_columns),
                "filter": {k: v for k, v in vars(self.filter).items()}}
