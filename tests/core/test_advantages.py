import math

import pytest
import torch

from rl.core.advantages import ADVANTAGE_ESTIMATORS, get_advantage_fn, informative_groups

# Group [1, 0, 0, 1]: mean 0.5, unbiased std = sqrt((4 * 0.25) / 3) = 0.577350; eps = 1e-4.
S = math.sqrt(1 / 3)


@pytest.mark.parametrize("name, G, rewards, expected", [
    ("group", 4, [1., 0., 0., 1.], [0.5 / (S + 1e-4), -0.5 / (S + 1e-4), -0.5 / (S + 1e-4), 0.5 / (S + 1e-4)]),
    ("none", 4, [1., 0., 0., 1.], [0.5, -0.5, -0.5, 0.5]),
    # all-equal group -> exactly zero, never NaN, whatever the scale
    ("group", 4, [0.7, 0.7, 0.7, 0.7], [0., 0., 0., 0.]),
    ("batch", 4, [0.7, 0.7, 0.7, 0.7], [0., 0., 0., 0.]),
    ("none", 4, [0.7, 0.7, 0.7, 0.7], [0., 0., 0., 0.]),
    # two groups of 2: [2, 0] -> centred [1, -1], std sqrt(2) ; [1, 1] -> zeros
    ("group", 2, [2., 0., 1., 1.], [1 / (math.sqrt(2) + 1e-4), -1 / (math.sqrt(2) + 1e-4), 0., 0.]),
    # batch std of [2, 0, 1, 1] = sqrt(((1+1+0+0)) / 3) = 0.816497
    ("batch", 2, [2., 0., 1., 1.], [1 / (math.sqrt(2 / 3) + 1e-4), -1 / (math.sqrt(2 / 3) + 1e-4), 0., 0.]),
])
def test_advantages_by_hand(name, G, rewards, expected):
    adv, _ = get_advantage_fn(name)(torch.tensor(rewards), G)
    assert not torch.isnan(adv).any()
    torch.testing.assert_close(adv, torch.tensor(expected), rtol=0, atol=1e-6)


def test_zero_std_fraction_and_informative_groups():
    rewards = torch.tensor([1., 1., 0., 1., 0., 0.])  # groups of 2: [1,1] [0,1] [0,0]
    _, metrics = get_advantage_fn("group")(rewards, 2)
    assert metrics["zero_std_frac"] == pytest.approx(2 / 3)
    assert informative_groups(rewards, 2).tolist() == [False, True, False]


def test_does_not_modify_callers_tensor():
    rewards = torch.tensor([1., 0., 3., 1.])
    before = rewards.clone()
    for fn in ADVANTAGE_ESTIMATORS.values():
        fn(rewards, 2)
    assert torch.equal(rewards, before)


def test_bad_inputs():
    with pytest.raises(ValueError, match="unknown advantage estimator 'zscore'; valid: group, batch, none"):
        get_advantage_fn("zscore")
    with pytest.raises(ValueError, match="do not split into groups of 4"):
        get_advantage_fn("group")(torch.zeros(6), 4)


# Totals that are equal in exact arithmetic but not in floats: a solved group with format weight 0.2 totals 1.2
# (float32 mean of eight 1.2s != 1.2), 0.1 + 0.2 next to 0.3, a large reward scale. Each must give A = 0 exactly,
# count as zero-std and be dropped by dynamic sampling. Before the tolerance: A = +1.2e-3 for the first row.
EQUAL_BUT_INEXACT = [
    [1.0 + 0.2] * 8,
    [0.1 + 0.2, 0.3, 0.3, 0.1 + 0.2],
    [1e6 + 0.1, 1e6 + 0.1 + 1e-7, 1e6 + 0.1, 1e6 + 0.1],  # spread 1e-7 << 1e-6 * 1e6
    [-0.7] * 4,
]


@pytest.mark.parametrize("name", sorted(ADVANTAGE_ESTIMATORS))
@pytest.mark.parametrize("group", EQUAL_BUT_INEXACT)
def test_equal_totals_give_exact_zeros(name, group):
    base, step = group[0], max(1.0, abs(group[0]) * 1e-3)
    rewards = torch.tensor(group + [base, base + step] * (len(group) // 2))  # + one informative group, same scale
    adv, metrics = get_advantage_fn(name)(rewards, len(group))
    assert torch.equal(adv[:len(group)], torch.zeros(len(group)))
    assert adv[len(group):].abs().min() > 0.1 * (step if name == "none" else 1)  # the informative group keeps it
    assert metrics["zero_std_frac"] == 0.5
    assert informative_groups(rewards, len(group)).tolist() == [False, True]


def test_small_real_differences_still_count():
    # 0.01 apart at scale 1 is a real difference (e.g. a length penalty): the group keeps its advantages
    adv, metrics = get_advantage_fn("none")(torch.tensor([1.0, 1.01, 1.0, 1.0]), 4)
    torch.testing.assert_close(adv, torch.tensor([-0.0025, 0.0075, -0.0025, -0.0025]), rtol=0, atol=1e-6)
    assert metrics["zero_std_frac"] == 0.0
