"""Collation masks and DAPO dynamic sampling, with a scripted engine and scorer (no model)."""
import threading
from types import SimpleNamespace

import pytest
import torch

from rl.core.collate import collate, position_ids
from rl.rollout.episodes.collect import PromptEncoder, PromptSampler, collect_episodes, drop_overlong_prompts
from rl.core.episode import Completion, Episode, SamplingParams


def test_collate_layout_and_truncation_mask():
    eos, pad = 2, 0
    eps = [Episode(0, {}, Completion([5, 6], [7, 8, eos], "a", "stop", [-.1, -.2, -.3]), advantage=1.0),
           Episode(0, {}, Completion([4], [9], "b", "length", [-.5]), advantage=-1.0)]
    b = collate(eps, pad)
    assert b.input_ids.tolist() == [[5, 6, 7, 8, eos], [pad, 4, 9, pad, pad]]
    assert b.attention_mask.tolist() == [[1, 1, 1, 1, 1], [0, 1, 1, 0, 0]]
    assert b.completion_mask.tolist() == [[1, 1, 1], [1, 0, 0]]
    torch.testing.assert_close(b.sampling_logprobs, torch.tensor([[-.1, -.2, -.3], [-.5, 0, 0]]))
    # positions count real tokens: row 2's prompt token is position 0 despite the left pad (right pads are masked)
    assert position_ids(b.attention_mask).tolist() == [[0, 1, 2, 3, 4], [0, 0, 1, 1, 1]]
    masked = collate(eps, pad, mask_truncated_completions=True)
    assert masked.completion_mask.tolist() == [[1, 1, 1], [0, 0, 0]]  # the cut-off completion does not count


class ScriptedEngine:
    """Completion text = "ok" or "no"; a prompt whose id is even gets a mixed group, odd ones all "no"."""

    def generate(self, prompts, params):
        out = []
        for p in prompts:
            texts = ["ok" if (p[0] % 2 == 0 and k % 2 == 0) else "no" for k in range(params.n)]
            out.append([Completion(p, [1], t, "stop", [0.0]) for t in texts])
        return out


class ScriptedScorer:
    def score(self, completions, columns):
        totals = [1.0 if c == "ok" else 0.0 for c in completions]
        return SimpleNamespace(totals=totals, per_reward={"accuracy": totals}, metrics={"rewards/accuracy/mean": 0.0})


class IdEncoder:
    """Prompt = [the example's id]; nothing is ever truncated."""

    def __call__(self, index, example):
        return [example["id"]]

    def count_cut(self, batch):
        return 0


encoder = IdEncoder()


def test_dynamic_sampling_keeps_only_informative_groups():
    examples = [{"prompt": str(i), "answer": "", "id": i} for i in range(40)]
    sampler = PromptSampler(examples, seed=0)
    episodes, metrics = collect_episodes(ScriptedEngine(), ScriptedScorer(), sampler, encoder,
                                         SamplingParams(n=4), prompts_per_step=4, dynamic_sampling=True, max_rounds=5)
    assert len(episodes) == 16
    groups = [episodes[i:i + 4] for i in range(0, 16, 4)]
    assert all(len({e.reward_total for e in g}) == 2 for g in groups)  # every kept group has reward variance
    assert all(g[0].example["id"] % 2 == 0 for g in groups)
    assert 0 < metrics["dynamic_sampling/dropped_frac"] < 1


def test_dynamic_sampling_is_bounded_and_fills_with_dropped_groups():
    examples = [{"prompt": str(i), "answer": "", "id": 2 * i + 1} for i in range(40)]  # all odd: no signal at all
    sampler = PromptSampler(examples, seed=0)
    episodes, metrics = collect_episodes(ScriptedEngine(), ScriptedScorer(), sampler, encoder,
                                         SamplingParams(n=4), prompts_per_step=2, dynamic_sampling=True, max_rounds=3)
    assert len(episodes) == 8  # the batch keeps its shape (A = 0 for these groups)
    assert metrics["dynamic_sampling/rounds"] == 3.0 and metrics["dynamic_sampling/dropped_frac"] == 1.0
    assert sampler.position == 6  # 3 rounds x 2 prompts drawn, not more


def test_sampler_ranks_are_disjoint_and_resumable():
    examples = [{"prompt": str(i)} for i in range(10)]
    a, b = PromptSampler(examples, 1, rank=0, world_size=2), PromptSampler(examples, 1, rank=1, world_size=2)
    ia, ib = [i for i, _ in a.take(3)], [i for i, _ in b.take(3)]
    assert not set(ia) & set(ib) and a.position == b.position == 6
    resumed = PromptSampler(examples, 1, rank=0, world_size=2, position=a.position)
    assert [i for i, _ in resumed.take(2)] == [i for i, _ in a.take(2)]


class ThreadExchange:
    """Stands in for the all-gather of per-rank counts: W threads, one per rank, meet at a barrier."""

    def __init__(self, world):
        self.barrier, self.slots = threading.Barrier(world, timeout=30), [None] * world

    def for_rank(self, rank):
        def gather(n):
            self.slots[rank] = n
            self.barrier.wait()
            counts = list(self.slots)
            self.barrier.wait()
            return counts
        return gather


def run_ranks(world, steps, examples, positions=None):
    """`steps` dynamic-sampling steps on `world` lock-step ranks; returns per rank (drawn indices, final position)."""
    exchange = ThreadExchange(world)
    results = [None] * world

    def rank_main(rank):
        sampler = PromptSampler(examples, seed=3, rank=rank, world_size=world,
                                position=positions[rank] if positions else 0, gather_counts=exchange.for_rank(rank))
        drawn, calls = [], []
        take = sampler.take
        sampler.take = lambda n: (lambda got: (drawn.extend(i for i, _ in got), got)[1])(take(n))
        engine = ScriptedEngine()
        generate = engine.generate
        engine.generate = lambda prompts, params: (calls.append(len(prompts)), generate(prompts, params))[1]
        for _ in range(steps):
            collect_episodes(engine, ScriptedScorer(), sampler, encoder, SamplingParams(n=4),
                             prompts_per_step=3, dynamic_sampling=True, max_rounds=4)
        results[rank] = (drawn, sampler.position, calls)

    threads = [threading.Thread(target=rank_main, args=(r,)) for r in range(world)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return results


def test_dynamic_sampling_ranks_draw_disjoint_prompts_and_stay_in_step():
    """Ranks drop different groups (so they refill different counts): they must still never draw the same prompt,
    and keep one shared position, so that rank 0's saved position resumes both. Before the exchange each rank
    advanced by its own count times W, and the streams overlapped."""
    examples = [{"prompt": str(i), "answer": "", "id": i} for i in range(500)]  # even ids informative, odd not
    (d0, p0, calls0), (d1, p1, calls1) = run_ranks(2, steps=4, examples=examples)
    assert len(d0) != len(d1)  # the ranks did need different numbers of prompts
    # ... and still called the engine equally often (a full rank with no prompts too): decoding a sharded model is
    # collective, a rank that skipped a call would leave the other waiting forever
    assert len(calls0) == len(calls1) and 0 in calls0 + calls1
    assert not set(d0) & set(d1)
    assert len(set(d0)) == len(d0) and len(set(d1)) == len(d1)
    assert p0 == p1 == len(d0) + len(d1)  # nothing skipped, nothing drawn twice
    # resume both ranks from rank 0's position: the next step draws what an uninterrupted run draws next
    (straight0, _, _), (straight1, _, _) = run_ranks(2, steps=5, examples=examples)
    (next0, _, _), (next1, _, _) = run_ranks(2, steps=1, examples=examples, positions=[p0, p0])
    assert straight0[len(d0):] == next0 and straight1[len(d1):] == next1


class ThreadGather(ThreadExchange):
    """Stands in for accelerator.gather of a [N] tensor: concatenation in rank order."""

    def for_rank(self, rank):
        def gather(t):
            self.slots[rank] = t
            self.barrier.wait()
            out = torch.cat(list(self.slots))
            self.barrier.wait()
            return out
        return gather


@pytest.mark.parametrize("estimator", ["group", "batch", "none"])
def test_advantages_do_not_depend_on_how_the_batch_is_split(estimator):
    """2 ranks x 4 groups == 1 rank x 8 groups: the advantages and their metrics are those of the global batch."""
    from rl.core.advantages import get_advantage_fn
    from rl.rollout.episodes.collect import step_advantages
    g = torch.Generator().manual_seed(0)
    totals = (torch.randint(0, 3, (32,), generator=g) * 0.5).tolist()  # 8 groups of 4, rewards in {0, .5, 1}
    episodes = [Episode(i // 4, {}, Completion([1], [1], "", "stop", [0.0]), reward_total=r)
                for i, r in enumerate(totals)]
    fn = get_advantage_fn(estimator)
    whole, whole_metrics = step_advantages(episodes, fn, 4)
    exchange, results = ThreadGather(2), [None, None]

    def rank_main(rank):
        results[rank] = step_advantages(episodes[rank * 16:(rank + 1) * 16], fn, 4, exchange.for_rank(rank), rank)
    threads = [threading.Thread(target=rank_main, args=(r,)) for r in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    split = torch.cat([results[0][0], results[1][0]])
    torch.testing.assert_close(split, whole, rtol=0, atol=0)
    assert results[0][1] == results[1][1] == whole_metrics
    if estimator == "batch":  # what each rank alone would compute: a different std, different advantages
        alone, _ = step_advantages(episodes[:16], fn, 4)
        assert (alone - whole[:16]).abs().max() > 1e-3


class WordTokenizer:
    """One token per whitespace-separated word (what prompt_token_ids calls for the `plain` template)."""

    def __call__(self, text, add_special_tokens=False):
        return {"input_ids": [len(w) for w in text.split()]}


@pytest.mark.parametrize("lengths, limit, kept, dropped", [
    ([3, 9, 5, 6], 5, [0, 2], 2),   # 9 and 6 are over 5; 5 fits exactly
    ([1, 2], 2, [0, 1], 0),
    ([7, 8], 6, [], 2),
])
def test_drop_overlong_prompts(lengths, limit, kept, dropped):
    rows = [{"prompt": " ".join(["w"] * n), "i": i} for i, n in enumerate(lengths)]
    enc = PromptEncoder(WordTokenizer(), "plain", None, limit)
    got, n = drop_overlong_prompts(rows, enc.length, limit)
    assert [r["i"] for r in got] == kept and n == dropped


def test_prompts_cut_at_max_prompt_length_are_counted_every_step():
    """Issue 25 item 9: each step reports how many of its prompts were cut (rollout/prompts_truncated), including
    prompts encoded (and cut) in an earlier step: the cache must not hide them. Prompts of 2, 6, 3, 7 words, limit 4:
    examples 1 and 3 are cut, each time they are drawn."""
    examples = [{"prompt": " ".join(["w"] * n), "answer": ""} for n in (2, 6, 3, 7)]
    enc = PromptEncoder(WordTokenizer(), "plain", None, max_prompt_length=4)
    sampler = PromptSampler(examples, seed=0)
    per_step = []
    for _ in range(3):  # 2 prompts per step: the first two steps are one epoch (all 4 examples), the third repeats
        drawn_before = sampler.position
        _, metrics = collect_episodes(ScriptedEngine(), ScriptedScorer(), sampler, enc, SamplingParams(n=2),
                                      prompts_per_step=2, dynamic_sampling=False, max_rounds=1)
        order = [i for i, _ in PromptSampler(examples, seed=0, position=drawn_before).take(2)]
        per_step.append((order, metrics["rollout/prompts_truncated"]))
    # seed 0's order: [2, 0], [1, 3] (one epoch), then [3, 0]; the long ones are indices 1 and 3. Step 3's 3 was cut
    # in step 2 and comes from the cache: it still counts.
    assert per_step == [([2, 0], 0.0), ([1, 3], 2.0), ([3, 0], 1.0)]
    assert enc.truncated == 2 and all(len(ids) <= 4 for ids in enc.cache.values())
    assert enc.cache[3] == [1, 1, 1, 1]  # kept from the right: the last 4 words


class InlineWorker:
    """A RolloutWorker's interface, generating at submit time with the scripted engine (version 0)."""

    def __init__(self):
        self.jobs = []

    def submit(self, prompts, params):
        self.jobs.append(ScriptedEngine().generate(prompts, params))
        return len(self.jobs) - 1

    def result(self, job):
        return self.jobs[job], 0, 0.0


def test_async_rollouts_count_cut_prompts_per_step_too():
    """The async path (rl/rollout/episodes/async_rollouts.py) reports rollout/prompts_truncated for the batch it returns,
    not for the batches submitted ahead. Same data as above: steps draw [2, 0], [1, 3], [3, 0] -> 0, 2, 1."""
    from rl.rollout.episodes.async_rollouts import AsyncRollouts
    examples = [{"prompt": " ".join(["w"] * n), "answer": ""} for n in (2, 6, 3, 7)]
    enc = PromptEncoder(WordTokenizer(), "plain", None, max_prompt_length=4)
    rollouts = AsyncRollouts(InlineWorker(), ScriptedScorer(), PromptSampler(examples, seed=0), enc,
                             lambda step: SamplingParams(n=2), prompts_per_step=2, async_steps=1)
    assert [rollouts.episodes_for(s)[1]["rollout/prompts_truncated"] for s in (1, 2, 3)] == [0.0, 2.0, 1.0]


class VersionedWorker:
    """A RolloutWorker's interface that runs its commands in order, as the real one: a job is generated with the
    version of the last push submitted before it (the scripted engine's completions)."""

    def __init__(self):
        self.jobs, self.version, self.submitted = [], 0, []

    def submit(self, prompts, params):
        self.jobs.append((ScriptedEngine().generate(prompts, params), self.version))
        self.submitted.append(len(prompts))
        return len(self.jobs) - 1

    def push_weights(self, version, weights):
        self.version = version

    def result(self, job):
        groups, version = self.jobs[job]
        return [list(g) for g in groups], version, 0.0


@pytest.mark.parametrize("async_steps, max_staleness, staleness, dropped", [
    # steps 1..5, versions pushed after each step. async 1: batch s generated with v max(0, s - 2): staleness
    # 0, 1, 1, 1, 1 (k = 1 never drops)
    (1, 1, [0, 1, 1, 1, 1], [0] * 5),
    (1, None, [0, 1, 1, 1, 1], [0] * 5),
    # async 2: batch s with v max(0, s - 3): staleness 0, 1, 2, 2, 2; k = 2 keeps all
    (2, 2, [0, 1, 2, 2, 2], [0] * 5),
    # async 2 with k = 1: from step 3 every group is 2 stale -> both groups dropped, regenerated with v s - 1
    (2, 1, [0, 1, 0, 0, 0], [0, 0, 2, 2, 2]),
    # k = 0: nothing older than the learner; async 1 -> every batch after the first regenerated
    (1, 0, [0, 0, 0, 0, 0], [0, 2, 2, 2, 2]),
])
def test_async_rollouts_bound_staleness(async_steps, max_staleness, staleness, dropped):
    from rl.rollout.episodes.async_rollouts import AsyncRollouts
    examples = [{"prompt": "", "answer": "", "id": i} for i in range(40)]
    worker = VersionedWorker()
    rollouts = AsyncRollouts(worker, ScriptedScorer(), PromptSampler(examples, seed=0), IdEncoder(),
                             lambda step: SamplingParams(n=2), prompts_per_step=2, async_steps=async_steps,
                             max_staleness=max_staleness)
    got_staleness, got_dropped = [], []
    for step in range(1, 6):
        episodes, metrics = rollouts.episodes_for(step)
        assert len(episodes) == 4 and {e.group_id for e in episodes} == {0, 1}
        assert metrics["rollout/staleness_max"] == max(rollouts.version - e.policy_version for e in episodes)
        got_staleness.append(metrics["rollout/staleness_max"])
        got_dropped.append(metrics["rollout/dropped_groups"])
        rollouts.push(None, step)
    assert got_staleness == staleness and got_dropped == dropped
    # prompts submitted: the 5 + async_steps batches of 2, and one more prompt per dropped group
    assert sum(worker.submitted) == 2 * (5 + async_steps) + sum(dropped)
