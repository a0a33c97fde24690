"""RewardScorer: spec validation, weighted totals and metrics, worker pool (chunks, timeouts, hung and dead workers)."""
from __future__ import annotations

import math
import multiprocessing
import time

import pytest

from rewards import RewardScorer, validate_reward_spec

SPEC = {"accuracy": 1.0, "format": {"weight": 0.5}, "tag_count": 0.25, "cosine": {"weight": 1.0, "max_len": 100},
        "countdown": 2.0}
GOOD = "<think> 2+2 </think> <answer> 4 </answer>"
BATCH = [GOOD, "<answer> 5 </answer>", "<think> x </think> <answer> 4 </answer>", "<answer> (6+4)*3 </answer>",
         [{"role": "assistant", "content": GOOD}], None]
COLUMNS = {"answer": ["4", "4", "{", "4", "4", "4"], "nums": [[6, 4, 3]] * 6, "target": [30] * 6,
           "completion_length": [50, 50, 50, 50, 100, 0], "trainer_state": object()}
# Hand-derived per reward (cosine with max_len=100: correct L=50 -> 0.75, L=100 -> 0.5; wrong L=50 -> -0.75, L=0 -> -1)
EXPECTED = {
    "accuracy": [1.0, 0.0, None, 0.0, 1.0, 0.0],
    "format": [1.0, 0.0, 1.0, 0.0, 1.0, 0.0],
    "tag_count": [1.0, 0.5, 1.0, 0.5, 1.0, 0.0],
    "cosine": [0.75, -0.75, None, -0.75, 0.5, -1.0],
    "countdown": [0.0, 0.0, 0.0, 1.0, 0.0, 0.0],
}
# totals = 1*acc + 0.5*format + 0.25*tags + 1*cosine + 2*countdown (None -> 0)
TOTALS = [1 + 0.5 + 0.25 + 0.75, 0.125 - 0.75, 0.5 + 0.25, 0.125 - 0.75 + 2, 1 + 0.5 + 0.25 + 0.5, -1.0]


@pytest.fixture(scope="module")
def pooled():
    with RewardScorer(SPEC, num_workers=2, timeout_s=0.5) as scorer:
        scorer.score(["<answer>1</answer>"], {"answer": ["1"], "nums": [[1]], "target": [1]})  # start + warm up
        yield scorer


def _check(res):
    for name, values in EXPECTED.items():
        assert res.per_reward[name] == [None if v is None else pytest.approx(v) for v in values], name
    assert res.totals == [pytest.approx(t) for t in TOTALS]
    m = res.metrics
    assert m["rewards/accuracy/mean"] == pytest.approx(2 / 5)  # mean over the 5 non-None
    assert m["rewards/accuracy/none_frac"] == pytest.approx(1 / 6)
    assert m["rewards/format/mean"] == pytest.approx(0.5)
    assert m["rewards/cosine/none_frac"] == pytest.approx(1 / 6)
    assert all(m[f"rewards/{n}/timeouts"] == 0 for n in SPEC)
    assert m["time/score_s"] > 0 and all(m[f"rewards/{n}/time_s"] >= 0 for n in SPEC)


def test_in_process_values_and_metrics():
    with RewardScorer(SPEC, num_workers=0) as scorer:
        assert scorer.names == list(SPEC) and scorer.weights["format"] == 0.5 and scorer.weights["cosine"] == 1.0
        _check(scorer.score(BATCH, COLUMNS))


def test_pool_gives_the_same_values(pooled):
    assert pooled.worker_names == ["accuracy", "cosine", "countdown"]  # cheap ones run in the parent
    _check(pooled.score(BATCH, COLUMNS))


def test_pool_is_reused_across_calls(pooled):
    pids = [w.proc.pid for w in pooled.pool.workers]
    pooled.score(BATCH, COLUMNS)
    assert [w.proc.pid for w in pooled.pool.workers] == pids


def test_init_validates_without_starting_processes():
    before = set(p.pid for p in multiprocessing.active_children())
    scorer = RewardScorer(SPEC, num_workers=2)
    assert scorer._pool is None and set(p.pid for p in multiprocessing.active_children()) == before
    scorer.close()


@pytest.mark.parametrize("spec,match", [
    ({}, "non-empty mapping"),
    ([("accuracy", 1.0)], "non-empty mapping"),
    ({"acuracy": 1.0}, "unknown reward 'acuracy'; valid: accuracy, format"),
    ({"accuracy": "high"}, "weight of 'accuracy' must be a finite number"),
    ({"accuracy": float("nan")}, "weight of 'accuracy'"),
    ({"format": {"weight": 1.0, "prefiled_think": True}}, "reward 'format': unknown parameter 'prefiled_think'"),
    ({"repetition": {"max_penalty": 1.0}}, "reward 'repetition': parameter 'max_penalty' must be <= 0"),
    ({"my_pkg.nowhere:fn": 1.0}, "unknown reward 'my_pkg.nowhere:fn'"),
])
def test_bad_specs(spec, match):
    with pytest.raises(ValueError, match=match):
        validate_reward_spec(spec)
    with pytest.raises(ValueError, match=match):
        RewardScorer(spec)


def test_validate_good_spec_and_scorer_args():
    validate_reward_spec({"accuracy": 1, "reward_test_helpers:scaled_length": {"weight": 0.1, "scale": 2}})
    for kwargs, match in [({"num_workers": -1}, "num_workers"), ({"timeout_s": 0}, "timeout_s"),
                          ({"max_chars": 0}, "max_chars")]:
        with pytest.raises(ValueError, match=match):
            RewardScorer({"format": 1.0}, **kwargs)


HOSTILE = [
    "a " * 500_000 + "<answer> 4 </answer>",  # 1 MB: capped to its tail
    "\\boxed{" + "{" * 10_000 + "4" + "}" * 10_000 + "}",
    "<answer>" + "\\frac{1}{" * 200 + "2" + "}" * 200 + "</answer>",
    "<answer>9^{9^{9^{9}}}</answer>",
    "<answer>" + "9" * 100_000 + "</answer>",
    "\uff1canswer\uff1e4\uff1c/answer\uff1e",
    "",
    None,
    GOOD,
]


def test_hostile_batch_through_the_pool(pooled):
    n = len(HOSTILE)
    cols = {"answer": ["4"] * n, "nums": [[1, 2]] * n, "target": [3] * n, "completion_length": [10] * n}
    start = time.perf_counter()
    res = pooled.score(HOSTILE, cols)
    assert time.perf_counter() - start < 4.0
    acc = res.per_reward["accuracy"]
    assert acc[0] == 1.0 and acc[-1] == 1.0  # the 1 MB one has its answer in the kept tail
    assert acc[1:-1] == [0.0] * (n - 2)
    assert res.metrics["rewards/accuracy/timeouts"] >= 1  # the power tower at least; timeouts score 0
    assert res.metrics["rewards/accuracy/errors"] == 0
    assert all(isinstance(t, float) and math.isfinite(t) for t in res.totals)
    _check(pooled.score(BATCH, COLUMNS))  # and the pool still works


def test_worker_stuck_in_c_is_killed_and_replaced():
    spec = {"reward_test_helpers:hang_in_c": 1.0}
    with RewardScorer(spec, num_workers=2, timeout_s=0.3) as scorer:
        texts = [f"item {i}" for i in range(20)]
        texts[7] = "HANG"
        res = scorer.score(texts, {})
        assert res.per_reward["reward_test_helpers:hang_in_c"] == [1.0] * 7 + [0.0] + [1.0] * 12  # chunk re-run item by item
        assert res.metrics["rewards/reward_test_helpers:hang_in_c/timeouts"] == 1
        assert scorer.pool.replaced == 1
        assert scorer.score(["a", "b"], {}).totals == [1.0, 1.0]  # the pool keeps working


def test_python_runaway_times_out_in_the_worker():
    with RewardScorer({"reward_test_helpers:spin_in_python": 1.0}, num_workers=1, timeout_s=0.3) as scorer:
        res = scorer.score(["a", "SPIN", "b"], {})
        assert res.per_reward["reward_test_helpers:spin_in_python"] == [1.0, 0.0, 1.0]
        assert res.metrics["rewards/reward_test_helpers:spin_in_python/timeouts"] == 1
        assert scorer.pool.replaced == 0  # the worker's own deadline caught it, no kill needed


def test_crashing_and_raising_rewards_score_zero_and_are_counted():
    with RewardScorer({"reward_test_helpers:crash": 1.0}, num_workers=1, timeout_s=1.0) as scorer:
        res = scorer.score(["a", "CRASH", "RAISE", "b"], {})
        name = "reward_test_helpers:crash"  # results and metrics are keyed by the spec's name
        assert res.per_reward[name] == [1.0, 0.0, 0.0, 1.0]
        assert res.metrics[f"rewards/{name}/errors"] == 2 and res.metrics[f"rewards/{name}/timeouts"] == 0


def test_in_process_mode_still_times_out_and_caps():
    with RewardScorer({"accuracy": 1.0}, num_workers=0, timeout_s=0.5, max_chars=100) as scorer:
        res = scorer.score(["<answer>9^{9^{9^{9}}}</answer>", "x" * 1000 + "<answer> 4 </answer>",
                            "<answer> 4 </answer>" + "x" * 1000], {"answer": ["4"] * 3})
        # the second keeps its answer within the last 100 chars; the third loses it to the cap
        assert res.per_reward["accuracy"] == [0.0, 1.0, 0.0]
        assert res.metrics["rewards/accuracy/timeouts"] == 1


def test_user_reward_by_import_path_runs_in_workers():
    spec = {"reward_test_helpers:scaled_length": {"weight": 0.5, "scale": 2.0}, "format": 1.0}
    with RewardScorer(spec, num_workers=1) as scorer:
        assert scorer.worker_names == ["reward_test_helpers:scaled_length"]
        res = scorer.score(["abc", GOOD], {})
        assert res.per_reward["reward_test_helpers:scaled_length"] == [6.0, 2.0 * len(GOOD)]
        assert res.totals == [3.0, len(GOOD) + 1.0]


def test_empty_batch():
    with RewardScorer({"accuracy": 1.0, "format": 1.0}, num_workers=0) as scorer:
        res = scorer.score([], {"answer": []})
        assert res.totals == [] and res.per_reward == {"accuracy": [], "format": []}


def test_close_stops_the_workers():
    scorer = RewardScorer({"countdown": 1.0}, num_workers=1)
    scorer.score(["<answer>1+2</answer>"], {"nums": [[1, 2]], "target": [3]})
    procs = [w.proc for w in scorer.pool.workers]
    scorer.close()
    assert all(not p.is_alive() for p in procs)


def test_registered_user_reward_runs_in_workers_by_name():
    import reward_test_helpers  # noqa: F401  (registers "test_helpers_shout", like a plugin imported by a script)
    with RewardScorer({"test_helpers_shout": {"weight": 2.0, "value": 0.5}}, num_workers=1) as scorer:
        assert scorer.worker_names == ["test_helpers_shout"]
        res = scorer.score(["hi!", "hi", None], {})
        assert res.per_reward["test_helpers_shout"] == [0.5, 0.0, 0.0] and res.totals == [1.0, 0.0, 0.0]
        assert res.metrics["rewards/test_helpers_shout/errors"] == 0


def test_missing_or_misaligned_columns_are_loud():
    with RewardScorer({"accuracy": 1.0, "countdown": 1.0}, num_workers=0) as scorer:
        with pytest.raises(ValueError, match="reward 'accuracy' needs the column.*'answer'"):
            scorer.score(["a"], {"nums": [[1]], "target": [1]})
        with pytest.raises(ValueError, match="reward 'countdown' needs the column.*'nums'.*'target'"):
            scorer.score(["a"], {"answer": ["1"]})
        with pytest.raises(ValueError, match="column 'answer' has 2 values for 1 completions"):
            scorer.score(["a"], {"answer": ["1", "2"], "nums": [[1]], "target": [1]})


@pytest.mark.parametrize("workers", [0, 1])
def test_a_reward_raising_on_every_item_is_one_line_error(workers):
    from rewards import RewardError
    with RewardScorer({"format": 1.0, "reward_test_helpers:crash": 1.0}, num_workers=workers, timeout_s=2.0) as sc:
        res = sc.score(["RAISE a", "b"], {})  # one of two: scored 0 and counted, the run goes on
        assert res.per_reward["reward_test_helpers:crash"] == [0.0, 1.0]
        assert res.metrics["rewards/reward_test_helpers:crash/errors"] == 1
        with pytest.raises(RewardError) as e:
            sc.score(["RAISE a", "RAISE b", "RAISE c"], {})
    assert str(e.value) == ("reward 'reward_test_helpers:crash' raised on all 3 completions of this batch: "
                            "RuntimeError: boom")


@pytest.mark.parametrize("workers", [0, 2])
def test_a_batched_reward_is_called_once_per_batch(workers):
    """8 completions: a batched reward gets one call of 8 (never the workers); a plain one, 8 calls of 1 in-process."""
    import reward_test_helpers as h
    h.BATCH_CALLS.clear()
    h.ROW_CALLS.clear()
    texts = ["a" * k for k in range(1, 9)]
    spec = {"reward_test_helpers:batched_length": 1.0, "test_helpers_batched_even": {"weight": 0.5, "value": 2.0},
            "reward_test_helpers:row_length": 0.0}
    with RewardScorer(spec, num_workers=workers) as scorer:
        assert scorer.worker_names == (["reward_test_helpers:row_length"] if workers else [])
        res = scorer.score(texts, {"answer": ["x"] * 8})
    assert h.BATCH_CALLS == [8, 8]  # batched_length once, test_helpers_batched_even once
    assert h.ROW_CALLS == ([] if workers else [1] * 8)  # in the workers' processes when workers > 0
    assert res.per_reward["reward_test_helpers:batched_length"] == [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0]
    assert res.per_reward["test_helpers_batched_even"] == [0.0, 2.0] * 4
    assert res.totals == [1.0, 3.0, 3.0, 5.0, 5.0, 7.0, 7.0, 9.0]  # length + 0.5 * (2 if even)


def test_a_batched_reward_that_raises_or_overruns():
    from rewards import RewardError
    with RewardScorer({"reward_test_helpers:batched_length": 1.0}, num_workers=0, timeout_s=0.1) as scorer:
        with pytest.raises(RewardError, match=r"^reward 'reward_test_helpers:batched_length' raised on all 2 "
                                              r"completions of this batch: ConnectionError: verifier unreachable$"):
            scorer.score(["ok", "RAISE"], {})
        res = scorer.score(["ok", "SLOW"], {})  # deadline 0.1 s x 2 completions, the call sleeps 5 s: cut off
        assert res.per_reward["reward_test_helpers:batched_length"] == [0.0, 0.0]
        assert res.metrics["rewards/reward_test_helpers:batched_length/timeouts"] == 2


def test_an_error_budget_over_several_batches():
    """Window 3, max 0.5: batches of 4 with 1, 3, 2 errors = 6 of 12 (50%) pass; the next, 3 errors, makes the
    window 3 + 2 + 3 = 8 of 12 (67%): the run stops. No single batch errs on every item."""
    from rewards import RewardError
    with RewardScorer({"reward_test_helpers:fail_on_bang": 1.0}, num_workers=0, max_error_frac=0.5,
                      error_window=3) as scorer:
        for k in (1, 3, 2):
            res = scorer.score(["!"] * k + ["ok"] * (4 - k), {})
            assert res.metrics["rewards/reward_test_helpers:fail_on_bang/errors"] == k
        with pytest.raises(RewardError, match=r"^reward 'reward_test_helpers:fail_on_bang' raised on 8 of 12 "
                                              r"completions \(67%\) over the last 3 batches, more than "
                                              r"max_error_frac=0.5: ValueError: bang$"):
            scorer.score(["!"] * 3 + ["ok"], {})
    with pytest.raises(ValueError, match="max_error_frac"):
        RewardScorer({"format": 1.0}, max_error_frac=0.0)


def test_item_deadlines_per_reward():
    """Each reward's per-item deadline is the scorer's `timeout_s`, or the reward's own `item_timeout_s` when that is
    longer (the `code` reward's: tests/rewards/test_code.py::test_the_scorer_deadline_follows_the_code_budget)."""
    from rewards.scoring.pool import WorkerPool
    with RewardScorer({"accuracy": 1.0, "format": 1.0}, num_workers=0, timeout_s=3.0) as scorer:
        assert scorer.item_timeouts == {"accuracy": 3.0, "format": 3.0}  # neither declares one
    with pytest.raises(ValueError, match="2 timeouts for 1 reward specs"):
        WorkerPool([("rewards.math.accuracy:make_accuracy", {})], num_workers=1, timeouts=[1.0, 2.0])
