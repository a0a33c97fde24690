"""Sharded greedy evaluation (rl/rollout/episodes/evaluation.py, rl/grpo.py `Run.evaluate`): each rank generates its share,
the results are gathered in rank order, and the metrics do not depend on the number of processes. The ranks are
threads here, their all-gather a barrier; tests/e2e/test_sharded_eval.py runs the real thing on 2 gloo processes."""
from __future__ import annotations

import threading
from types import SimpleNamespace

import pytest

from rl.core.episode import Completion
from rl.rollout.episodes.evaluation import evaluate_greedy, greedy_metrics, shard_bounds


@pytest.mark.parametrize("n, world, expected", [
    (5, 1, [(0, 5)]),
    (5, 2, [(0, 3), (3, 5)]),                  # 5 = 3 + 2: the first 5 % 2 = 1 rank takes one more
    (6, 3, [(0, 2), (2, 4), (4, 6)]),
    (7, 3, [(0, 3), (3, 5), (5, 7)]),          # 7 = 3 + 2 + 2
    (2, 4, [(0, 1), (1, 2), (2, 2), (2, 2)]),  # more ranks than problems: the last ones get none
    (0, 2, [(0, 0), (0, 0)]),
])
def test_shard_bounds_tile_the_set_in_rank_order(n, world, expected):
    assert [shard_bounds(n, r, world) for r in range(world)] == expected


def test_shard_bounds_rejects_a_rank_outside_the_world():
    with pytest.raises(ValueError, match="rank 2 outside a world of 2 processes"):
        shard_bounds(5, 2, 2)


class EchoEngine:
    """Greedy 'decoding' that depends on the prompt alone: the completion is "<answer> {prompt id} </answer>", of
    length = prompt id % 4 + 1, cut ("length") when the id is a multiple of 3. Records every prompt it is given."""

    def __init__(self):
        self.seen: list[list[int]] = []

    def generate(self, prompts, params):
        assert params.greedy and params.n == 1
        self.seen.extend(prompts)
        return [[Completion(list(p), [7] * (p[0] % 4 + 1), f"<answer> {p[0]} </answer>",
                            "length" if p[0] % 3 == 0 else "stop", [0.0] * (p[0] % 4 + 1))] for p in prompts]


def encoder(key, example):  # ("eval", i) -> the example's own id as its one-token prompt
    assert key[0] == "eval"
    return [example["id"]]


def accuracy(completions, answer, **columns):  # right when the id is even; "cannot judge" (None) at id 5
    assert len(columns["id"]) == len(completions)
    return [None if a == "5" else float(c == f"<answer> {a} </answer>" and int(a) % 2 == 0)
            for c, a in zip(completions, answer)]


def fmt(completions, answer, **columns):
    return [1.0 if int(a) < 4 else 0.0 for a in answer]


REWARDS = {"accuracy": accuracy, "format": fmt}
EXAMPLES = [{"prompt": f"p{i}", "answer": str(i), "id": i} for i in range(1, 8)]  # ids 1..7


def thread_ranks(world: int, body):
    """Run body(rank, gather) for rank 0..world-1 in threads whose `gather` is an all-gather in rank order."""
    parts, barrier, results, errors = [None] * world, threading.Barrier(world, timeout=30), [None] * world, []

    def run(rank):
        def gather(items):
            parts[rank] = list(items)
            barrier.wait()
            return [x for part in parts for x in part]
        try:
            results[rank] = body(rank, gather)
        except BaseException as e:  # noqa: BLE001 - re-raised in the test's thread
            errors.append(e)
            barrier.abort()

    threads = [threading.Thread(target=run, args=(r,)) for r in range(world)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return results


def test_greedy_metrics_by_hand():
    # ids 1..7: accuracy [0, 1, 0, 1, None, 1, 0] -> 3/7; format (id < 4) 3/7; lengths id % 4 + 1 =
    # [2, 3, 4, 1, 2, 3, 4] -> 19/7; truncated at ids 3 and 6 -> 2/7
    metrics, rows = evaluate_greedy(EchoEngine(), encoder, EXAMPLES, 8, REWARDS)
    assert metrics["eval/accuracy"] == pytest.approx(3 / 7)
    assert metrics["eval/format"] == pytest.approx(3 / 7)
    assert metrics["eval/completion_len"] == pytest.approx(19 / 7)
    assert metrics["eval/truncated_frac"] == pytest.approx(2 / 7)
    assert [r["accuracy"] for r in rows] == [0.0, 1.0, 0.0, 1.0, None, 1.0, 0.0]
    # greedy_metrics' docstring example: accuracy (1 + 0 + 0 + 1) / 4, lengths (10 + 20 + 30 + 40) / 4 = 25
    records = [{"completion": "x", "completion_len": n, "truncated": t, "accuracy": a, "format": f}
               for n, t, a, f in [(10, False, 1.0, 1), (20, False, None, 1), (30, False, 0.0, 0), (40, True, 1.0, 0)]]
    m = greedy_metrics(records)
    assert (m["eval/accuracy"], m["eval/format"], m["eval/completion_len"], m["eval/truncated_frac"]) == \
        (0.5, 0.5, 25.0, 0.25)


@pytest.mark.parametrize("world", [2, 3, 8])  # 8 ranks for 7 problems: the last rank has none
def test_sharded_evaluation_equals_one_process(world):
    one_metrics, one_rows = evaluate_greedy(EchoEngine(), encoder, EXAMPLES, 8, REWARDS)
    engines = [EchoEngine() for _ in range(world)]
    results = thread_ranks(world, lambda rank, gather: evaluate_greedy(engines[rank], encoder, EXAMPLES, 8, REWARDS,
                                                                       rank=rank, world=world, gather=gather))
    for rank, (metrics, rows) in enumerate(results):
        lo, hi = shard_bounds(len(EXAMPLES), rank, world)
        assert engines[rank].seen == [[i + 1] for i in range(lo, hi)]  # its own share, nothing else
        assert metrics == one_metrics
        assert rows == one_rows  # every problem's completion and scores, in the original order


def test_several_ranks_without_a_gather_is_an_error():
    with pytest.raises(ValueError, match="rank 0 of 2 needs `gather`"):
        evaluate_greedy(EchoEngine(), encoder, EXAMPLES, 8, REWARDS, rank=0, world=2)


class Logger:
    def __init__(self):
        self.lines, self.completions = [], []

    def log(self, metrics, step):
        self.lines.append((step, metrics))

    def log_completions(self, rows, step):
        self.completions.append((step, rows))


def grpo_run(rank: int, world: int):
    from rl.grpo_run import Run
    accelerator = SimpleNamespace(process_index=rank, num_processes=world, is_main_process=rank == 0,
                                  wait_for_everyone=lambda: None)
    cfg = SimpleNamespace(rollout=SimpleNamespace(max_completion_length=8), logging=SimpleNamespace(log_completions=7))
    return Run(cfg=cfg, accelerator=accelerator, out=None, tokenizer=None, learner=None, engine=EchoEngine(),
               encoder=encoder, sampler=None, scorer=None, logger=Logger(), test_rows=EXAMPLES, eval_rewards=REWARDS,
               lockstep=False)


def test_grpo_evaluation_is_sharded_across_ranks(monkeypatch):
    """GRPO's periodic evaluation on 2 ranks: rank 0 generates problems 1-4, rank 1 problems 5-7 (before: rank 0
    generated all 7 while rank 1 waited in a barrier), and both get the 1-process metrics."""
    from rl.train import distributed
    one = grpo_run(0, 1)
    one_metrics = one.evaluate(10)
    runs = [grpo_run(r, 2) for r in range(2)]
    local = threading.local()

    def body(rank, gather):
        local.gather = gather
        return runs[rank].evaluate(10)

    monkeypatch.setattr(distributed, "gather_objects", lambda items: local.gather(items))
    results = thread_ranks(2, body)
    assert [run.engine.seen for run in runs] == [[[1], [2], [3], [4]], [[5], [6], [7]]]
    assert results == [one_metrics, one_metrics]
    assert runs[0].logger.lines == one.logger.lines == [(10, one_metrics)]
    assert runs[0].logger.completions == one.logger.completions  # the eval rows of all 7 problems, in order
