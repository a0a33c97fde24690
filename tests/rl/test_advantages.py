import math

import pytest
import torch

from rl.advantages import ADVANTAGE_ESTIMATORS, get_advantage_fn, informative_groups

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
