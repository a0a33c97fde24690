"""The GRPO recipe schema: every key a recipe may set, its type and default. See recipes/ for examples."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from rl.config.episodes import EpisodesConfig
from rl.config.recipe import ConfigError
from rl.config.reward_checks import check_eval_rewards, check_reward_columns, check_reward_rows  # noqa: F401


def check_resume(resume: str, overwrite: bool) -> None:
    """`overwrite=true` starts over, so it cannot go with a checkpoint path to resume from; a path must exist."""
    from pathlib import Path
    if resume in ("auto", "never"):
        return
    if overwrite:
        raise ConfigError(f"overwrite=true starts a new run: it cannot resume from {resume!r} (drop one of the two)")
    if not Path(resume).is_dir():
        raise ConfigError(f"resume={resume!r}: no such checkpoint directory (auto | never | a checkpoint path)")


@dataclass
class ModelConfig:
    name_or_path: str = "tiny"  # "tiny" = the project's cached tiny base model (rl/tiny/build.py); else hub id or dir
    dtype: str = "float32"  # compute dtype: float32 | bfloat16 | float16 (weights stay float32: mixed precision)
    gradient_checkpointing: bool = False
    attn_implementation: str | None = None  # e.g. flash_attention_2 on GPU; None = transformers' default


@dataclass
class LoraSection:
    """LoRA adapters (peft): W x + (alpha / r) * B A x on each target linear layer; only A and B train. The same
    names in SFT (`lora.*`) and GRPO (`model.lora.*`); rl/train/lora.py for GRPO's use of them."""
    enabled: bool = False
    r: int = 16
    alpha: int = 32
    dropout: float = 0.05
    # module names (peft matches name suffixes), or ["all-linear"]: every linear layer but the LM head. The default
    # is all of them, MLPs included ("LoRA Without Regret", Thinking Machines 2025: attention-only adapters learn
    # less; the tiny recipe with [q,k,v,o]_proj moved held-out accuracy 0.370 -> 0.375 in 40 steps)
    target_modules: list[str] = field(default_factory=lambda: ["all-linear"])

    def check(self, where: str) -> None:
        """One-line ConfigErrors naming `where` (e.g. "model.lora")."""
        if self.r < 1:
            raise ConfigError(f"{where}.r={self.r} must be at least 1")
        if self.alpha <= 0:
            raise ConfigError(f"{where}.alpha={self.alpha} must be > 0")
        if not 0 <= self.dropout < 1:
            raise ConfigError(f"{where}.dropout={self.dropout} must be in [0, 1)")
        if not self.target_modules or not all(isinstance(m, str) and m for m in self.target_modules):
            raise ConfigError(f"{where}.target_modules={self.target_modules!r} must be a non-empty list of names")
        if "all-linear" in self.target_modules and len(self.target_modules) > 1:
            raise ConfigError(f"{where}.target_modules: 'all-linear' stands alone, got {self.target_modules!r}")
        bad = sorted({"lm_head", "embed_tokens"} & set(self.target_modules))
        if bad:
            raise ConfigError(f"{where}.target_modules: {', '.join(bad)} cannot carry an adapter here (the chunked LM "
                              f"head reads lm_head's weight directly and it is often tied to embed_tokens)")


LORA_LR_FACTOR = 10.0  # LoRA's learning rate over full fine-tuning's when model.lora.learning_rate is unset


@dataclass
class GRPOLoraSection(LoraSection):
    # dropout 0 in RL: the engine samples without dropout, so the learner's policy should be the same function
    # (with dropout, rollout/logprob_diff and the importance ratios carry dropout noise)
    dropout: float = 0.0
    # rank 8, scale alpha / r = 2: RL learns ~1 bit per episode, so a small rank has the capacity ("LoRA Without
    # Regret": rank 1 matches full fine-tuning in RL). On the tiny recipe (40 steps, current base 0.375): r 8 / alpha
    # 16 -> 0.780, r 16 / alpha 32 -> 0.620 (one seed each, at the default rate 2e-3)
    r: int = 8
    alpha: int = 16
    # the adapters' learning rate; null = LORA_LR_FACTOR (10) x train.learning_rate, the full fine-tuning rate a
    # recipe states (LoRA needs ~10x: B starts at 0 and the update is low-rank; "LoRA Without Regret" finds the same)
    learning_rate: float | None = None

    def effective_learning_rate(self, train_learning_rate: float) -> float:
        """The rate the adapters train at. E.g. train.learning_rate 2e-4, learning_rate null -> 2e-3; 5e-4 -> 5e-4."""
        return LORA_LR_FACTOR * train_learning_rate if self.learning_rate is None else self.learning_rate

    def check(self, where: str) -> None:
        super().check(where)
        if self.learning_rate is not None and not self.learning_rate > 0:
            raise ConfigError(f"{where}.learning_rate={self.learning_rate} must be > 0 (or null: "
                              f"{LORA_LR_FACTOR:g}x train.learning_rate)")


@dataclass
class GRPOModelConfig(ModelConfig):
    lora: GRPOLoraSection = field(default_factory=GRPOLoraSection)  # rl/train/lora.py


@dataclass
class DataConfig:
    train: str = "procedural:arithmetic"  # procedural:<task> | local .jsonl/.json/.parquet | hub dataset name
    train_split: str = "train"
    test: str | None = "procedural:arithmetic"
    test_split: str = "test"
    prompt_column: str = "prompt"
    answer_column: str = "answer"
    template: str = "r1_zero"  # r1_zero | chat | plain (data/templates.py)
    system_prompt: str | None = None
    num_train: int = 2000  # procedural tasks only
    num_test: int = 200
    max_eval_samples: int | None = 200
    seed: int = 0
    # the dataset's other columns handed to the rewards beside prompt and answer; null = all of them (TRL's way).
    # Name the ones your rewards read on datasets with heavy columns (OpenR1's `generations`, `messages`).
    columns: list[str] | None = None
    # GRPO: drop training prompts longer than rollout.max_prompt_length tokens (rendered) at load time, as verl's
    # filter_overlong_prompts; false: they are cut from the left (losing the template's header), counted per step
    # as rollout/prompts_truncated with a warning
    filter_overlong_prompts: bool = False


@dataclass
class RolloutConfig:
    engine: str = "hf"  # hf | vllm
    vllm_mode: str = "colocate"  # colocate | server
    vllm_server_url: str = "http://127.0.0.1:8000"
    vllm_gpu_memory_utilization: float = 0.3
    vllm_enable_sleep_mode: bool = False
    timeout_s: float = 600.0  # the longest silence (no progress) of a rollout worker or server, not a batch's length
    seed_mode: str = "per_step"  # vLLM: per_step (one reseed per call, fast) | per_request (split-invariant, slower)
    async_steps: int = 0  # 0 = synchronous; k = generate up to k batches ahead in a worker process (rl/rollout/episodes/async_rollouts.py)
    # groups sampled more than k policy versions before the learner trains on them are dropped and regenerated with
    # the newest weights; null = no bound. Set alone, it also sets async_steps = k (rl/config/off_policy.py)
    max_staleness: int | None = None
    # async only: groups stream back as they complete and pushed weights reach running sequences between decode
    # steps (per-token policy versions); vLLM colocated only (rl/rollout/episodes/stream_rollouts.py)
    stream: bool = False
    worker_threads: int = 0  # async on CPU: torch threads of the rollout worker (0 = half the cores)
    # async: each rank's worker on its learner's GPU (shared) or on a GPU of its own (dedicated: 2x the GPUs)
    worker_devices: str = "shared"  # shared | dedicated   (rl/rollout/engines/placement.py)
    push_bucket_mb: int = 32  # async: the shared-memory bucket weights stream through (per rank, in /dev/shm)
    group_size: int = 8  # G completions per prompt
    max_prompt_length: int = 512
    max_completion_length: int = 64
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    # vLLM colocated: GPUs one engine shards the model over (vllm.LLM's tensor_parallel_size). Distillation only (a
    # 32B teacher on 2-4 GPUs, 70B on 8); GRPO's weight push needs 1. A server sets its own (--tensor-parallel-size).
    tensor_parallel_size: int = 1
    # vLLM server mode: generation requests (one per prompt, n sequences each) kept outstanding at once
    vllm_max_in_flight: int = 256

    def check_parallel(self, stage: str, tensor_parallel_ok: bool) -> None:
        """One-line ConfigError for parallel settings the stage cannot run: tensor_parallel_size applies to a
        colocated vLLM engine only (a server is started with its own), and only where `tensor_parallel_ok`."""
        if self.tensor_parallel_size < 1 or self.vllm_max_in_flight < 1:
            raise ConfigError(f"rollout.tensor_parallel_size={self.tensor_parallel_size} / vllm_max_in_flight="
                              f"{self.vllm_max_in_flight} must be at least 1")
        if self.tensor_parallel_size > 1:
            if not tensor_parallel_ok:
                raise ConfigError(f"rollout.tensor_parallel_size={self.tensor_parallel_size}: {stage} pushes weights "
                                  f"into a colocated engine in-process, which needs 1; use rollout.vllm_mode=server "
                                  f"with a tensor-parallel server (docs/vllm.md)")
            if self.engine != "vllm" or self.vllm_mode != "colocate":
                raise ConfigError(f"rollout.tensor_parallel_size={self.tensor_parallel_size} applies to "
                                  f"rollout.engine=vllm with vllm_mode=colocate (a server takes "
                                  f"--tensor-parallel-size on its own command line)")


@dataclass
class AlgorithmConfig:
    advantage: str = "group"  # group | batch | none   (rl/core/advantages.py)
    loss: str = "grpo"  # aggregation: grpo | bnpo | dapo | dr_grpo   (rl/core/losses.py)
    policy_loss: str = "clip"  # clip (PPO/GRPO) | gspo (sequence ratio; use epsilon ~3e-4) | cispo (clipped IS weight)
    kl_estimator: str = "k3"  # k1 | k2 | k3, the per-token KL term when beta > 0
    kl_in_reward: bool = False  # beta * KL as a penalty on each completion's reward (verl), not a loss term
    epsilon: float = 0.2
    epsilon_high: float | None = None  # None = epsilon (DAPO clip-higher: 0.28)
    beta: float = 0.0  # KL coefficient; the reference model is loaded only when > 0
    num_iterations: int = 1  # mu: optimizer passes per generation batch
    mask_truncated_completions: bool = False
    dynamic_sampling: bool = False  # DAPO: drop zero-variance groups, draw more prompts
    max_sampling_rounds: int = 3  # bound on extra draws per step with dynamic_sampling
    tis_cap: float | None = None  # truncated IS cap for engine/learner mismatch (off: None; 2.0 when async_steps > 0)
    # instead of tis_cap: token_truncate | token_mask | sequence_truncate | sequence_mask | icepop, with TRL's bounds
    # (vllm_importance_sampling_clip_min / _max); `decoupled` policy_loss: clip_max masks its behaviour weights
    rollout_correction: str | None = None  # rl/core/rollout_correction.py
    rollout_correction_clip_max: float | None = 3.0
    rollout_correction_clip_min: float | None = None


class LRScheduleKeys:
    """What GRPO's and SFT's train sections share about the schedule: its keys `lr_scheduler`, `warmup_steps`,
    `warmup_ratio`, `lr_step_milestones`, `lr_step_values`, `lr_decay_fraction`, `lr_min_ratio` (declared in each dataclass, so
    they stay beside the learning rate in config.yaml) and their checks. Math and a worked example:
    rl/core/schedules.py."""

    def schedule_params(self):
        from rl.core.schedules import ScheduleParams
        return ScheduleParams(tuple(self.lr_step_milestones), tuple(self.lr_step_values), self.lr_decay_fraction,
                              self.lr_min_ratio)

    def warmup_for(self, total_steps: int) -> int:
        """Warmup steps: `warmup_steps`, or `warmup_ratio` of the run (a ratio fits any data size: a fixed 20 steps
        is the whole of a small cold start). Example: ratio 0.05 of 300 steps -> 15."""
        return self.warmup_steps or round(self.warmup_ratio * total_steps)

    def check_schedule(self) -> None:
        """One-line ConfigError for an unknown schedule or inconsistent knobs."""
        from rl.core.schedules import SCHEDULES
        if not 0 <= self.warmup_ratio < 1 or self.warmup_steps < 0 or (self.warmup_ratio and self.warmup_steps):
            raise ConfigError(f"train.warmup_steps={self.warmup_steps} / warmup_ratio={self.warmup_ratio}: set one "
                              f"of them (steps >= 0, ratio in [0, 1))")
        if self.lr_scheduler not in SCHEDULES:
            raise ConfigError(f"train.lr_scheduler={self.lr_scheduler!r} is not one of: {', '.join(SCHEDULES)}")
        try:
            self.schedule_params().check()
        except ValueError as e:
            raise ConfigError(f"train.{e}") from None


@dataclass
class TrainConfig(LRScheduleKeys):
    learning_rate: float = 1e-6
    lr_scheduler: str = "constant"  # constant | linear | cosine | step | wsd (+ warmup)   (rl/core/schedules.py)
    warmup_steps: int = 0
    warmup_ratio: float = 0.0  # or warmup over this fraction of the run
    lr_step_milestones: list[float] = field(default_factory=lambda: [0.8, 0.9])  # step: fractions of the run
    lr_step_values: list[float] = field(default_factory=lambda: [0.316, 0.1])  # step: LR factor from each on
    lr_decay_fraction: float = 0.1  # wsd: the last fraction of the run decays linearly ...
    lr_min_ratio: float = 0.0  # wsd: ... to this factor of the peak
    max_steps: int = 100  # generation batches
    batch_size: int = 64  # completions per step per process = prompts per step * group_size
    micro_batch_size: int = 16  # completions per forward/backward pass
    # > 0: micro-batches by a budget of real tokens (prompt + completion) instead of micro_batch_size rows, each run as
    # one padding-free packed sequence, ranks balanced by tokens (rl/train/micro_batches.py); 0: micro_batch_size rows
    max_tokens_per_micro_batch: int = 0
    # with max_tokens_per_micro_batch > 0 and the sdpa attention (run as sdpa_packed): rows with identical prompt
    # token ids (a group) keep one copy of the prompt in their packed micro-batch, binned together; the same
    # computation, fewer tokens through the MLPs and the LM head (rl/core/packing.py); other attentions: no sharing
    share_prompts: bool = True
    max_grad_norm: float = 1.0
    weight_decay: float = 0.0
    adam_beta1: float = 0.9
    adam_beta2: float = 0.99
    seed: int = 0
    logprob_chunk_elements: int = 2 ** 25  # LM-head chunk: positions x vocab values at once (rl/core/logprobs.py)
    # the process group's timeout (every collective, barrier and gather): how long a rank may wait for the others
    # (rank 0 writing a checkpoint, the slowest rank's share of the evaluation) before the job aborts
    dist_timeout_s: float = 1800.0


@dataclass
class LoggingConfig:
    report_to: str = "none"  # none | tensorboard | wandb | trackio
    log_completions: int = 4  # sample completions written per step (completions.jsonl)
    eval_every: int = 0  # 0 = only before training and at the end
    save_every: int = 0  # 0 = only at the end
    save_total_limit: int = 2
    progress_bar: bool = True
    truncation_warning: float = 0.5  # warn when more than this fraction of completions hit max length


@dataclass
class ScoringConfig:
    """How the rewards are computed (rewards/scoring/scorer.py): worker processes, per-item time limit, and when a reward
    that errors is broken rather than unlucky."""
    workers: int = 2  # reward worker processes (0: score in the training process)
    timeout_s: float = 5.0  # per completion and reward (a batched reward: per completion, for the whole call); a reward
    # that bounds its own items gets its `item_timeout_s` when longer (`code`: its per-completion cap + 5 s)
    # stop the run when a reward errors on more than this fraction of the completions of the last `error_window`
    # steps (an error on every completion of one step stops it at once, whatever these say)
    max_error_frac: float = 0.5
    error_window: int = 10


@dataclass
class GRPOConfig:
    output_dir: str = "runs/grpo"
    resume: str = "auto"  # auto (latest checkpoint in output_dir, if any) | never | path to a checkpoint
    # true: delete the run already in output_dir (metrics, checkpoints, config.yaml) and start over; false: a new
    # run into a directory that holds one is refused (rl/train/rundir.py)
    overwrite: bool = False
    model: GRPOModelConfig = field(default_factory=GRPOModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    rollout: RolloutConfig = field(default_factory=RolloutConfig)
    algorithm: AlgorithmConfig = field(default_factory=AlgorithmConfig)
    rewards: dict[str, Any] = field(default_factory=lambda: {"accuracy": 1.0, "format": 0.5})
    # rewards per row: {task: [names from rewards]}; a row's `task` column picks its set, the other rewards give it
    # None (docs/rewards.md "Rewards per row"); null: every reward scores every row
    reward_sets: dict[str, Any] | None = None
    # What judges the held-out evaluation (eval/accuracy, eval/format): slot -> the parameters of the reward of that
    # name, or `reward: NAME` to judge it with another one (the code world: accuracy: {reward: code}).
    eval_rewards: dict[str, Any] = field(default_factory=lambda: {"accuracy": {}, "format": {}})
    scoring: ScoringConfig = field(default_factory=ScoringConfig)
    tools: list[str] = field(default_factory=list)  # multi-turn episodes: [python, my_pkg.my_mod:search] (docs/tools.md)
    episodes: EpisodesConfig = field(default_factory=EpisodesConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)

    @property
    def prompts_per_step(self) -> int:
        return self.train.batch_size // self.rollout.group_size

    def validate(self) -> None:
        """Cross-field checks; each failure is a one-line ConfigError naming the keys."""
        from rl.core.advantages import ADVANTAGE_ESTIMATORS
        from rl.core.losses import AGGREGATIONS, KL_ESTIMATORS, SURROGATES

        def choose(key: str, value: Any, valid) -> None:
            if value not in valid:
                raise ConfigError(f"{key}={value!r} is not one of: {', '.join(map(str, valid))}")

        r, a, t = self.rollout, self.algorithm, self.train
        check_eval_rewards(self.eval_rewards)
        choose("algorithm.advantage", a.advantage, list(ADVANTAGE_ESTIMATORS))
        choose("algorithm.loss", a.loss, list(AGGREGATIONS))
        choose("algorithm.policy_loss", a.policy_loss, list(SURROGATES))
        choose("algorithm.kl_estimator", a.kl_estimator, list(KL_ESTIMATORS))
        choose("rollout.engine", r.engine, ["hf", "vllm"])
        choose("rollout.vllm_mode", r.vllm_mode, ["colocate", "server"])
        choose("rollout.seed_mode", r.seed_mode, ["per_step", "per_request"])
        choose("rollout.worker_devices", r.worker_devices, ["shared", "dedicated"])
        t.check_schedule()
        choose("logging.report_to", self.logging.report_to, ["none", "tensorboard", "wandb", "trackio"])
        choose("model.dtype", self.model.dtype, ["float32", "bfloat16", "float16"])
        choose("data.template", self.data.template, ["r1_zero", "chat", "plain"])
        choose("resume", self.resume if self.resume in ("auto", "never") else "path", ["auto", "never", "path"])
        if self.model.lora.enabled:
            self.model.lora.check("model.lora")
        check_resume(self.resume, self.overwrite)
        if r.group_size < 2:
            raise ConfigError(f"rollout.group_size={r.group_size}: group-relative advantages need at least 2")
        if t.batch_size % r.group_size:
            raise ConfigError(f"train.batch_size={t.batch_size} is not divisible by rollout.group_size={r.group_size}")
        if t.batch_size % t.micro_batch_size:
            raise ConfigError(f"train.batch_size={t.batch_size} is not divisible by "
                              f"train.micro_batch_size={t.micro_batch_size}")
        if t.max_tokens_per_micro_batch < 0:
            raise ConfigError(f"train.max_tokens_per_micro_batch={t.max_tokens_per_micro_batch} must be >= 0 "
                              f"(0: micro-batches of train.micro_batch_size rows)")
        for key, value in (("train.max_steps", t.max_steps), ("algorithm.num_iterations", a.num_iterations),
                           ("rollout.max_completion_length", r.max_completion_length),
                           ("algorithm.max_sampling_rounds", a.max_sampling_rounds),
                           ("train.logprob_chunk_elements", t.logprob_chunk_elements)):
            if value < 1:
                raise ConfigError(f"{key}={value} must be at least 1")
        if r.push_bucket_mb < 1:
            raise ConfigError(f"rollout.push_bucket_mb={r.push_bucket_mb} must be at least 1")
        if not t.dist_timeout_s > 0:
            raise ConfigError(f"train.dist_timeout_s={t.dist_timeout_s} must be > 0 (seconds)")
        r.check_parallel("GRPO", tensor_parallel_ok=False)
        from rl.config.off_policy import check_off_policy
        check_off_policy(r, a)  # async_steps (max_staleness may set it), tis_cap, rollout_correction, decoupled
        self.episodes.check(self.tools, self.data.template)  # any engine, synchronous or asynchronous rollouts
        if r.stream and (self.tools or self.episodes.environment is not None):
            raise ConfigError("rollout.stream=true decodes single-turn requests only: multi-turn episodes (tools / "
                              "episodes.environment) run with rollout.async_steps / max_staleness without stream")
        if not 0 <= a.epsilon < 1 or (a.epsilon_high is not None and a.epsilon_high < 0):
            raise ConfigError(f"algorithm.epsilon={a.epsilon} / epsilon_high={a.epsilon_high} out of range")
        if a.beta < 0:
            raise ConfigError(f"algorithm.beta={a.beta} must be >= 0")
        if a.kl_in_reward and a.beta == 0:
            raise ConfigError("algorithm.kl_in_reward=true needs algorithm.beta > 0 (the penalty's coefficient)")
        sc = self.scoring
        if sc.workers < 0 or sc.timeout_s <= 0 or sc.error_window < 1 or not 0 < sc.max_error_frac <= 1:
            raise ConfigError(f"scoring: workers={sc.workers} must be >= 0, timeout_s={sc.timeout_s} > 0, "
                              f"error_window={sc.error_window} >= 1, 0 < max_error_frac={sc.max_error_frac} <= 1")
        if r.temperature <= 0:
            raise ConfigError(f"rollout.temperature={r.temperature} must be > 0")
        try:
            from rewards import validate_reward_spec
        except ImportError as e:  # pragma: no cover - the rewards package is part of this project
            raise ConfigError(f"rewards package unavailable: {e}") from None
        try:
            validate_reward_spec(self.rewards, self.reward_sets)
        except ValueError as e:
            raise ConfigError(str(e) if str(e).startswith("reward_sets") else f"rewards: {e}") from None
        d = self.data
        if self.reward_sets is not None and d.columns is not None and "task" not in d.columns:
            raise ConfigError("reward_sets picks each row's rewards by its 'task' column: add task to data.columns")
