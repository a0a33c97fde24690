"""Streamed rollouts (orchestration, `rollout.stream: true`): the learner takes groups as they complete, and the
worker's weights change between decode steps (partial rollouts).

    rollout.stream: true   rollout.async_steps: k (>= 1)   rollout.max_staleness: k'   (engine: vLLM colocated)

Submission is AsyncRollouts' (rl/rollout/episodes/async_rollouts.py): at the top of step s the prompts of steps
s..s+k are submitted, one job of `prompts_per_step` prompts per step, so about (k + 1) x prompts_per_step groups are
in flight. But the worker (rl/rollout/engines/stream_worker.py) decodes all of them together and returns each group
as soon as its n completions are done, whichever job it came from; step s trains on prompts_per_step of the groups
that have arrived, the oldest first (a step starts as soon as it has its groups; the long chains of a job no longer
hold up its short ones, and a long chain arriving behind fresher groups goes first), and a weights push reaches the
running sequences at the next decode step, so a long completion can span several versions. Every token carries the
version that sampled it; a group's version is its oldest token's (rl/core/streaming.py), its staleness = learner
version - that. Groups older than max_staleness are dropped and their prompts submitted again (they come back in a
later step's groups), counted in `rollout/dropped_groups`; with max_staleness null nothing is dropped (set it:
in-flight updates bound nothing by themselves). A chain that decodes for longer than max_staleness learner steps is
dropped at every try: set max_staleness above the longest chain's duration (docs/performance.md). The first time
a prompt is dropped twice, a one-line notice says so (training is then biased toward short completions), and
`rollout/redropped_groups` counts the drops of prompts dropped before.

Metrics per step: `rollout/staleness_mean` / `_max` (per group, weighted by its completions), `rollout/version_*`,
`rollout/dropped_groups`, `rollout/spanning_frac` (completions sampled by more than one version),
`time/rollout_wait_s` (the learner waiting for groups; with the push wait: `time/learner_idle_s`),
`time/generate_s` (engine seconds spent decoding since the last step), `time/engine_idle_s` (engine seconds with
nothing to decode since the last step). The off-policy correction is the asynchronous mode's, token by token on the
logprobs each token was sampled with.

Resume: checkpoints store the sampler position of the oldest job with a group not yet trained, so after a resume
its prompts (and those of every later job) are drawn again, some of them already trained on once.
"""
from __future__ import annotations

import time
from typing import Callable

from rl.core.episode import Episode, SamplingParams
from rl.core.staleness import staleness_metrics
from rl.core.streaming import group_version, spanning_fraction, take_groups
from rl.rollout.episodes.collect import PromptEncoder, PromptSampler, episodes_from_groups, score_episodes


class StreamedRollouts:
    """AsyncRollouts' interface (`episodes_for(step)`, `push`, `close`, `trained_position`, `push_wait_s`) on a
    StreamWorker: step's groups are the first to complete."""

    def __init__(self, worker, scorer, sampler: PromptSampler, encoder: PromptEncoder,
                 params_for_step: Callable[[int], SamplingParams], prompts_per_step: int, async_steps: int,
                 version: int = 0, max_staleness: int | None = None):
        if async_steps < 1:
            raise ValueError(f"streamed rollouts need async_steps >= 1, got {async_steps}")
        self.worker, self.scorer, self.sampler, self.encoder = worker, scorer, sampler, encoder
        self.params_for_step = params_for_step
        self.prompts_per_step, self.async_steps, self.max_staleness = prompts_per_step, async_steps, max_staleness
        self.version = version
        self.push_wait_s = 0.0
        self._prompts: dict[int, tuple[list, int]] = {}  # job -> (drawn (index, example) pairs, origin job)
        self._left: dict[int, tuple[int, int]] = {}  # origin job -> (sampler position before it, groups untrained)
        self._arrived: list[tuple] = []  # (job, prompt, completions, version), in arrival order
        self._next_step: int | None = None
        self._idle = self._busy = 0.0  # the worker's engine idle / busy seconds at the last group received
        self._idle_seen = self._busy_seen = 0.0  # ... at the end of the last step
        self.trained_position = sampler.position
        self._drops: dict[int, int] = {}  # prompt (sampler index) -> times its group was dropped for staleness
        self._warned = False

    def _submit(self, drawn: list, step: int, origin: int | None = None) -> int:
        job = self.worker.submit([self.encoder(i, ex) for i, ex in drawn], self.params_for_step(step))
        self._prompts[job] = (drawn, job if origin is None else origin)
        return job

    def _receive(self) -> None:
        job, prompt, completions, self._idle, self._busy = self.worker.next_group()
        if any(c.versions is None or len(c.versions) != len(c.completion_ids) for c in completions):
            raise RuntimeError("stream mode: the engine returned a completion without a version per token")
        self._arrived.append((job, prompt, completions, group_version([c.versions for c in completions])))

    def episodes_for(self, step: int) -> tuple[list[Episode], dict[str, float]]:
        if self._next_step is None:
            self._next_step = step
        while self._next_step <= step + self.async_steps:  # as AsyncRollouts: prompts of step..step+k submitted
            start = self.sampler.position
            job = self._submit(self.sampler.take(self.prompts_per_step), self._next_step)
            self._left[job] = (start, self.prompts_per_step)
            self._next_step += 1
        t0 = time.time()
        taken: list[tuple] = []
        dropped = redropped = 0
        while len(taken) < self.prompts_per_step:
            self.worker.drain()  # every group already sent: the step picks the oldest (take_groups)
            while self.worker.ready():
                self._receive()
            if not self._arrived:
                self._receive()
            take, drop = take_groups([a[3] for a in self._arrived], self.prompts_per_step - len(taken),
                                     self.version, self.max_staleness)
            for d in drop:  # too old: its prompt again, with the newest weights (joins the decoding at once)
                job, prompt = self._arrived[d][:2]
                drawn, origin = self._prompts[job]
                self._submit([drawn[prompt]], step, origin)
                index = drawn[prompt][0]
                self._drops[index] = self._drops.get(index, 0) + 1
                if self._drops[index] > 1:
                    redropped += 1
                    if not self._warned:
                        self._warned = True
                        print(f"[grpo] stream mode: prompt {index}'s group was dropped twice for staleness (its chains "
                              f"decode for longer than rollout.max_staleness={self.max_staleness} learner steps); "
                              f"long completions are being left out of training: raise rollout.max_staleness",
                              flush=True)
            dropped += len(drop)
            taken += [self._arrived[t] for t in take]
            gone = set(take + drop)
            self._arrived = [a for i, a in enumerate(self._arrived) if i not in gone]
        waited = time.time() - t0
        for job, _, _, _ in taken:
            origin = self._prompts[job][1]
            start, left = self._left[origin]
            self._left[origin] = (start, left - 1)
        self._left = {j: v for j, v in self._left.items() if v[1] > 0}
        done = [j for j, (_, origin) in self._prompts.items() if origin not in self._left]
        self.trained_position = min((v[0] for v in self._left.values()), default=self.sampler.position)
        drawn = [self._prompts[job][0][prompt] for job, prompt, _, _ in taken]
        for j in done:  # every group of these jobs is trained: nothing of theirs can still arrive
            del self._prompts[j]
        groups = [completions for _, _, completions, _ in taken]
        versions = [v for _, _, _, v in taken]
        episodes = episodes_from_groups(drawn, groups, first_group_id=0)
        for e in episodes:
            e.policy_version = versions[e.group_id]
        t1 = time.time()
        scorer_metrics = score_episodes(episodes, self.scorer)
        metrics = {**scorer_metrics, "time/generate_s": self._busy - self._busy_seen,
                   "time/engine_idle_s": self._idle - self._idle_seen, "time/rollout_wait_s": waited,
                   "time/score_s": time.time() - t1,
                   "rollout/prompts_truncated": float(self.encoder.count_cut(drawn)),
                   "rollout/dropped_groups": float(dropped), "rollout/redropped_groups": float(redropped),
                   "rollout/spanning_frac": spanning_fraction([c.versions for g in groups for c in g]),
                   **staleness_metrics(versions, self.version, [len(g) for g in groups])}
        self._idle_seen, self._busy_seen = self._idle, self._busy
        return episodes, metrics

    def push(self, weights, version: int) -> None:
        """The learner's weights after `version` optimizer steps: the worker applies them at its next decode step."""
        self.version = version
        self.worker.push_weights(version, weights)
        self.push_wait_s = getattr(self.worker, "push_wait_s", 0.0)

    def close(self) -> None:
        self.worker.close()
