"""Asynchronous rollouts (orchestration): the rollout worker generates batch n+1 while the learner trains on batch n.

    rollout.async_steps: k    (0 = the synchronous loop of rl/rollout/episodes/collect.py)

Timeline for k = 1 (G = generate, T = train, P = push weights; versions count optimizer updates):

    worker : G(2) with v0 | G(3) with v1 | G(4) with v2 ...       (each waits for the push queued before it)
    learner: T(1) P(v1)   | T(2) P(v2)   | T(3) P(v3)  ...

At the top of step s the batches of steps s..s+k are submitted (in order, prompts drawn now), then step s's batch is
awaited. Because the worker executes commands in order, batch s+k is generated after the push of version s-1, and
is trained on at step s+k with version s+k-1: staleness = (learner version) - (generating version) <= k, logged per
step as `rollout/staleness_mean` and `_max`, and the generating version as `rollout/version_mean` and `_max`. Steps
1..k see less (nothing to be stale against yet). For k = 1: versions 0, 0, 1, 2, ... (max(0, s - 2)), staleness
0, 1, 1, ... Across processes `_mean` is averaged and `_max` max-reduced, so mean == max says every rank had that
value (each rank has its own worker, rl/rollout/engines/placement.py).

Bounded staleness (`rollout.max_staleness` k, rl/core/staleness.py): every group carries the version that sampled
it; groups whose staleness exceeds k when their step comes are dropped and their prompts regenerated with the newest
weights (queued behind the batches in flight, after the last push: staleness 0), counted as
`rollout/dropped_groups`. With batches generated in order as above this happens only when async_steps > k (k set
alone gives async_steps = k, and nothing is ever dropped); stream mode, where groups of one batch come from several
versions, is rl/rollout/episodes/stream_rollouts.py (`rollout.stream`). `time/learner_idle_s`: the seconds the learner waited this step
for rollouts (`time/rollout_wait_s`, regeneration included) and for the worker to take the weights.

Off-policy correction: the engine's sampling logprobs are the behaviour policy. The learner weighs each token's loss
by min(exp(learner - behaviour), tis_cap) (truncated importance sampling; the recipe gets `algorithm.tis_cap: 2.0`
when async_steps > 0 and no correction is set), or by the weights of `algorithm.rollout_correction` (TRL's token /
sequence, truncate / mask modes, IcePop: rl/core/rollout_correction.py), or uses the `decoupled` policy loss
(rl/core/losses.py). With mu = 1 the PPO ratio itself stays 1.

Multi-turn episodes (tools, environments): `worker` is an EpisodeWorker (rl/rollout/episodes/async_episodes.py) and
each batch's episodes run whole in the worker, every turn with the one version the batch is stamped with.

Departures from the synchronous loop: DAPO dynamic sampling is refused (it needs a batch's rewards before drawing the
next prompts); a resumed run restarts the pipeline, so its first k batches are generated with the checkpoint's
weights (one version fresher than an uninterrupted run's); checkpoints store the data position of the last batch
trained on, so prompts drawn for batches still in flight are drawn again after a resume.
"""
from __future__ import annotations

import time
from typing import Callable

from rl.core.episode import Episode, SamplingParams
from rl.core.staleness import stale_groups, staleness_metrics
from rl.rollout.episodes.collect import PromptEncoder, PromptSampler, episodes_from_groups, score_episodes


class AsyncRollouts:
    """Keeps `async_steps` batches in flight on a RolloutWorker; `episodes_for(step)` returns step's scored batch."""

    def __init__(self, worker, scorer, sampler: PromptSampler, encoder: PromptEncoder,
                 params_for_step: Callable[[int], SamplingParams], prompts_per_step: int, async_steps: int,
                 version: int = 0, max_staleness: int | None = None):
        self.worker, self.scorer, self.sampler, self.encoder = worker, scorer, sampler, encoder
        self.params_for_step = params_for_step
        self.prompts_per_step = prompts_per_step
        self.async_steps = async_steps
        self.max_staleness = max_staleness  # None: no bound
        self.push_wait_s = 0.0  # seconds the last push waited for the worker to take the previous version
        self.version = version  # optimizer updates of the learner's weights (the last push's version)
        self._jobs: dict[int, tuple[int, list, int]] = {}  # step -> (job, drawn prompts, sampler position after)
        self._next_step: int | None = None  # the first step not submitted yet
        self.trained_position = sampler.position  # sampler position after the prompts of the last batch returned

    def episodes_for(self, step: int) -> tuple[list[Episode], dict[str, float]]:
        if self._next_step is None:
            self._next_step = step
        while self._next_step <= step + self.async_steps:  # submit in order, prompts drawn now
            drawn = self.sampler.take(self.prompts_per_step)
            job = self._submit(drawn, self.params_for_step(self._next_step))
            self._jobs[self._next_step] = (job, drawn, self.sampler.position)
            self._next_step += 1
        job, drawn, self.trained_position = self._jobs.pop(step)
        t0 = time.time()
        groups, generated_by, generate_s = self.worker.result(job)
        versions = [generated_by] * len(groups)  # per group (a batch is one job, one version, today)
        stale = stale_groups(versions, self.version, self.max_staleness)
        if stale:  # regenerate with the newest weights: submitted after the last push, so staleness 0
            again = self._submit([drawn[g] for g in stale], self.params_for_step(step))
            fresh, fresh_version, seconds = self.worker.result(again)
            generate_s += seconds
            for g, completions in zip(stale, fresh):
                groups[g], versions[g] = completions, fresh_version
        waited = time.time() - t0
        episodes = episodes_from_groups(drawn, groups, first_group_id=0)
        for e in episodes:
            e.policy_version = versions[e.group_id]
        t1 = time.time()
        scorer_metrics = score_episodes(episodes, self.scorer)
        return episodes, {**scorer_metrics, "time/generate_s": generate_s, "time/rollout_wait_s": waited,
                          "time/score_s": time.time() - t1,
                          "rollout/prompts_truncated": float(self.encoder.count_cut(drawn)),
                          "rollout/dropped_groups": float(len(stale)),
                          **staleness_metrics(versions, self.version, [len(g) for g in groups]),
                          **getattr(self.worker, "metrics", {})}  # multi-turn: tools/* (the last batch returned)

    def _submit(self, drawn: list[tuple[int, dict]], params: SamplingParams) -> int:
        if hasattr(self.worker, "submit_rows"):  # multi-turn episodes, run whole in the worker (async_episodes.py)
            return self.worker.submit_rows(self.encoder, drawn, params)
        return self.worker.submit([self.encoder(i, ex) for i, ex in drawn], params)

    def push(self, weights, version: int) -> None:
        """The learner's weights after `version` optimizer steps (= the step just trained, or the resumed step),
        queued behind the batches already submitted."""
        self.version = version
        self.worker.push_weights(version, weights)
        self.push_wait_s = getattr(self.worker, "push_wait_s", 0.0)

    def close(self) -> None:
        self.worker.close()
