"""Bounded staleness (rl/core/staleness.py): which groups are too old, and the batch's staleness metrics."""
import pytest

from rl.core.staleness import stale_groups, staleness_metrics


@pytest.mark.parametrize("versions, learner, k, expected", [
    ([3, 1, 2], 4, 2, [1]),  # staleness [1, 3, 2]: only 3 > 2
    ([3, 1, 2], 4, None, []),  # no bound
    ([4, 4], 4, 0, []),  # k = 0 admits the learner's own version
    ([3, 4], 4, 0, [0]),  # ... and nothing older
    ([0, 0, 0], 2, 1, [0, 1, 2]),  # a whole batch two versions old (async_steps 2 > k 1)
])
def test_stale_groups(versions, learner, k, expected):
    assert stale_groups(versions, learner, k) == expected


def test_staleness_metrics_weigh_groups_by_their_completions():
    # per sample: versions [3, 3, 1, 1] -> staleness [1, 1, 3, 3]
    assert staleness_metrics([3, 1], 4, [2, 2]) == {"rollout/staleness_mean": 2.0, "rollout/staleness_max": 3.0,
                                                    "rollout/version_mean": 2.0, "rollout/version_max": 3.0}
    # sizes 3 and 1: staleness mean (3*0 + 1*2) / 4 = 0.5, version mean (3*5 + 3) / 4 = 4.5
    assert staleness_metrics([5, 3], 5, [3, 1]) == {"rollout/staleness_mean": 0.5, "rollout/staleness_max": 2.0,
                                                    "rollout/version_mean": 4.5, "rollout/version_max": 5.0}


def test_bad_input():
    with pytest.raises(ValueError, match="max_staleness=-1 must be >= 0"):
        stale_groups([0], 1, -1)
    with pytest.raises(ValueError, match="2 versions, 1 group sizes"):
        staleness_metrics([0, 1], 1, [2])
