"""Turn prompts into scored episodes: sample prompts -> roll out G completions each -> score -> (dynamic sampling).

I/O and orchestration only; the math lives in rl/core/advantages.py and the rewards package.
"""
from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import torch

from data.templates import prompt_token_ids
from rl.core.advantages import informative_groups
from rl.core.episode import Completion, Episode, SamplingParams


class PromptSampler:
    """Deterministic, resumable stream of examples shared by all ranks: a shuffled epoch order per seed, and one
    global `position` (examples consumed by all ranks together, saved in checkpoints).

    Each `take(n)` is a collective round: the ranks' counts are exchanged (`gather_counts(n) -> [n_0, ..., n_W-1]`),
    rank r takes the slice [position + n_0 + ... + n_{r-1}, + n_r) and every rank advances `position` by the total.
    Ranks asking for different counts (DAPO dynamic sampling refills only what it dropped) therefore never draw the
    same example in a round and keep identical positions, so the position saved by rank 0 resumes every rank.

        W = 2, position 10: rank 0 asks 3, rank 1 asks 1 -> rank 0 takes 10..12, rank 1 takes 13, position -> 14

    Without `gather_counts` all ranks are assumed to ask for the same n (the plain GRPO step).
    """

    def __init__(self, examples: list[dict], seed: int, rank: int = 0, world_size: int = 1, position: int = 0,
                 gather_counts: Callable[[int], list[int]] | None = None):
        self.examples, self.seed, self.rank, self.world = examples, seed, rank, world_size
        self.position = position
        self.gather_counts = gather_counts or (lambda n: [n] * self.world)
        self.last_round_total = 0  # examples all ranks took in the last round (0: every rank is done)
        self._epoch_order: tuple[int, list[int]] | None = None

    def _order(self, epoch: int) -> list[int]:
        if self._epoch_order is None or self._epoch_order[0] != epoch:
            order = list(range(len(self.examples)))
            random.Random(self.seed * 100_003 + epoch).shuffle(order)
            self._epoch_order = (epoch, order)
        return self._epoch_order[1]

    def take(self, n: int) -> list[tuple[int, dict]]:
        """This rank's n (index, example) pairs; collective when ranks may ask for different counts."""
        counts = self.gather_counts(n)
        if len(counts) != self.world or counts[self.rank] != n:
            raise RuntimeError(f"prompt sampler: rank {self.rank} asked for {n} but the exchange says {counts}")
        start = self.position + sum(counts[:self.rank])
        out = []
        for k in range(start, start + n):
            epoch, offset = divmod(k, len(self.examples))
            idx = self._order(epoch)[offset]
            out.append((idx, self.examples[idx]))
        self.last_round_total = sum(counts)
        self.position += self.last_round_total
        return out


@dataclass
class PromptEncoder:
    """Tokenizes rendered prompts once per example (cached), left-truncated to max_prompt_length (which cuts the
    start of the rendered prompt: the template's header or system prompt). `cut` holds the cache keys (a training
    index, or evaluation's ("eval", i)) of the prompts that were truncated; `truncated` is their number."""

    tokenizer: Any
    template: str
    system_prompt: str | None
    max_prompt_length: int
    cache: dict[Any, list[int]] = field(default_factory=dict)
    cut: set[Any] = field(default_factory=set)

    @property
    def truncated(self) -> int:
        return len(self.cut)

    def length(self, example: dict) -> int:
        """The rendered prompt's length in tokens, before truncation (not cached)."""
        return len(prompt_token_ids(self.tokenizer, example["prompt"], self.template, self.system_prompt))

    def __call__(self, index: int, example: dict) -> list[int]:
        if index not in self.cache:
            ids = prompt_token_ids(self.tokenizer, example["prompt"], self.template, self.system_prompt)
            if len(ids) > self.max_prompt_length:
                self.cut.add(index)
                ids = ids[-self.max_prompt_length:]
            self.cache[index] = ids
        return self.cache[index]

    def count_cut(self, batch: list[tuple[int, dict]]) -> int:
        """How many of the (index, example) pairs already encoded were truncated (each draw counts)."""
        return sum(i in self.cut for i, _ in batch)


def drop_overlong_prompts(rows: list[dict], length: Callable[[dict], int], max_prompt_length: int
                          ) -> tuple[list[dict], int]:
    """(the rows whose prompt fits in max_prompt_length tokens, in order; how many were dropped): verl's
    `data.filter_overlong_prompts`, applied once at load time so no prompt is truncated during training.
    `length(row)`: the rendered prompt's token count (PromptEncoder.length).

        lengths [3, 9, 5, 6], max 5 -> rows 0 and 2 kept, 2 dropped (6 > 5; 5 fits exactly)
    """
    kept = [row for row in rows if length(row) <= max_prompt_length]
    return kept, len(rows) - len(kept)


def reward_columns(examples: list[dict], completion_lengths: list[int]) -> dict[str, list]:
    """Dataset columns as keyword lists aligned with the completions (TRL's convention), plus token counts."""
    keys = [k for k in examples[0] if k != "prompt"]
    columns = {k: [ex.get(k) for ex in examples] for k in keys}
    columns["prompts"] = [ex["prompt"] for ex in examples]
    columns["completion_length"] = completion_lengths
    return columns


def score_episodes(episodes: list[Episode], scorer) -> dict[str, float]:
    """Fill rewards and reward_total in place (episodes are this module's own objects); returns scorer metrics."""
    columns = reward_columns([e.example for e in episodes], [len(e.completion.completion_ids) for e in episodes])
    for key in sorted({k for e in episodes for k in e.completion.info}):  # multi-turn: tool stats, env_reward
        columns[key] = [e.completion.info.get(key) for e in episodes]
    result = scorer.score([e.completion.text for e in episodes], columns)
    for i, ep in enumerate(episodes):
        ep.rewards = {name: values[i] for name, values in result.per_reward.items()}
        ep.reward_total = result.totals[i]
    return result.metrics


def episodes_from_groups(batch: list[tuple[int, dict]], groups: list[list[Completion]], first_group_id: int,
                         policy_version: int = 0) -> list[Episode]:
    """One Episode per completion; prompt g's completions form group first_group_id + g."""
    return [Episode(group_id=first_group_id + g, example=ex, completion=c, policy_version=policy_version)
            for g, ((_, ex), completions) in enumerate(zip(batch, groups, strict=True)) for c in completions]


def generate_episodes(engine, encoder: PromptEncoder, batch: list[tuple[int, dict]], params: SamplingParams,
                      first_group_id: int) -> list[Episode]:
    if hasattr(engine, "episodes"):  # multi-turn episodes (tool_rollout.MultiTurnEngine)
        return engine.episodes(encoder, batch, params, first_group_id)
    prompts = [encoder(i, ex) for i, ex in batch]
    return episodes_from_groups(batch, engine.generate(prompts, params), first_group_id)


def collect_episodes(engine, scorer, sampler: PromptSampler, encoder: PromptEncoder, params: SamplingParams,
                     prompts_per_step: int, dynamic_sampling: bool, max_rounds: int) -> tuple[list[Episode], dict]:
    """Episodes for one step (prompts_per_step groups of params.n) and rollout metrics.

    With dynamic sampling (DAPO), groups whose rewards are all equal are dropped and more prompts are drawn, for at
    most `max_rounds` rounds; if the batch is still short, dropped groups are put back (A = 0 for them: no signal, but
    the batch shape stays fixed, which DDP and the normaliser need). With several processes every rank runs the same
    rounds (the sampler's exchange is collective) until all ranks are full.
    """
    t_gen = t_score = 0.0
    prompts_cut = 0
    kept: list[Episode] = []
    dropped: list[Episode] = []
    scorer_metrics: dict[str, float] = {}
    drawn_groups = rounds = 0
    for round_ in range(max_rounds if dynamic_sampling else 1):
        need = max(prompts_per_step - len(kept) // params.n, 0)
        drawn = sampler.take(need)  # collective: every rank calls it each round, even with need = 0
        if sampler.last_round_total == 0:
            break  # every rank is full
        rounds += 1  # rounds in which some rank drew prompts (the same count on every rank)
        t0 = time.time()
        seeded = params if params.seed is None else SamplingParams(**{**params.__dict__,
                                                                     "seed": params.seed + round_ * 1_000_003})
        # every rank calls the engine every round, a full rank with no prompts too: decoding a sharded model
        # (ZeRO-3/FSDP2, transformers engine) is collective
        episodes = generate_episodes(engine, encoder, drawn, seeded, first_group_id=drawn_groups)
        prompts_cut += encoder.count_cut(drawn)
        drawn_groups += need
        t_gen += time.time() - t0
        if not episodes:
            continue  # this rank is full, others still draw
        t0 = time.time()
        scorer_metrics = score_episodes(episodes, scorer)
        t_score += time.time() - t0
        if not dynamic_sampling:
            kept = episodes
            break
        rewards = torch.tensor([e.reward_total for e in episodes], dtype=torch.float64)
        informative = informative_groups(rewards, params.n).tolist()
        for g, ok in enumerate(informative):
            (kept if ok else dropped).extend(episodes[g * params.n:(g + 1) * params.n])
    short = prompts_per_step * params.n - len(kept)
    if short > 0:
        kept = kept + dropped[:short]
    metrics = {**scorer_metrics, "time/generate_s": t_gen, "time/score_s": t_score,
               "rollout/prompts_truncated": float(prompts_cut),  # prompts generated from, cut at max_prompt_length
               **getattr(engine, "metrics", {})}  # multi-turn: tools/* (the last round's episodes)
    if dynamic_sampling:
        metrics["dynamic_sampling/dropped_frac"] = len(dropped) / max(drawn_groups * params.n, 1)
        metrics["dynamic_sampling/rounds"] = float(rounds)
    return kept[:prompts_per_step * params.n], metrics


def step_advantages(episodes: list[Episode], advantage_fn, group_size: int,
                    gather: Callable[[torch.Tensor], torch.Tensor] | None = None,
                    rank: int = 0) -> tuple[torch.Tensor, dict[str, float]]:
    """This rank's advantages [N], computed over the GLOBAL batch: every rank's reward totals, gathered in rank order
    (`gather`: [N] -> [W*N], e.g. accelerator.gather; None for one process). So `batch` std is the std of the whole
    step's rewards however prompts split across processes (as TRL does), and the metrics (zero_std_frac,
    reward/std) are global too. Worked example, W = 2, G = 2, batch std: rank 0 rewards [1, 0], rank 1 [1, 1] ->
    std of [1, 0, 1, 1] = 0.5 for both ranks (rank 0 alone would divide by 0.707)."""
    rewards = torch.tensor([e.reward_total for e in episodes], dtype=torch.float64)  # [N]
    every = rewards if gather is None else gather(rewards)  # [W*N]
    advantages, metrics = advantage_fn(every, group_size)  # [W*N]
    return advantages[rank * len(episodes):(rank + 1) * len(episodes)], metrics  # [N]
