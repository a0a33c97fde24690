"""Truncated importance-sampling weights: a table of hand-computed cases (pure torch, no vLLM needed)."""
from __future__ import annotations

import math

import pytest
import torch

from rl.core.importance import truncated_is_weights

CASES = [
    # learner, sampling, mask, cap, expected weights, diff_max, diff_mean, clip_frac
    ([[-1.0, -2.0]], [[-1.0, -2.0]], [[1, 1]], 2.0, [[1.0, 1.0]], 0.0, 0.0, 0.0),
    ([[-1.0, -2.0]], [[-1.5, -2.0]], [[1, 1]], 2.0, [[math.exp(0.5), 1.0]], 0.5, 0.25, 0.0),
    ([[-0.1, -3.0]], [[-2.0, -1.0]], [[1, 1]], 2.0, [[2.0, math.exp(-2.0)]], 2.0, 1.95, 0.5),  # first is capped
    ([[-1.0, -9.0]], [[-1.2, 0.0]], [[1, 0]], 2.0, [[math.exp(0.2), 0.0]], 0.2, 0.2, 0.0),  # padding ignored
    ([[-1.0, -1.0], [-2.0, -5.0]], [[-1.0, -3.0], [-2.0, -5.0]], [[1, 1], [1, 0]], 5.0,
     [[1.0, math.exp(2.0) if math.exp(2.0) < 5 else 5.0], [1.0, 0.0]], 2.0, 2.0 / 3, 1.0 / 3),
    ([[-1.0]], [[-1.0]], [[0]], 2.0, [[0.0]], 0.0, 0.0, 0.0),  # nothing counts
]


@pytest.mark.parametrize("learner,sampling,mask,cap,weights,dmax,dmean,clip", CASES)
def test_truncated_is_weights_table(learner, sampling, mask, cap, weights, dmax, dmean, clip):
    w, m = truncated_is_weights(torch.tensor(learner), torch.tensor(sampling), torch.tensor(mask, dtype=torch.float),
                                cap)
    assert torch.allclose(w, torch.tensor(weights), atol=1e-6)
    assert m["rollout/logprob_diff_max"] == pytest.approx(dmax, abs=1e-6)
    assert m["rollout/logprob_diff_mean"] == pytest.approx(dmean, abs=1e-6)
    assert m["rollout/is_clip_frac"] == pytest.approx(clip, abs=1e-6)
    n = sum(map(sum, mask))
    expect_mean = sum(sum(r) for r in weights) / n if n else 0.0
    assert m["rollout/is_weight_mean"] == pytest.approx(expect_mean, abs=1e-6)


def test_no_gradient_and_validation():
    lp = torch.tensor([[-1.0, -2.0]], requires_grad=True)
    w, _ = truncated_is_weights(lp, torch.tensor([[-1.0, -1.0]]), torch.ones(1, 2))
    assert not w.requires_grad
    with pytest.raises(ValueError, match="shape"):
        truncated_is_weights(lp, torch.zeros(1, 3), torch.ones(1, 2))
    with pytest.raises(ValueError, match="cap"):
        truncated_is_weights(lp, torch.zeros(1, 2), torch.ones(1, 2), cap=0)
