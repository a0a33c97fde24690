"""Token-budget bins, equal bin counts, rank balance and the packed layout (rl/core/packing.py), by hand."""
import pytest
import torch

from rl.core.packing import (balance_ranks, first_fit_decreasing, imbalance, pack_rows, select_rows, split_bins)
from rl.core.collate import collate
from rl.core.episode import Completion, Episode


@pytest.mark.parametrize("lengths, budget, expected", [
    # the module example: order 9, 6, 5, 4, 3; 4 fits beside 6 (10), 3 beside 5 (8)
    ([5, 9, 3, 4, 6], 10, [[1], [4, 3], [0, 2]]),
    # a row above the budget gets a bin of its own; the rest still pack
    ([20, 3, 3, 3], 6, [[0], [1, 2], [3]]),
    # everything fits in one bin; ties keep row order
    ([2, 2, 2], 100, [[0, 1, 2]]),
    # budget 1: one row per bin
    ([1, 1], 1, [[0], [1]]),
    ([], 5, []),
])
def test_first_fit_decreasing(lengths, budget, expected):
    assert first_fit_decreasing(lengths, budget) == expected


def test_first_fit_decreasing_refuses_a_budget_below_one():
    with pytest.raises(ValueError, match="token budget 0"):
        first_fit_decreasing([1], 0)


@pytest.mark.parametrize("bins, lengths, count, expected", [
    # the module example: [4, 3] (10 tokens) is the heaviest splittable bin; [1] (9) holds one row
    ([[1], [4, 3], [0, 2]], [5, 9, 3, 4, 6], 4, [[1], [0, 2], [4], [3]]),
    # already enough bins: only sorted, heaviest first
    ([[0], [1, 2]], [1, 2, 3], 2, [[1, 2], [0]]),
    # two splits of one 4-row bin [8, 4, 2, 1]: 8 | 4 2 1 (8 vs 7) then 8 cannot split, 4 2 1 -> 4 | 2 1
    ([[0, 1, 2, 3]], [8, 4, 2, 1], 3, [[0], [1], [2, 3]]),
])
def test_split_bins(bins, lengths, count, expected):
    got = split_bins(bins, lengths, count)
    assert got == expected
    assert sorted(i for b in got for i in b) == sorted(i for b in bins for i in b)  # every row once


def test_split_bins_needs_a_row_per_bin():
    with pytest.raises(ValueError, match="cannot make 3 micro-batches from 2 rows"):
        split_bins([[0, 1]], [1, 1], 3)


@pytest.mark.parametrize("lengths, world, expected", [
    # the module example: [8, 7 | 1, 2] (15 vs 3 tokens) -> 9 and 9
    ([8, 7, 1, 2], 2, [[0, 2], [1, 3]]),
    # one rank: everything, in order
    ([3, 1, 2], 1, [[0, 1, 2]]),
    # 6 rows on 3 ranks: 10 -> r0, 9 -> r1, 8 -> r2, 3 -> r2 (11), 2 -> r1 (11), 1 -> r0 (11)
    ([10, 9, 8, 1, 2, 3], 3, [[0, 3], [1, 4], [2, 5]]),
])
def test_balance_ranks(lengths, world, expected):
    assert balance_ranks(lengths, world) == expected


def test_balance_ranks_needs_equal_rows():
    with pytest.raises(ValueError, match="3 rows cannot be dealt equally to 2 ranks"):
        balance_ranks([1, 2, 3], 2)


@pytest.mark.parametrize("loads, expected", [([9, 9], 1.0), ([15, 3], 15 / 9), ([0, 0], 1.0), ([4], 1.0)])
def test_imbalance(loads, expected):
    assert imbalance(loads) == pytest.approx(expected)


def test_pack_rows_module_example():
    input_ids = torch.tensor([[0, 4, 9], [5, 6, 7]])
    attention_mask = torch.tensor([[0, 1, 1], [1, 1, 1]])
    completion_mask = torch.tensor([[1.0], [1.0]])
    ids, pos, predict_at, targets = pack_rows(input_ids, attention_mask, completion_mask)
    assert ids.tolist() == [[4, 9, 5, 6, 7]]
    assert pos.tolist() == [[0, 1, 0, 1, 2]]
    assert predict_at.tolist() == [0, 3]
    assert targets.tolist() == [9, 7]


def test_pack_rows_of_collated_episodes():
    """prompt [5, 6] + completion [7, 8, 2]; prompt [4] + completion [9] (not counted: truncated and masked);
    prompt [3] + no completion. Real tokens end to end: 5 6 7 8 2 | 4 9 | 3 (L = 8)."""
    eps = [Episode(0, {}, Completion([5, 6], [7, 8, 2], "", "stop", [0.0] * 3)),
           Episode(0, {}, Completion([4], [9], "", "length", [0.0])),
           Episode(0, {}, Completion([3], [], "", "stop", []))]
    batch = collate(eps, pad_token_id=0, mask_truncated_completions=True)
    ids, pos, predict_at, targets = pack_rows(batch.input_ids, batch.attention_mask, batch.completion_mask)
    assert ids.tolist() == [[5, 6, 7, 8, 2, 4, 9, 3]]
    assert pos.tolist() == [[0, 1, 2, 3, 4, 0, 1, 0]]
    # row 1's completion tokens 7, 8, 2 are predicted at packed positions 1, 2, 3; row 2's 9 is not counted
    assert predict_at.tolist() == [1, 2, 3]
    assert targets.tolist() == [7, 8, 2]


def test_pack_rows_refuses_a_counted_padding_token():
    with pytest.raises(ValueError, match="counted completion token is padding"):
        pack_rows(torch.tensor([[4, 0]]), torch.tensor([[1, 0]]), torch.tensor([[1.0]]))


def test_select_rows_keeps_the_order_given():
    eps = [Episode(0, {}, Completion([i + 1], [i + 10], "", "stop", [0.0])) for i in range(3)]
    batch = collate(eps, pad_token_id=0)
    got = select_rows(batch, torch.tensor([2, 0]))
    assert got.input_ids.tolist() == [[3, 12], [1, 10]]
    assert got.old_logprobs is None
