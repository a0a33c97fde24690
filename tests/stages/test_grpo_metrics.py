"""rl/grpo.py's cross-rank metric reduction (issue 16, defect 7; issue 25 item 2): `*_max` metrics are the maximum over
ranks, counts in SUMMED_METRICS the sum, the rest the mean over the ranks that logged them, whichever keys each rank
has. Ranks simulated: every collective sees all ranks' values for the call it is given (the 2-process run over gloo is
tests/e2e/test_distributed.py::test_ranks_with_different_metric_keys)."""
import math

import pytest

from rl.train.rank_metrics import reduce_metrics

RANKS = [{"loss": 1.0, "rollout/logprob_diff_max": 0.5, "rollout/staleness_max": 1.0, "rollout/staleness_mean": 0.5},
         {"loss": 3.0, "rollout/logprob_diff_max": 0.1, "rollout/staleness_max": 0.0, "rollout/staleness_mean": 0.0}]


def reduce_everywhere(ranks: list[dict]) -> list[tuple[dict, list[str]]]:
    """(reduced metrics, ops called) on each rank, the collectives simulated: an all-gather of every rank's key list,
    and for each call the elementwise sum or max over the lists the ranks sent in that call."""
    def gather_keys(keys):
        return [sorted(m) for m in ranks]

    sent = []  # per rank: the values of each all_reduce call (they do not depend on what earlier calls returned)
    for m in ranks:
        calls = []
        reduce_metrics(m, gather_keys, lambda values, op, calls=calls: calls.append(list(values)) or [1.0] * len(values))
        sent.append(calls)
    assert len({tuple(len(c) for c in calls) for calls in sent}) == 1  # same calls, same lengths on every rank

    out = []
    for r, m in enumerate(ranks):
        ops = []

        def all_reduce(values, op):
            i = len(ops)
            ops.append(op)
            cols = zip(*(sent[q][i] for q in range(len(ranks))))
            return [max(c) if op == "max" else sum(c) for c in cols]
        out.append((reduce_metrics(m, gather_keys, all_reduce), ops))
    return out


@pytest.mark.parametrize("rank", [0, 1])
def test_max_metrics_are_max_reduced_the_rest_averaged(rank):
    got, ops = reduce_everywhere(RANKS)[rank]
    assert ops == ["sum", "max"]
    assert got == {"loss": 2.0, "rollout/logprob_diff_max": 0.5, "rollout/staleness_max": 1.0,
                   "rollout/staleness_mean": 0.25}
    assert list(got) == list(RANKS[rank])  # key order kept


# rank 0 scored code rows (the code reward's counters), rank 1 math rows only: its reward reported no counters.
MIXED = [{"loss": 1.0, "rewards/code/pass_rate": 0.5, "rewards/code/sandbox_kills": 2.0, "reward/mean": 0.25,
          "rollout/logprob_diff_max": 0.5},
         {"loss": 3.0, "reward/mean": 0.75, "rollout/logprob_diff_max": 0.1, "rollout/prompts_truncated": 3.0}]


@pytest.mark.parametrize("key, expected", [
    ("loss", 2.0),                         # (1 + 3) / 2 ranks
    ("reward/mean", 0.5),                  # (0.25 + 0.75) / 2
    ("rewards/code/pass_rate", 0.5),       # 0.5 / 1: only rank 0 logged it (not 0.25: rank 1 ran no tests)
    ("rewards/code/sandbox_kills", 2.0),   # 2 / 1
    ("rollout/logprob_diff_max", 0.5),     # max(0.5, 0.1)
    ("rollout/prompts_truncated", 3.0),    # a count: 0 (absent) + 3
])
def test_ranks_with_different_keys_agree_on_every_value(key, expected):
    results = reduce_everywhere(MIXED)
    for got, ops in results:  # the same numbers on both ranks
        assert ops == ["sum", "max"]
        assert got[key] == pytest.approx(expected)
    assert list(results[0][0]) == [*MIXED[0], "rollout/prompts_truncated"]  # own keys first, then the others'
    assert list(results[1][0]) == [*MIXED[1], "rewards/code/pass_rate", "rewards/code/sandbox_kills"]


def test_a_max_key_on_one_rank_only_and_nan_stays_visible():
    got = reduce_everywhere([{"rollout/staleness_max": 2.0, "loss": math.nan}, {"loss": 1.0}])
    for m, _ in got:
        assert m["rollout/staleness_max"] == 2.0  # max(2, -inf)
        assert math.isnan(m["loss"])  # a NaN loss on one rank is not averaged away
