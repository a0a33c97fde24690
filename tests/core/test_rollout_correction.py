"""Rollout correction (rl/core/rollout_correction.py): a table of hand-computed weights for every registered mode,
TRL's semantics (sequence ratio = exp of the *sum* of token log-ratios; a missing bound is no bound), and the
equivalence of `token_truncate` with truncated IS as `algorithm.tis_cap` defines it, min(exp(l - s), cap)."""
from __future__ import annotations

import math

import pytest
import torch

from rl.core.rollout_correction import CORRECTIONS, correction_sums, get_correction

e = math.exp
T, F = True, False
CASES = [
    # mode, log-ratio rows l - s (s = 0 so l = the log ratio), mask, clip_min, clip_max -> weights, masked, truncated
    # token_truncate: rho = [e^1.5 = 4.48, e^-0.2 = 0.8187] -> [3, 0.8187], the first truncated
    ("token_truncate", [[1.5, -0.2]], [[1, 1]], None, 3.0, [[3.0, e(-0.2)]], [[F, F]], [[T, F]]),
    # a lower bound as well: e^-0.2 = 0.8187 < 0.9 -> 0.9
    ("token_truncate", [[-0.2, 0.5]], [[1, 1]], 0.9, 3.0, [[0.9, e(0.5)]], [[F, F]], [[T, F]]),
    # padding counts for nothing (its 9.0 would be truncated)
    ("token_truncate", [[0.5, 9.0]], [[1, 0]], None, 3.0, [[e(0.5), 0.0]], [[F, F]], [[F, F]]),
    # token_mask: 4.48 > 3 -> 0
    ("token_mask", [[1.5, -0.2]], [[1, 1]], None, 3.0, [[0.0, e(-0.2)]], [[T, F]], [[F, F]]),
    ("token_mask", [[-0.2, 0.5]], [[1, 1]], 0.9, 3.0, [[0.0, e(0.5)]], [[T, F]], [[F, F]]),
    # no upper bound: e^2 = 7.389 kept, 0.8187 < 0.9 masked
    ("token_mask", [[-0.2, 2.0]], [[1, 1]], 0.9, None, [[0.0, e(2.0)]], [[T, F]], [[F, F]]),
    # sequence_truncate: R = e^(1.5 - 0.2) = e^1.3 = 3.669 -> 3 on both tokens
    ("sequence_truncate", [[1.5, -0.2]], [[1, 1]], None, 3.0, [[3.0, 3.0]], [[F, F]], [[T, T]]),
    ("sequence_truncate", [[0.5, -0.2]], [[1, 1]], None, 3.0, [[e(0.3), e(0.3)]], [[F, F]], [[F, F]]),
    # two rows: row 0's padding (9.0) is not in its sum, R0 = e^0.5; R1 = e^-3 = 0.0498 -> clip_min 0.1
    ("sequence_truncate", [[0.5, 9.0], [-3.0, 0.0]], [[1, 0], [1, 1]], 0.1, 3.0,
     [[e(0.5), 0.0], [0.1, 0.1]], [[F, F], [F, F]], [[F, F], [T, T]]),
    # sequence_mask (TRL's default mode): R = e^0.3 kept on every token; R = e^1.3 > 3 -> the whole row masked
    ("sequence_mask", [[0.5, -0.2]], [[1, 1]], None, 3.0, [[e(0.3), e(0.3)]], [[F, F]], [[F, F]]),
    ("sequence_mask", [[1.5, -0.2]], [[1, 1]], None, 3.0, [[0.0, 0.0]], [[T, T]], [[F, F]]),
    # twelve tokens of log-ratio 0.1 each: every token ratio 1.105 is well inside, but R = e^1.2 = 3.32 > 3
    ("sequence_mask", [[0.1] * 12], [[1] * 12], None, 3.0, [[0.0] * 12], [[T] * 12], [[F] * 12]),
    ("token_mask", [[0.1] * 12], [[1] * 12], None, 3.0, [[e(0.1)] * 12], [[F] * 12], [[F] * 12]),
    # icepop, k = 2: band [0.5, 2]; e^0.5 = 1.6487 in, e^-0.8 = 0.4493 out, e^0.1 in, e^0.8 = 2.2255 out
    ("icepop", [[0.5, -0.8, 0.1, 0.8]], [[1, 1, 1, 1]], None, 2.0,
     [[e(0.5), 0.0, e(0.1), 0.0]], [[F, T, F, T]], [[F, F, F, F]]),
    # icepop with its own lower bound 0.3: 0.4493 is now in
    ("icepop", [[0.5, -0.8, 0.1, 0.8]], [[1, 1, 1, 1]], 0.3, 2.0,
     [[e(0.5), e(-0.8), e(0.1), 0.0]], [[F, F, F, T]], [[F, F, F, F]]),
]


@pytest.mark.parametrize("mode, log_ratio, mask, lo, hi, weights, masked, truncated", CASES)
def test_rollout_correction_table(mode, log_ratio, mask, lo, hi, weights, masked, truncated):
    learner = torch.tensor(log_ratio) - 2.0  # any common offset: only l - s matters
    sampling = torch.full_like(learner, -2.0)
    w, m, t = get_correction(mode)(learner, sampling, torch.tensor(mask, dtype=torch.float), lo, hi)
    torch.testing.assert_close(w, torch.tensor(weights), rtol=1e-5, atol=1e-6)
    assert m.tolist() == masked and t.tolist() == truncated
    assert not w.requires_grad


def test_registry_names_are_trls_modes_and_icepop():
    assert list(CORRECTIONS) == ["token_truncate", "token_mask", "sequence_truncate", "sequence_mask", "icepop"]
    with pytest.raises(ValueError, match="unknown rollout correction 'seq'; valid: token_truncate, token_mask"):
        get_correction("seq")


TIS_CASES = [
    # learner, sampling, mask, cap -> weights min(exp(l - s), cap) (0 on padding), share of counted tokens capped
    ([[-1.0, -2.0]], [[-1.0, -2.0]], [[1, 1]], 2.0, [[1.0, 1.0]], 0.0),
    ([[-1.0, -2.0]], [[-1.5, -2.0]], [[1, 1]], 2.0, [[e(0.5), 1.0]], 0.0),  # e^0.5 = 1.6487 < 2
    ([[-0.1, -3.0]], [[-2.0, -1.0]], [[1, 1]], 2.0, [[2.0, e(-2.0)]], 0.5),  # e^1.9 = 6.69 capped at 2
    ([[-1.0, -9.0]], [[-1.2, 0.0]], [[1, 0]], 2.0, [[e(0.2), 0.0]], 0.0),  # padding ignored
    ([[-1.0, -1.0], [-2.0, -5.0]], [[-1.0, -3.0], [-2.0, -5.0]], [[1, 1], [1, 0]], 5.0,
     [[1.0, 5.0], [1.0, 0.0]], 1.0 / 3),  # e^2 = 7.389 capped at 5: 1 of the 3 counted tokens
    ([[-1.0]], [[-1.0]], [[0]], 2.0, [[0.0]], 0.0),  # nothing counts
]


@pytest.mark.parametrize("learner,sampling,mask,cap,weights,capped", TIS_CASES)
def test_tis_cap_table(learner, sampling, mask, cap, weights, capped):
    """`algorithm.tis_cap` c runs as token_truncate with clip_max c: hand-computed weights and metrics."""
    m = torch.tensor(mask, dtype=torch.float)
    w, masked, truncated = get_correction("token_truncate")(torch.tensor(learner), torch.tensor(sampling), m, None, cap)
    torch.testing.assert_close(w, torch.tensor(weights), rtol=1e-6, atol=1e-6)
    sums = correction_sums(w, masked, truncated, m)
    n = m.sum().item()
    assert (sums["is_truncated"].item() / n if n else 0.0) == pytest.approx(capped)
    assert sums["is_masked"].item() == 0


def test_token_truncate_is_the_tis_formula_bit_for_bit():
    """On random gaps, token_truncate(clip_max c) == min(exp(l - s), c) * mask computed here, bit for bit."""
    g = torch.Generator().manual_seed(0)
    learner = -torch.rand(6, 9, generator=g) * 3  # [N, C]
    sampling = learner + (torch.rand(6, 9, generator=g) - 0.5) * 2  # gaps in [-1, 1): some ratios above 2
    mask = (torch.rand(6, 9, generator=g) > 0.2).float()
    for cap in (2.0, 1.2):
        expected = torch.clamp(torch.exp((learner - sampling).masked_fill(mask == 0, 0.0)), max=cap) * mask
        w, masked, truncated = get_correction("token_truncate")(learner, sampling, mask, None, cap)
        assert torch.equal(w, expected)
        ratio = torch.exp(learner - sampling)
        assert torch.equal(truncated, (ratio > cap) & (mask > 0))
        assert not masked.any()


def test_correction_sums_example():
    sums = correction_sums(torch.tensor([[1.5, 0.0, 7.0]]), torch.tensor([[F, T, F]]), torch.tensor([[F, F, T]]),
                           torch.tensor([[1.0, 1.0, 0.0]]))  # the third token is padding
    assert {k: v.item() for k, v in sums.items()} == {"is_weight": 1.5, "is_masked": 1.0, "is_truncated": 0.0}


def test_bad_bounds_and_shapes_are_one_line_errors():
    lp, ones = torch.zeros(1, 2), torch.ones(1, 2)
    with pytest.raises(ValueError, match="shape mismatch"):
        get_correction("token_mask")(lp, torch.zeros(1, 3), ones)
    with pytest.raises(ValueError, match="need 0 <= clip_min < clip_max"):
        get_correction("token_mask")(lp, lp, ones, 2.0, 1.5)
    with pytest.raises(ValueError, match="needs clip_max"):
        get_correction("sequence_truncate")(lp, lp, ones, None, None)
    with pytest.raises(ValueError, match="icepop needs clip_max"):
        get_correction("icepop")(lp, lp, ones, 0.5, None)
