"""The state of one GRPO run between steps, and the collective actions rl/grpo.py's loop calls on it (sampling
parameters per step, the rank exchanges of the prompt sampler and the rewards, weight push, sharded evaluation,
checkpoint, close). rl/grpo.py builds it in `set_up`; nothing else imports this module.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch


@dataclass
class Run:
    """What one GRPO run holds between steps, and the collective actions on it (every rank calls them at the same
    point: under ZeRO-3/FSDP2 pushing weights and evaluating with the transformers engine are collective)."""
    cfg: Any
    accelerator: Any
    out: Path
    tokenizer: Any
    learner: Any
    engine: Any  # a RolloutEngine, or a RolloutWorker process when rollout.async_steps > 0
    encoder: Any
    sampler: Any
    scorer: Any
    logger: Any
    test_rows: list[dict]
    eval_rewards: dict[str, Callable]
    lockstep: bool  # every rank decodes together (sharded parameters + transformers engine)
    start_step: int = 0
    resumed_from: Path | None = None
    rollouts: Any = None  # AsyncRollouts when rollout.async_steps > 0
    warned_prompts_truncated: bool = False  # the warning about prompts cut at max_prompt_length is printed once
    advantage_fn: Callable = field(default=None)

    @property
    def rank(self) -> int:
        return self.accelerator.process_index

    @property
    def world(self) -> int:
        return self.accelerator.num_processes

    def sampling_params(self, step: int):
        # Sample seeds: rank r's prompts continue where rank r-1's end, so an engine that seeds each prompt
        # (vLLM per_request: prompt i of a call draws with seed + i*G) gives a prompt the same samples however many
        # processes share the step; resume re-creates the same seeds.
        from rl.core.episode import SamplingParams
        cfg, r = self.cfg, self.cfg.rollout
        seed = (cfg.train.seed * 1_000_003 + step) * 10_000_000 + self.rank * cfg.prompts_per_step * r.group_size
        return SamplingParams(n=r.group_size, temperature=r.temperature, top_p=r.top_p, top_k=r.top_k,
                              max_tokens=r.max_completion_length, seed=seed)

    def gather_counts(self, n: int) -> list[int]:  # the prompt sampler's per-round exchange (collective)
        return self.accelerator.gather(torch.tensor([n], device=self.accelerator.device)).tolist()

    def gather_rewards(self, rewards: torch.Tensor) -> torch.Tensor:  # [N] -> [W*N] in rank order (collective)
        return self.accelerator.gather(rewards.to(self.accelerator.device)).cpu()

    def push_weights(self, version: int) -> None:
        if self.rollouts is not None:
            self.rollouts.push(self.learner.full_named_parameters(), version)
        else:
            self.engine.update_weights(self.learner.unwrapped_model, self.learner.full_named_parameters())

    def evaluate(self, step: int) -> dict:
        """Greedy held-out evaluation, sharded: every rank generates and scores its contiguous share of the problems
        with its own engine (its colocated vLLM, its transformers engine, in lock step when parameters are sharded,
        its async worker, queued behind the batches it already holds, or its client of the shared vLLM server); the
        per-problem results are all-gathered in rank order and every rank returns the same metrics, computed on
        the whole set. No rank idles in a barrier while another evaluates, and the results do not depend on the
        number of processes (greedy). Collective: every rank calls it at the same step."""
        from rl.rollout.episodes.evaluation import evaluate_greedy
        from rl.train.distributed import gather_objects
        if not self.test_rows:
            return {}
        # every rank's weight push of this step has returned: in sync server mode rank 0's push has reached the
        # shared server before any rank's evaluation requests (async: each worker's queue orders push and requests)
        self.accelerator.wait_for_everyone()
        metrics, rows = evaluate_greedy(self.engine, self.encoder, self.test_rows,
                                        self.cfg.rollout.max_completion_length, self.eval_rewards,
                                        rank=self.rank, world=self.world, gather=gather_objects)
        self.logger.log(metrics, step)  # writes on the main process only
        self.logger.log_completions([{"eval": True, **row} for row in rows[:self.cfg.logging.log_completions]], step)
        return metrics

    def checkpoint(self, step: int) -> None:
        from rl.train.checkpoint import save_checkpoint
        from rl.train.learner import POLICY_PREFIX
        # async: the position after the batch just trained on, not after the batches still in flight
        position = self.rollouts.trained_position if self.rollouts is not None else self.sampler.position
        save_checkpoint(self.accelerator, self.out, step, self.learner.model, self.tokenizer, self.learner.scheduler,
                        {"sampler_position": position}, self.cfg.logging.save_total_limit,
                        weights_prefix=POLICY_PREFIX, write_weights=self.learner.checkpoint_writer,
                        write_extra=self.learner.probe_writer(self.tokenizer),  # export checks against it
                        gather_weights=self.learner.checkpoint_gather)

    def close(self) -> None:
        self.scorer.close()
        self.engine.close()
        self.logger.close()
