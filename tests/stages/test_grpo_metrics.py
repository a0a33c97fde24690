"""rl/grpo.py's cross-rank metric reduction (issue 16, defect 7): `*_max` metrics are the maximum over ranks, the rest
the mean. Two ranks simulated: `all_reduce` sees both ranks' values for the call it is given."""
import pytest

from rl.grpo import reduce_metrics

RANKS = [{"loss": 1.0, "rollout/logprob_diff_max": 0.5, "rollout/staleness_max": 1.0, "rollout/staleness_mean": 0.5},
         {"loss": 3.0, "rollout/logprob_diff_max": 0.1, "rollout/staleness_max": 0.0, "rollout/staleness_mean": 0.0}]


def reduce_on(rank: int) -> dict:
    calls = []

    def all_reduce(values, op):  # what the collective returns on every rank
        calls.append(op)
        i = len(calls) - 1
        per_rank = [reduce_metrics_args[r][i] for r in range(len(RANKS))]
        cols = list(zip(*per_rank))
        return [max(c) if op == "max" else sum(c) / len(c) for c in cols]

    # each rank's values for each call, in call order (the same key order on every rank)
    reduce_metrics_args = []
    for m in RANKS:
        recorded = []
        reduce_metrics(m, lambda values, op, rec=recorded: rec.append(values) or values)
        reduce_metrics_args.append(recorded)
    return reduce_metrics(RANKS[rank], all_reduce), calls


@pytest.mark.parametrize("rank", [0, 1])
def test_max_metrics_are_max_reduced_the_rest_averaged(rank):
    got, calls = reduce_on(rank)
    assert calls == ["mean", "max"]
    assert got == {"loss": 2.0, "rollout/logprob_diff_max": 0.5, "rollout/staleness_max": 1.0,
                   "rollout/staleness_mean": 0.25}
    assert list(got) == list(RANKS[rank])  # key order kept
