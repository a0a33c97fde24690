"""The GRPO learner: policy (+ optional reference), optimizer, schedule, accelerate; `step(batch) -> metrics`.

One call of `step` is one generation batch: mu = `num_iterations` passes over it, each pass one optimizer step made of
micro-batched forward/backward passes with gradient accumulation. Forward passes per step:

    mu = 1, beta = 0 : one (the training pass itself; old logprobs are its detached values)
    mu > 1           : + one no-grad pass for old logprobs, computed once before the first update
    beta > 0         : + one no-grad pass of the reference model

The loss normaliser (`losses.Normalizer`) is computed from the whole batch, and across processes for `dapo`, before
the first backward pass, so the update does not depend on the micro-batch split or the number of processes.
"""
from __future__ import annotations

import contextlib
import math
import time

import torch

from rl.collate import position_ids
from rl.grpo_config import GRPOConfig
from rl.rollout.vllm_mismatch import truncated_is_weights
from rl.losses import Normalizer, get_aggregation, policy_loss, token_logprobs
from rl.episode import Batch


def completion_logprobs(model: torch.nn.Module, batch: Batch, temperature: float) -> torch.Tensor:
    """Logprobs of the completion tokens under `model`: [n, C]. Only the last C + 1 positions go through lm_head."""
    C = batch.completion_length
    out = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask,
                position_ids=position_ids(batch.attention_mask), logits_to_keep=C + 1, use_cache=False)
    logits = out.logits[:, :-1]  # [n, C, V]: position P-1+t predicts completion token t
    return token_logprobs(logits, batch.input_ids[:, -C:], temperature)  # [n, C]


def make_scheduler(optimizer, name: str, warmup_steps: int, total_steps: int):
    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / (warmup_steps + 1)
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        if name == "linear":
            return max(0.0, 1.0 - progress)
        if name == "cosine":
            return 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))
        return 1.0
    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


class Learner:
    def __init__(self, cfg: GRPOConfig, accelerator, model: torch.nn.Module, ref_model: torch.nn.Module | None):
        self.cfg = cfg
        self.accelerator = accelerator
        alg, train = cfg.algorithm, cfg.train
        self.aggregation = get_aggregation(alg.loss)
        self.epsilon_low = alg.epsilon
        self.epsilon_high = alg.epsilon if alg.epsilon_high is None else alg.epsilon_high
        if cfg.model.gradient_checkpointing:
            model.gradient_checkpointing_enable()
        optimizer = torch.optim.AdamW(model.parameters(), lr=train.learning_rate, weight_decay=train.weight_decay,
                                      betas=(train.adam_beta1, train.adam_beta2))
        scheduler = make_scheduler(optimizer, train.lr_scheduler, train.warmup_steps,
                                   train.max_steps * alg.num_iterations)
        self.model, self.optimizer, self.scheduler = accelerator.prepare(model, optimizer, scheduler)
        self.ref_model = ref_model.eval().requires_grad_(False) if ref_model is not None else None
        if self.ref_model is not None:
            self.ref_model.to(accelerator.device)

    @property
    def unwrapped_model(self) -> torch.nn.Module:
        return self.accelerator.unwrap_model(self.model)

    def _micro_batches(self, batch: Batch):
        size = self.cfg.train.micro_batch_size
        return [batch.slice(s, s + size) for s in range(0, len(batch), size)]

    @torch.no_grad()
    def _frozen_logprobs(self, model: torch.nn.Module, batch: Batch) -> torch.Tensor:
        return torch.cat([completion_logprobs(model, mb, self.cfg.rollout.temperature)
                          for mb in self._micro_batches(batch)])  # [N, C]

    def normalizer(self, batch: Batch) -> Normalizer:
        local_tokens = batch.completion_mask.sum()
        global_tokens = self.accelerator.reduce(local_tokens.to(self.accelerator.device), reduction="sum")
        return Normalizer(num_sequences=len(batch), num_tokens=local_tokens.item(),
                          global_num_tokens=global_tokens.item(), num_processes=self.accelerator.num_processes,
                          max_completion_length=self.cfg.rollout.max_completion_length)

    def _to_device(self, batch: Batch) -> Batch:
        device = self.accelerator.device
        return Batch(*(None if t is None else t.to(device) for t in
                       (batch.input_ids, batch.attention_mask, batch.completion_mask, batch.advantages,
                        batch.sampling_logprobs, batch.old_logprobs, batch.ref_logprobs)))

    def prepare(self, batch: Batch) -> tuple[Batch, Normalizer]:
        """Move to device, add old/ref logprobs when the algorithm needs them, fix the step's normaliser."""
        alg = self.cfg.algorithm
        batch = self._to_device(batch)
        self.model.train()
        if alg.num_iterations > 1 and batch.old_logprobs is None:
            batch.old_logprobs = self._frozen_logprobs(self.model, batch)
        if alg.beta > 0 and batch.ref_logprobs is None:
            batch.ref_logprobs = self._frozen_logprobs(self.ref_model, batch)
        return batch, self.normalizer(batch)

    def accumulate_gradients(self, batch: Batch, norm: Normalizer, first_pass: bool = True) -> dict[str, float]:
        """One pass of micro-batched forward/backward over `batch`; gradients are left in `.grad` (no optimizer
        step). DDP gradient sync happens on the last micro-batch only. Returns sums for metrics."""
        alg, temperature = self.cfg.algorithm, self.cfg.rollout.temperature
        micro = self._micro_batches(batch)
        sums = {"loss": 0.0, "clipped_tokens": 0.0, "kl_tokens": 0.0, "diff_sum": 0.0, "diff_max": 0.0}
        for i, mb in enumerate(micro):
            ctx = contextlib.nullcontext() if i == len(micro) - 1 else self.accelerator.no_sync(self.model)
            with ctx:
                logprobs = completion_logprobs(self.model, mb, temperature)  # [n, C]
                if first_pass:  # engine vs learner logprobs on the sampled tokens, free from this pass
                    diff = (logprobs.detach() - mb.sampling_logprobs).abs() * mb.completion_mask  # [n, C]
                    sums["diff_sum"] += diff.sum().item()
                    sums["diff_max"] = max(sums["diff_max"], diff.max().item())
                is_weights = None
                if alg.tis_cap is not None:  # truncated IS: correct for engine/learner mismatch
                    behaviour = logprobs.detach() if mb.old_logprobs is None else mb.old_logprobs
                    is_weights, _ = truncated_is_weights(behaviour, mb.sampling_logprobs, mb.completion_mask,
                                                         alg.tis_cap)  # [n, C]
                loss, parts = policy_loss(
                    logprobs, mb.advantages, mb.completion_mask, norm, aggregation=self.aggregation,
                    epsilon_low=self.epsilon_low, epsilon_high=self.epsilon_high, beta=alg.beta,
                    old_logprobs=mb.old_logprobs, ref_logprobs=mb.ref_logprobs, is_weights=is_weights)
                self.accelerator.backward(loss)
            sums["loss"] += loss.item()
            sums["clipped_tokens"] += parts["clipped_tokens"].item()
            if "kl_tokens" in parts:
                sums["kl_tokens"] += parts["kl_tokens"].item()
        return sums

    def step(self, batch: Batch) -> dict[str, float]:
        """Train on one generation batch: mu optimizer steps over it. Returns metrics for logging."""
        t0 = time.time()
        alg = self.cfg.algorithm
        batch, norm = self.prepare(batch)
        totals: dict[str, float] = {}
        grad_norms = []
        for iteration in range(alg.num_iterations):
            sums = self.accumulate_gradients(batch, norm, first_pass=iteration == 0)
            for k, v in sums.items():
                totals[k] = max(totals.get(k, 0.0), v) if k == "diff_max" else totals.get(k, 0.0) + v
            grad_norm = self.accelerator.clip_grad_norm_(self.model.parameters(), self.cfg.train.max_grad_norm)
            grad_norms.append(float(grad_norm))
            self.optimizer.step()
            self.scheduler.step()
            self.optimizer.zero_grad(set_to_none=True)
        token_passes = max(norm.num_tokens * alg.num_iterations, 1.0)
        metrics = {
            "loss": totals["loss"] / alg.num_iterations,
            "clip_frac": totals["clipped_tokens"] / token_passes,
            "grad_norm": sum(grad_norms) / len(grad_norms),
            "lr": self.scheduler.get_last_lr()[0],
            "rollout/logprob_diff_mean": totals["diff_sum"] / max(norm.num_tokens, 1.0),
            "rollout/logprob_diff_max": totals["diff_max"],
            "time/train_s": time.time() - t0,
        }
        if alg.beta > 0:
            metrics["kl"] = totals["kl_tokens"] / token_passes
        return metrics
