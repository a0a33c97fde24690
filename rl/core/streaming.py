"""Streamed groups and in-flight weight updates (pure): the bookkeeping of `rollout.stream: true`.

In stream mode the rollout worker decodes the sequences of several submitted jobs together (continuous batching: a
finished row's slot goes to the next queued sequence at once), sends each group (the n completions of one prompt)
back as soon as its n sequences are done, and applies a pushed weights version between two decode steps, so one
completion may span several policy versions. Each completion carries the version of every token
(`Completion.versions`); a group's version is its OLDEST token's, and its staleness is learner version - that.

    admit(queued=5, running=30, slots=32)                    -> 2      (rows that join at the next decode step)
    GroupAssembler: sequences (job, prompt, sample) done in any order -> whole groups, in completion order
    group_version([[0, 0, 1], [1, 1]])                       -> 0      (oldest token of the group)
    version_spans([0, 0, 1, 1, 1, 3])                        -> [(0, 2), (1, 3), (3, 1)]
    take_groups(arrived versions [3, 1, 2], need 2, learner 3, max_staleness 2) -> taken [1, 2], dropped []

Nothing here knows engines or processes: the worker loop (rl/rollout/engines/stream_worker.py), the paced engine of
rl/bench/long_tail.py and the learner's side (rl/rollout/episodes/stream_rollouts.py) call these.
"""
from __future__ import annotations

from typing import Any, Hashable


def admit(queued: int, running: int, slots: int) -> int:
    """How many queued sequences join the running batch now: as many as there are free slots (continuous batching:
    no waiting for the batch's slowest row). Examples: admit(5, 30, 32) -> 2; admit(1, 0, 32) -> 1;
    admit(4, 32, 32) -> 0."""
    if slots < 1 or running < 0 or queued < 0:
        raise ValueError(f"admit: slots={slots} must be >= 1, running={running} and queued={queued} >= 0")
    return max(0, min(queued, slots - running))


class GroupAssembler:
    """Collects finished sequences into groups: `expect(job, prompts, n)` when a job is submitted, then
    `add(job, prompt, sample, item)` per finished sequence returns the whole group (its n items in sample order)
    once the last of its n arrives, else None. Example (n = 2): add(0, 1, 1, "b") -> None; add(0, 1, 0, "a") ->
    ["a", "b"]; `open_groups()` counts groups still incomplete (0 after the job's last group)."""

    def __init__(self):
        self._n: dict[Hashable, int] = {}  # job -> group size
        self._left: dict[Hashable, int] = {}  # job -> prompts not yet complete
        self._parts: dict[tuple, dict[int, Any]] = {}  # (job, prompt) -> {sample: item}

    def expect(self, job: Hashable, prompts: int, n: int) -> None:
        if job in self._n:
            raise ValueError(f"job {job!r} submitted twice")
        if prompts < 1 or n < 1:
            raise ValueError(f"job {job!r}: {prompts} prompts x n={n}: both must be >= 1")
        self._n[job], self._left[job] = n, prompts

    def add(self, job: Hashable, prompt: int, sample: int, item: Any) -> list | None:
        n = self._n.get(job)
        if n is None:
            raise ValueError(f"sequence of unknown job {job!r}")
        if not 0 <= sample < n:
            raise ValueError(f"job {job!r} prompt {prompt}: sample {sample} outside 0..{n - 1}")
        parts = self._parts.setdefault((job, prompt), {})
        if sample in parts:
            raise ValueError(f"job {job!r} prompt {prompt} sample {sample} finished twice")
        parts[sample] = item
        if len(parts) < n:
            return None
        del self._parts[(job, prompt)]
        self._left[job] -= 1
        if self._left[job] == 0:
            del self._left[job], self._n[job]
        return [parts[j] for j in range(n)]

    def open_groups(self) -> int:
        return sum(self._left.values())


def group_version(token_versions: list[list[int]]) -> int:
    """The version of a group: the oldest weights any of its tokens was sampled with (the staleness that counts).
    token_versions: per completion, the version of each token [n][T_i]. Example: [[0, 0, 1], [1, 1]] -> 0.
    A completion without tokens has no version of its own; a group of only empty completions is an error."""
    versions = [v for row in token_versions for v in row]
    if not versions:
        raise ValueError("group_version: no tokens in the group")
    return min(versions)


def version_spans(token_versions: list[int]) -> list[tuple[int, int]]:
    """Run-length form of one completion's per-token versions: [(version, tokens), ...] in decoding order.
    Example: [0, 0, 1, 1, 1, 3] -> [(0, 2), (1, 3), (3, 1)] (the weights changed twice while it decoded; version 2
    was applied and replaced between two of its tokens, or while it waited for a slot). [] -> []."""
    spans: list[tuple[int, int]] = []
    for v in token_versions:
        if spans and spans[-1][0] == v:
            spans[-1] = (v, spans[-1][1] + 1)
        else:
            if spans and v < spans[-1][0]:
                raise ValueError(f"version_spans: versions go back from {spans[-1][0]} to {v}")
            spans.append((v, 1))
    return spans


def take_groups(versions: list[int], need: int, learner_version: int,
                max_staleness: int | None) -> tuple[list[int], list[int]]:
    """Which arrived groups a step takes: the oldest first (by version; ties in arrival order), the first `need`
    whose staleness (learner_version - version) is at most max_staleness (None: no bound); the stale ones met on the
    way are dropped (the caller regenerates them); the others stay for later steps. Oldest first, because a group
    that waits only grows staler: a long chain that arrives behind short groups of newer versions is trained before
    them rather than left to pass the bound.
    versions: the arrived groups' versions [A], in arrival order. Returns (taken [<= need], dropped) indices into
    versions, each in the order visited.

    Example: versions [2, 0, 3, 3], need 2, learner 3, max_staleness 2 -> visited 1 (v0), 0 (v2), 2 (v3):
    staleness 3, 1, 0 -> taken [0, 2], dropped [1] (index 3 waits for the next step)."""
    if need < 0:
        raise ValueError(f"take_groups: need={need} must be >= 0")
    if max_staleness is not None and max_staleness < 0:
        raise ValueError(f"max_staleness={max_staleness} must be >= 0")
    taken: list[int] = []
    dropped: list[int] = []
    for i in sorted(range(len(versions)), key=lambda i: versions[i]):  # stable: ties keep arrival order
        v = versions[i]
        if len(taken) == need:
            break
        if max_staleness is not None and learner_version - v > max_staleness:
            dropped.append(i)
        else:
            taken.append(i)
    return taken, dropped


def spanning_fraction(token_versions: list[list[int]]) -> float:
    """Share of completions whose tokens come from more than one policy version (the partial rollouts).
    Example: [[0, 0], [0, 1], [2], []] -> 1 of 4 = 0.25."""
    if not token_versions:
        raise ValueError("spanning_fraction of no completions")
    return sum(len(set(row)) > 1 for row in token_versions) / len(token_versions)
