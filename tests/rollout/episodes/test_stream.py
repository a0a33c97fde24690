"""Stream mode through the real rollout worker process, on the long-tail benchmark's paced engine
(rl/bench/long_tail.py): streamed groups equal the batch path's completions when the weights do not change, a push
reaches a running sequence between two decode steps (versions and logprobs per token), groups older than
max_staleness are dropped and regenerated, and evaluation's blocking generate works beside streamed jobs."""
from types import SimpleNamespace

import pytest
import torch

from rl.bench.long_tail import _Encoder, _Scorer
from rl.core.episode import SamplingParams
from rl.rollout.engines.stream_worker import StreamWorker
from rl.rollout.engines.worker import EngineSpec, RolloutWorker
from rl.rollout.episodes.async_rollouts import AsyncRollouts
from rl.rollout.episodes.collect import PromptSampler
from rl.rollout.episodes.stream_rollouts import StreamedRollouts

WEIGHTS = {"w": torch.zeros(16)}


def spec(**kw):
    return EngineSpec(engine="hf", model_path="unused", engine_factory="rl.bench.long_tail:build",
                      engine_kwargs={"step_s": 0.002, "short": 2, "long_factor": 10, "long_frac": 0.3, "slots": 8,
                                     **kw})


def rollouts(cls, worker, k, max_staleness=None):
    sampler = PromptSampler([{"prompt": "", "answer": str(i)} for i in range(1000)], seed=0)
    return cls(worker, _Scorer(), sampler, _Encoder(), lambda step: SamplingParams(n=2, max_tokens=20, seed=step),
               4, async_steps=k, max_staleness=max_staleness)


def by_answer(episodes):
    out = {}
    for e in episodes:
        c = e.completion
        out.setdefault(e.example["answer"], []).append((c.completion_ids, c.logprobs, c.finish_reason))
    return out


def test_streamed_groups_equal_the_batch_path_when_weights_do_not_change():
    """One batch ahead, 4 steps of 4 prompts x 2, no push: every prompt both paths trained on has the same
    completions (ids, logprobs, finish), versions all 0, staleness 0. The batch path trains jobs 1..4 in order; the
    streamed path the first 16 groups to finish among jobs 1..5, so it may take a short group of job 5 before a
    long one of job 4, never a job it has not submitted."""
    results = {}
    for name, cls, worker_cls in (("batch", AsyncRollouts, RolloutWorker), ("stream", StreamedRollouts, StreamWorker)):
        ro = rollouts(cls, worker_cls(spec(), timeout_s=60, start_timeout_s=60), k=1)
        try:
            steps = [ro.episodes_for(s) for s in range(1, 5)]
        finally:
            ro.close()
        results[name] = steps
    batch = by_answer([e for eps, _ in results["batch"] for e in eps])
    stream = by_answer([e for eps, _ in results["stream"] for e in eps])
    assert len(batch) == 16 and len(stream) == 16
    drawn = {ex["answer"] for _, ex in rollouts(AsyncRollouts, None, k=1).sampler.take(20)}  # jobs 1..5
    assert set(stream) <= drawn and set(batch) <= drawn
    shared = set(batch) & set(stream)
    assert len(shared) >= 12
    assert all(stream[a] == batch[a] for a in shared)
    assert any(c[0] for a in shared for c in stream[a])  # something was compared (tokens, not empty lists)
    for eps, metrics in results["stream"]:
        assert {v for e in eps for v in e.completion.versions} == {0}
        assert metrics["rollout/staleness_max"] == 0.0 and metrics["rollout/dropped_groups"] == 0.0
        assert len({e.group_id for e in eps}) == 4 and len(eps) == 8


def test_a_push_reaches_a_running_sequence_between_decode_steps():
    """Job A: one prompt, 100 tokens (0.02 s a step: 2 s); job B: one prompt, 2 tokens. B's group comes back while A
    decodes; then version 1 is pushed: A continues with it. A's tokens: versions 0 ... 0 1 ... 1 (the switch after
    B's 2 tokens, well before A's 100th), each token's logprob the one its version samples with (the paced engine:
    -0.5 - 0.01 x pushes applied)."""
    w = StreamWorker(spec(step_s=0.02, short=None), timeout_s=60, start_timeout_s=60)
    try:
        a = w.submit([[5]], SamplingParams(n=1, max_tokens=100))
        b = w.submit([[6]], SamplingParams(n=2, max_tokens=2))
        job, prompt, group, _, _ = w.next_group()
        assert (job, prompt, [c.versions for c in group]) == (b, 0, [[0, 0], [0, 0]])
        w.push_weights(1, WEIGHTS.items())
        job, prompt, group, idle_s, busy_s = w.next_group()
        versions, logprobs = group[0].versions, group[0].logprobs
        assert job == a and len(versions) == 100 and busy_s > 0 and idle_s >= 0
        switch = versions.index(1)
        assert 2 <= switch < 100 and versions == [0] * switch + [1] * (100 - switch)
        assert logprobs == [-0.5 - 0.01 * v for v in versions]
    finally:
        w.close()


def test_groups_older_than_max_staleness_are_dropped_and_regenerated():
    """max_staleness 0 with a push every step: a group sampled (even partly) before the last push is dropped and
    its prompt submitted again; every step still trains 4 groups, all of the learner's own version."""
    ro = rollouts(StreamedRollouts, StreamWorker(spec(), timeout_s=60, start_timeout_s=60), k=1, max_staleness=0)
    dropped = []
    try:
        for step in range(1, 5):
            eps, metrics = ro.episodes_for(step)
            assert len({e.group_id for e in eps}) == 4
            assert metrics["rollout/staleness_max"] == 0.0
            assert {e.policy_version for e in eps} == {step - 1}
            assert all(v == step - 1 for e in eps for v in e.completion.versions)
            dropped.append(metrics["rollout/dropped_groups"])
            ro.push(WEIGHTS.items(), step)
    finally:
        ro.close()
    assert dropped[0] == 0 and sum(dropped) > 0  # job 2's groups finished with version 0 before step 2


def test_a_prompt_dropped_twice_is_counted_and_noticed_once(capsys):
    """Long chains (20 decode steps of 0.01 s: 0.2 s) against a push every 0.05 s with max_staleness 0: a long
    prompt's group always holds a token older than the last push, so it is dropped at every try. From its second
    drop on it counts in `rollout/redropped_groups`, and one line (once per run) says training leaves long
    completions out. The steps still complete on the short groups."""
    import time
    ro = rollouts(StreamedRollouts, StreamWorker(spec(step_s=0.01, long_frac=0.5), timeout_s=60, start_timeout_s=60),
                  k=1, max_staleness=0)
    redropped = []
    try:
        for step in range(1, 7):
            eps, metrics = ro.episodes_for(step)
            assert len({e.group_id for e in eps}) == 4
            redropped.append(metrics["rollout/redropped_groups"])
            time.sleep(0.05)  # the learner's step
            ro.push(WEIGHTS.items(), step)
    finally:
        ro.close()
    assert redropped[0] == 0 and sum(redropped) > 0
    notices = [line for line in capsys.readouterr().out.splitlines() if "dropped twice for staleness" in line]
    assert len(notices) == 1 and "raise rollout.max_staleness" in notices[0]


def test_evaluation_generate_beside_streamed_jobs():
    """A blocking generate (evaluation) returns its own job's groups in prompt order; the groups of a job submitted
    before it stay queued for next_group."""
    w = StreamWorker(spec(short=None), timeout_s=60, start_timeout_s=60)
    try:
        train = w.submit([[7], [8]], SamplingParams(n=2, max_tokens=3))
        groups = w.generate([[9], [10], [11]], SamplingParams(n=1, max_tokens=2, greedy=True))
        assert [g[0].completion_ids[0] for g in groups] == [2 + (7 * p) % 50 for p in (9, 10, 11)]
        assert sorted(w.next_group()[:2] for _ in range(2)) == [(train, 0), (train, 1)]
        assert w.generate([], SamplingParams(n=1)) == []  # a rank with no evaluation prompts
        with pytest.raises(RuntimeError, match="returns groups"):
            w.result(train)
    finally:
        w.close()


def test_an_engine_that_cannot_stream_says_so():
    from rl.rollout.engines.stream_worker import streaming_engine
    with pytest.raises(RuntimeError, match="HFEngine cannot stream"):
        streaming_engine(type("HFEngine", (), {})())
    assert streaming_engine(SimpleNamespace(submit=1, step=2)).submit == 1
