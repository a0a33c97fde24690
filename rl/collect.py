"""Turn prompts into scored episodes: sample prompts -> roll out G completions each -> score -> (dynamic sampling).

I/O and orchestration only; the math lives in rl/advantages.py and the rewards package.
"""
from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from typing import Any

import torch

from data.templates import prompt_token_ids
from rl.advantages import informative_groups
from rl.episode import Episode, SamplingParams


class PromptSampler:
    """Deterministic, resumable stream of examples: a shuffled epoch order per seed, shared by all ranks; rank r of
    W takes every W-th block, so processes never see the same prompt in a step. `position` is saved in checkpoints."""

    def __init__(self, examples: list[dict], seed: int, rank: int = 0, world_size: int = 1, position: int = 0):
        self.examples, self.seed, self.rank, self.world = examples, seed, rank, world_size
        self.position = position  # number of examples consumed by all ranks together

    def _order(self, epoch: int) -> list[int]:
        order = list(range(len(self.examples)))
        random.Random(self.seed * 100_003 + epoch).shuffle(order)
        return order

    def take(self, n: int) -> list[tuple[int, dict]]:
        """n (index, example) pairs for this rank; advances the shared position by n * world_size."""
        start = self.position + self.rank * n
        out = []
        for k in range(start, start + n):
            epoch, offset = divmod(k, len(self.examples))
            idx = self._order(epoch)[offset]
            out.append((idx, self.examples[idx]))
        self.position += n * self.world
        return out


@dataclass
class PromptEncoder:
    """Tokenizes rendered prompts once per example (cached), left-truncated to max_prompt_length."""

    tokenizer: Any
    template: str
    system_prompt: str | None
    max_prompt_length: int
    cache: dict[int, list[int]] = field(default_factory=dict)
    truncated: int = 0

    def __call__(self, index: int, example: dict) -> list[int]:
        if index not in self.cache:
            ids = prompt_token_ids(self.tokenizer, example["prompt"], self.template, self.system_prompt)
            if len(ids) > self.max_prompt_length:
                self.truncated += 1
                ids = ids[-self.max_prompt_length:]
            self.cache[index] = ids
        return self.cache[index]


def reward_columns(examples: list[dict], completion_lengths: list[int]) -> dict[str, list]:
    """Dataset columns as keyword lists aligned with the completions (TRL's convention), plus token counts."""
    keys = [k for k in examples[0] if k != "prompt"]
    columns = {k: [ex.get(k) for ex in examples] for k in keys}
    columns["prompts"] = [ex["prompt"] for ex in examples]
    columns["completion_length"] = completion_lengths
    return columns


def score_episodes(episodes: list[Episode], scorer) -> dict[str, float]:
    """Fill rewards and reward_total in place (episodes are this module's own objects); returns scorer metrics."""
    result = scorer.score([e.completion.text for e in episodes],
                          reward_columns([e.example for e in episodes],
                                         [len(e.completion.completion_ids) for e in episodes]))
    for i, ep in enumerate(episodes):
        ep.rewards = {name: values[i] for name, values in result.per_reward.items()}
        ep.reward_total = result.totals[i]
    return result.metrics


def generate_episodes(engine, encoder: PromptEncoder, batch: list[tuple[int, dict]], params: SamplingParams,
                      first_group_id: int) -> list[Episode]:
    prompts = [encoder(i, ex) for i, ex in batch]
    groups = engine.generate(prompts, params)
    return [Episode(group_id=first_group_id + g, example=ex, completion=c)
            for g, ((_, ex), completions) in enumerate(zip(batch, groups)) for c in completions]


def collect_episodes(engine, scorer, sampler: PromptSampler, encoder: PromptEncoder, params: SamplingParams,
                     prompts_per_step: int, dynamic_sampling: bool, max_rounds: int) -> tuple[list[Episode], dict]:
    """Episodes for one step (prompts_per_step groups of params.n) and rollout metrics.

    With dynamic sampling (DAPO), groups whose rewards are all equal are dropped and more prompts are drawn, for at
    most `max_rounds` rounds; if the batch is still short, dropped groups are put back (A = 0 for them: no signal, but
    the batch shape stays fixed, which DDP and the normaliser need).
    """
    t_gen = t_score = 0.0
    kept: list[Episode] = []
    dropped: list[Episode] = []
    scorer_metrics: dict[str, float] = {}
    drawn_groups = 0
    for round_ in range(max_rounds if dynamic_sampling else 1):
        need = prompts_per_step - len(kept) // params.n
        if need <= 0:
            break
        t0 = time.time()
        seeded = params if params.seed is None else SamplingParams(**{**params.__dict__,
                                                                     "seed": params.seed + round_ * 1_000_003})
        episodes = generate_episodes(engine, encoder, sampler.take(need), seeded, first_group_id=drawn_groups)
        drawn_groups += need
        t_gen += time.time() - t0
        t0 = time.time()
        scorer_metrics = score_episodes(episodes, scorer)
        t_score += time.time() - t0
        if not dynamic_sampling:
            kept = episodes
            break
        rewards = torch.tensor([e.reward_total for e in episodes])
        informative = informative_groups(rewards, params.n).tolist()
        for g, ok in enumerate(informative):
            (kept if ok else dropped).extend(episodes[g * params.n:(g + 1) * params.n])
    short = prompts_per_step * params.n - len(kept)
    if short > 0:
        kept = kept + dropped[:short]
    metrics = {**scorer_metrics, "time/generate_s": t_gen, "time/score_s": t_score}
    if dynamic_sampling:
        metrics["dynamic_sampling/dropped_frac"] = len(dropped) / max(drawn_groups * params.n, 1)
        metrics["dynamic_sampling/rounds"] = float(round_ + 1)
    return kept[:prompts_per_step * params.n], metrics
