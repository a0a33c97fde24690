"""The GRPO learner: policy (+ optional reference), optimizer, schedule, accelerate; `step(batch) -> metrics`.

One call of `step` is one generation batch: mu = `num_iterations` passes over it, each pass ONE optimizer step made of
micro-batched forward/backward passes with gradient accumulation. Forward passes per step:

    mu = 1, beta = 0 : one per micro-batch (the training pass itself; old logprobs are its detached values)
    mu > 1           : + one no-grad pass for old logprobs, computed once before the first update
    beta > 0         : + one no-grad pass of the reference model

The same code runs single-process, DDP, DeepSpeed ZeRO-2/3 and FSDP2 (rl/train/distributed.py holds what differs):
  - the policy is `CausalLMLogprobs` (rl/train/policy.py): logprobs come out of the wrapped module's forward through a
    chunked LM head, never as [B, T, vocab] logits;
  - micro-batches run inside `accelerator.accumulate`, so gradients are synchronised (DDP/FSDP2) and DeepSpeed's
    engine steps on the last micro-batch of the step only; the loss normaliser (`losses.Normalizer`) is fixed for the
    whole step, across processes for `dapo`, before the first backward pass, so the update depends neither on the
    micro-batch split nor on the number of processes;
  - micro-batches (rl/train/micro_batches.py): a fixed number of rows, ordered by length and trimmed to each
    micro-batch's longest row (rl/core/collate.py); or, with `train.max_tokens_per_micro_batch`, rows binned under a
    token budget and each micro-batch run as one padding-free packed sequence, ranks balanced by tokens and agreeing
    on the number of micro-batches (rl/core/packing.py), and (`train.share_prompts`) each group's prompt once per
    micro-batch;
  - the LR schedule is a plain LambdaLR stepped once per optimizer step (not accelerate's, which steps
    num_processes times).
"""
from __future__ import annotations

import contextlib
import time

import torch

from rl.train import distributed
from rl.core.collate import by_length
from rl.core.episode import BATCH_FIELDS, Batch
from rl.config.grpo import GRPOConfig
from rl.core.losses import Normalizer, get_aggregation, get_kl_estimator, get_surrogate, policy_loss
from rl.train.micro_batches import MicroBatcher, accumulation
from rl.train.packed_attention import is_row_attention, use_row_attention
from rl.train.policy import CausalLMLogprobs, packing_support
from rl.core.rollout_correction import correction_sums, get_correction
from rl.core.schedules import lr_factor_fn

POLICY_PREFIX = "lm."  # CausalLMLogprobs holds the transformers model as `.lm`


def completion_logprobs(model: torch.nn.Module, batch: Batch, temperature: float) -> torch.Tensor:
    """Logprobs [n, C] of the counted completion tokens (0 elsewhere) under `model`: a (prepared) CausalLMLogprobs,
    or a plain transformers causal LM (wrapped on the fly)."""
    if not isinstance(model, CausalLMLogprobs):
        model = CausalLMLogprobs(model)
    logprobs, _ = model(batch.input_ids, batch.attention_mask, batch.completion_mask, temperature)
    return logprobs


def make_scheduler(optimizer, train, total_steps: int):
    """A LambdaLR over `optimizer` with the recipe's schedule (rl/core/schedules.py), stepped once per update."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor_fn(train.lr_scheduler, train.warmup_for(total_steps),
                                                                     total_steps, train.schedule_params()))


def adamw_options(params: list[torch.Tensor], distributed_type: str = "NO") -> dict:
    """Extra torch.optim.AdamW arguments: {"fused": True} when every parameter is a plain float CPU tensor and the
    optimizer is neither DeepSpeed's nor FSDP's to rewrap (`distributed_type` of the Accelerator: "NO" or
    "MULTI_CPU"), else {} (torch's default). On CPU torch defaults to its per-parameter Python loop (`foreach` and
    `fused` are its defaults on CUDA only); the fused CPU kernel makes one vectorised pass per parameter: 0.03-0.34 s
    instead of 0.5-1.65 s per step for qwen2-22m's 98 tensors (docs/performance.md). Same update up to float rounding
    (tests/train/test_learner.py). Example: [Parameter(zeros(2))] -> {"fused": True}; with "DEEPSPEED" -> {}.
    """
    plain = all(type(p) is torch.nn.Parameter and p.device.type == "cpu" and p.is_floating_point() for p in params)
    return {"fused": True} if params and plain and distributed_type in ("NO", "MULTI_CPU") else {}


def _pad_columns(t: torch.Tensor, width: int) -> torch.Tensor:
    """[n, c] -> [n, width] with zeros on the right."""
    return torch.nn.functional.pad(t, (0, width - t.shape[1]))


class Learner:
    def __init__(self, cfg: GRPOConfig, accelerator, model: torch.nn.Module, ref_model: torch.nn.Module | None):
        self.cfg = cfg
        self.accelerator = accelerator
        alg, train = cfg.algorithm, cfg.train
        self.aggregation = get_aggregation(alg.loss)  # the loss variants, chosen once from the recipe's registries
        self.surrogate = get_surrogate(alg.policy_loss)
        self.kl_estimator = get_kl_estimator(alg.kl_estimator)
        self.epsilon_low = alg.epsilon
        self.epsilon_high = alg.epsilon if alg.epsilon_high is None else alg.epsilon_high
        # engine/learner gap (rl/core/rollout_correction.py): tis_cap c is token_truncate up to c; the decoupled loss
        # weighs tokens itself (the token_mask weights here are its metrics)
        self.decoupled = alg.policy_loss == "decoupled"
        self.correction = None  # (fn, clip_min, clip_max)
        if alg.tis_cap is not None:
            self.correction = (get_correction("token_truncate"), None, alg.tis_cap)
        elif alg.rollout_correction is not None:
            self.correction = (get_correction(alg.rollout_correction), alg.rollout_correction_clip_min,
                               alg.rollout_correction_clip_max)
        elif self.decoupled:
            self.correction = (get_correction("token_mask"), None, alg.rollout_correction_clip_max)
        self.accumulation_steps = distributed.micro_batches_per_step(cfg)
        if accelerator.gradient_accumulation_steps != self.accumulation_steps:
            raise ValueError(f"the Accelerator accumulates {accelerator.gradient_accumulation_steps} micro-batches, the "
                             f"recipe {self.accumulation_steps}: create it with rl.train.distributed.make_accelerator(cfg)")
        self.lora = None  # model.lora.enabled: adapters injected into `model`, base frozen (rl/train/lora.py)
        if cfg.model.lora.enabled:
            from rl.train.lora import apply_lora
            if ref_model is not None:
                raise ValueError("with model.lora the reference is the base with the adapters disabled: do not load a "
                                 "second model")
            self.lora = apply_lora(model, cfg.model.lora)  # float32 adapters on a base in any dtype
        low = distributed.low_precision_trainable(accelerator, model)  # ZeRO-3 bf16 partitions have fp32 masters
        if low:
            raise ValueError(f"trainable weights in {', '.join(low)}: AdamW updates at small learning rates round away "
                             f"in 16-bit weights. Load the model in float32; model.dtype sets the compute dtype "
                             f"(mixed precision)")
        self.balance_metrics: dict[str, float] = {}  # the last step's rank token balance (token budget only)
        packing_problem = packing_support(model) if train.max_tokens_per_micro_batch > 0 else None
        sharing_problem = None
        if train.max_tokens_per_micro_batch > 0 and packing_problem is None:
            # sdpa -> sdpa_packed: packed rows attend row by row (rl/train/packed_attention.py), prompts shared
            rows = [use_row_attention(m) or is_row_attention(m) for m in (model, ref_model) if m is not None]
            if not all(rows):
                attn = [m.config._attn_implementation for m in (model, ref_model) if m is not None]
                sharing_problem = f"attention {' / '.join(attn)} is not sdpa_packed"
        self.micro_batcher = MicroBatcher(accelerator, train.micro_batch_size, train.max_tokens_per_micro_batch,
                                          packing_problem, train.share_prompts, sharing_problem)
        if cfg.model.gradient_checkpointing:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        policy = CausalLMLogprobs(model, train.logprob_chunk_elements, head_gather=distributed.head_gather)
        # trainable parameters only: with LoRA the optimizer holds state for the adapters alone, at LoRA's own rate
        self.learning_rate = (train.learning_rate if self.lora is None
                              else cfg.model.lora.effective_learning_rate(train.learning_rate))
        trainable = [p for p in policy.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(trainable, lr=self.learning_rate, weight_decay=train.weight_decay,
                                      betas=(train.adam_beta1, train.adam_beta2),
                                      **adamw_options(trainable, accelerator.distributed_type))
        # Built on the raw optimizer and never given to accelerate (see rl/train/distributed.py): one step per update.
        self.scheduler = make_scheduler(optimizer, train, train.max_steps * alg.num_iterations)
        distributed.configure_deepspeed(accelerator, train.micro_batch_size, self.accumulation_steps,
                                        train.max_grad_norm)
        self.model, self.optimizer = accelerator.prepare(policy, optimizer)
        distributed.initialize_root(accelerator, self.model)
        self.ref_model = None
        self.reference_mode = contextlib.nullcontext  # the context in which ref_model computes reference logprobs
        if self.lora is not None:
            self.lora.keep_state_small(accelerator, self.model)
            if alg.beta > 0:  # the policy with its adapters switched off (no second copy)
                self.ref_model, self.reference_mode = self.model, self.lora.adapter_disabled
        if ref_model is not None:
            ref = CausalLMLogprobs(ref_model, train.logprob_chunk_elements, head_gather=distributed.head_gather)
            self.ref_model = distributed.prepare_reference(accelerator, ref)

    @property
    def unwrapped_model(self) -> torch.nn.Module:
        """The transformers model (shares its tensors with the prepared one)."""
        return self.accelerator.unwrap_model(self.model).lm

    def full_named_parameters(self):
        """(checkpoint name, full tensor) for every parameter, one module at a time; collective under ZeRO-3/FSDP.
        With LoRA: the merged weights under the base model's names (what a rollout engine loads)."""
        named = distributed.iter_full_params(self.model, prefix=POLICY_PREFIX)
        return named if self.lora is None else self.lora.merged(named)  # LoRA: W + scale * B @ A, base names

    @property
    def checkpoint_gather(self):
        """How a checkpoint's weights are gathered: None = the whole model (accelerate's get_state_dict); LoRA: the
        adapters alone, from the float32 masters (rl/train/distributed.py trainable_full_params)."""
        if self.lora is None:
            return None
        return lambda: distributed.trainable_full_params(self.accelerator, self.model, POLICY_PREFIX)

    @property
    def checkpoint_writer(self):
        """How a checkpoint's consolidated weights are written: None = a full Hugging Face model; LoRA: the adapter."""
        return None if self.lora is None else self.lora.write_adapter

    @torch.no_grad()
    def _frozen_logprobs(self, model: torch.nn.Module, batch: Batch) -> torch.Tensor:
        temperature, C = self.cfg.rollout.temperature, batch.completion_length
        out = torch.zeros(len(batch), C, dtype=torch.float32, device=batch.input_ids.device)  # [N, C]
        start = 0
        for rows, mb in self.micro_batcher.split(batch):
            lp = _pad_columns(model(mb.input_ids, mb.attention_mask, mb.completion_mask, temperature,
                                    packed=self.micro_batcher.packed,
                                    share_prompts=self.micro_batcher.share_prompts)[0], C)  # [n, C]
            if rows is None:
                out[start:start + len(mb)] = lp
                start += len(mb)
            else:
                out[rows] = lp
        return out

    def normalizer(self, batch: Batch) -> Normalizer:
        local_tokens = batch.completion_mask.sum()
        global_tokens = self.accelerator.reduce(local_tokens.to(self.accelerator.device), reduction="sum")
        return Normalizer(num_sequences=len(batch), num_tokens=local_tokens.item(),
                          global_num_tokens=global_tokens.item(), num_processes=self.accelerator.num_processes,
                          max_completion_length=self.cfg.rollout.max_completion_length)

    def prepare(self, batch: Batch) -> tuple[Batch, Normalizer]:
        """A new batch on the device, rows ordered by length, with old/ref logprobs when the algorithm needs them;
        and the step's normaliser. The caller's batch is not modified."""
        alg = self.cfg.algorithm
        if len(batch) != self.accumulation_steps * self.cfg.train.micro_batch_size:
            raise ValueError(f"a step trains on {self.accumulation_steps * self.cfg.train.micro_batch_size} rows per "
                             f"process (train.batch_size), got {len(batch)}")
        device = self.accelerator.device
        batch = Batch(*(None if t is None else t.to(device) for t in (getattr(batch, f) for f in BATCH_FIELDS)))
        batch, self.balance_metrics = self.micro_batcher.exchange_rows(batch)  # token budget, several ranks
        batch, _ = by_length(batch)
        self.model.train()
        if alg.num_iterations > 1 and batch.old_logprobs is None:
            batch.old_logprobs = self._frozen_logprobs(self.model, batch)
        if alg.beta > 0 and batch.ref_logprobs is None:
            with self.reference_mode():
                batch.ref_logprobs = self._frozen_logprobs(self.ref_model, batch)
        return batch, self.normalizer(batch)

    def reference_logprobs(self, batch: Batch) -> torch.Tensor:
        """Reference logprobs [N, C] of `batch` in its own row order (for a KL penalty in the reward). Set them as
        the batch's ref_logprobs before `step`, which then does not compute them again. Collective when the
        reference is sharded (every rank calls it)."""
        device = self.accelerator.device
        batch = Batch(*(None if t is None else t.to(device) for t in (getattr(batch, f) for f in BATCH_FIELDS)))
        with self.reference_mode():
            return self._frozen_logprobs(self.ref_model, batch)

    def probe_writer(self, tokenizer):
        """`write_extra` for save_checkpoint: the policy's logprobs of the fixed probe (rl/train/probe.py), computed
        now on every rank (collective when parameters are sharded) and written by the main process, so rl/export.py
        can check the exported model against the model that was trained."""
        from rl.train.probe import probe_batch, write_probe
        batch = probe_batch(tokenizer)
        device = self.accelerator.device
        batch = Batch(*(None if t is None else t.to(device) for t in (getattr(batch, f) for f in BATCH_FIELDS)))
        training = self.model.training
        self.model.eval()  # as an engine or the export runs it (no dropout)
        logprobs = self._frozen_logprobs(self.model, batch)  # [1, C], the policy under the run's mixed precision
        self.model.train(training)
        temperature, precision = self.cfg.rollout.temperature, self.accelerator.mixed_precision
        return lambda directory: write_probe(directory, tokenizer, logprobs, temperature, precision)

    def accumulate_gradients(self, batch: Batch, norm: Normalizer, first_pass: bool = True) -> dict[str, float]:
        """One pass of micro-batched forward/backward over a prepared `batch`. Under DDP/FSDP2 the gradients are
        left in `.grad` (synchronised on the last micro-batch); under DeepSpeed the engine has stepped its optimizer
        after the last one. Returns sums for metrics."""
        alg, temperature = self.cfg.algorithm, self.cfg.rollout.temperature
        scale = distributed.loss_scale_for_backward(self.accelerator)
        # metric sums stay on the device until the pass ends: one host sync per pass, not several per micro-batch
        zero = torch.zeros((), device=self.accelerator.device)
        sums = dict.fromkeys(("loss", "clipped_tokens", "kl_tokens", "diff_sum", "diff_max", "entropy_sum",
                              "is_weight", "is_masked", "is_truncated"), zero)
        micro_batches = self.micro_batcher.split(batch)
        for i, (_, mb) in enumerate(micro_batches):
            with (accumulation(self.accelerator, self.model, last=i == len(micro_batches) - 1)
                  if self.micro_batcher.packed else self.accelerator.accumulate(self.model)):
                logprobs, entropy = self.model(mb.input_ids, mb.attention_mask, mb.completion_mask, temperature,
                                               with_entropy=first_pass, packed=self.micro_batcher.packed,
                                               share_prompts=self.micro_batcher.share_prompts)  # [n, C], [n, C] | None
                if first_pass:  # engine vs learner logprobs on the sampled tokens, and entropy, free from this pass
                    diff = (logprobs.detach() - mb.sampling_logprobs).abs() * mb.completion_mask  # [n, C]
                    sums["diff_sum"] = sums["diff_sum"] + diff.sum()
                    sums["diff_max"] = torch.maximum(sums["diff_max"], diff.max())
                    sums["entropy_sum"] = sums["entropy_sum"] + (entropy * mb.completion_mask).sum()
                is_weights, surrogate_kwargs = None, None
                if self.correction is not None:  # importance weights of learner (old) vs engine (behaviour)
                    fn, clip_min, clip_max = self.correction
                    learner_lp = logprobs.detach() if mb.old_logprobs is None else mb.old_logprobs  # [n, C]
                    weights, masked, truncated = fn(learner_lp, mb.sampling_logprobs, mb.completion_mask,
                                                    clip_min, clip_max)  # [n, C] x3
                    for k, v in correction_sums(weights, masked, truncated, mb.completion_mask).items():
                        sums[k] = sums[k] + v
                    if self.decoupled:
                        surrogate_kwargs = {"behaviour_logprobs": mb.sampling_logprobs, "behaviour_cap": clip_max}
                    else:
                        is_weights = weights
                loss, parts = policy_loss(
                    logprobs, mb.advantages, mb.completion_mask, norm, aggregation=self.aggregation,
                    epsilon_low=self.epsilon_low, epsilon_high=self.epsilon_high,
                    beta=0.0 if alg.kl_in_reward else alg.beta,  # kl_in_reward: the KL went into the reward
                    old_logprobs=mb.old_logprobs, ref_logprobs=mb.ref_logprobs, is_weights=is_weights,
                    surrogate=self.surrogate, kl_estimator=self.kl_estimator, surrogate_kwargs=surrogate_kwargs)
                self.accelerator.backward(loss * scale)
            sums["loss"] = sums["loss"] + loss.detach()
            sums["clipped_tokens"] = sums["clipped_tokens"] + parts["clipped_tokens"]
            if "kl_tokens" in parts:
                sums["kl_tokens"] = sums["kl_tokens"] + parts["kl_tokens"]
        names = list(sums)
        return dict(zip(names, torch.stack([sums[k].float() for k in names]).tolist()))

    def optimizer_step(self) -> float:
        """Clip, step, zero the gradients, advance the LR schedule once. Returns the gradient norm before clipping."""
        grad_norm = self.accelerator.clip_grad_norm_(self.model.parameters(), self.cfg.train.max_grad_norm)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        if not self.accelerator.optimizer_step_was_skipped:
            self.scheduler.step()
        return float(grad_norm)

    def step(self, batch: Batch) -> dict[str, float]:
        """Train on one generation batch: mu optimizer steps over it. Returns metrics for logging."""
        t0 = time.time()
        alg = self.cfg.algorithm
        lr = self.scheduler.get_last_lr()[0]  # the rate this step's updates use
        batch, norm = self.prepare(batch)
        totals: dict[str, float] = {}
        grad_norms = []
        for iteration in range(alg.num_iterations):
            sums = self.accumulate_gradients(batch, norm, first_pass=iteration == 0)
            for k, v in sums.items():
                totals[k] = max(totals.get(k, 0.0), v) if k == "diff_max" else totals.get(k, 0.0) + v
            grad_norms.append(self.optimizer_step())
        tokens = max(norm.num_tokens, 1.0)
        metrics = {
            "loss": totals["loss"] / alg.num_iterations,
            "clip_frac": totals["clipped_tokens"] / (tokens * alg.num_iterations),
            "grad_norm": sum(grad_norms) / len(grad_norms),
            "lr": lr,
            "entropy": totals["entropy_sum"] / tokens,
            "rollout/logprob_diff_mean": totals["diff_sum"] / tokens,
            "rollout/logprob_diff_max": totals["diff_max"],
            "time/train_s": time.time() - t0,
        }
        metrics.update(self.balance_metrics)
        metrics.update(self.micro_batcher.last)
        if self.correction is not None:  # over counted tokens and passes
            passes = tokens * alg.num_iterations
            metrics.update({"rollout/is_weight_mean": totals["is_weight"] / passes,
                            "rollout/is_masked_frac": totals["is_masked"] / passes,
                            "rollout/is_truncated_frac": totals["is_truncated"] / passes})
        if alg.beta > 0 and not alg.kl_in_reward:
            metrics["kl"] = totals["kl_tokens"] / (tokens * alg.num_iterations)
        return metrics
