"""Token-budget bins, equal bin counts, rank balance and the packed layout (rl/core/packing.py), by hand."""
import pytest
import torch

from rl.core.packing import (balance_ranks, balance_ranks_by_units, bin_units, first_fit_decreasing, imbalance, pack_rows, prompt_owners,
                             prompt_units, select_rows, shared_load, split_bins)
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
    ids, pos, predict_at, targets, layout = pack_rows(input_ids, attention_mask, completion_mask)
    assert ids.tolist() == [[4, 9, 5, 6, 7]]
    # unshared: every row owns its prompt; row 0 = [0, 1) + [1, 2), row 1 = [2, 4) + [4, 5)
    assert [t.tolist() for t in layout] == [[0, 2], [1, 2], [1, 4], [1, 1], [True, True]]
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
    ids, pos, predict_at, targets, _ = pack_rows(batch.input_ids, batch.attention_mask, batch.completion_mask)
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


def test_pack_rows_shared_module_example():
    """The module example (5.): rows 0 and 1 share the prompt [4, 9]; row 2's prompt [5] is its own."""
    input_ids = torch.tensor([[4, 9, 1], [4, 9, 2], [0, 5, 3]])
    attention_mask = torch.tensor([[1, 1, 1], [1, 1, 1], [0, 1, 1]])
    ids, pos, predict_at, targets, layout = pack_rows(input_ids, attention_mask, torch.ones(3, 1), share_prompts=True)
    assert ids.tolist() == [[4, 9, 1, 2, 5, 3]]
    assert pos.tolist() == [[0, 1, 2, 2, 0, 1]]
    assert predict_at.tolist() == [1, 1, 4]
    assert targets.tolist() == [1, 2, 3]
    assert [t.tolist() for t in layout] == [[0, 0, 4], [2, 2, 1], [2, 3, 5], [1, 1, 1], [True, False, True]]


def test_pack_rows_shares_by_token_ids_not_by_group():
    """Two groups (prompts [7, 8] and [6, 8], group ids irrelevant) interleaved, + row 4 with prompt [8] (a suffix of
    both: a different prompt), completions of 1 token each; row 3 has no counted token (masked).
    Laid out: row 0: 7 8 | 1 (0-2); row 1: 6 8 | 2 (3-5); row 2: 3 (6, shares row 0's prompt); row 3: 4 (7, shares
    row 1's); row 4: 8 | 5 (8-9). Positions: completions keep position 2 (the prompt's length)."""
    eps = [Episode(g, {}, Completion(p, [c], "", "stop", [0.0])) for g, p, c in
           [(0, [7, 8], 1), (1, [6, 8], 2), (5, [7, 8], 3), (0, [6, 8], 4), (0, [8], 5)]]
    batch = collate(eps, pad_token_id=0)
    batch.completion_mask[3] = 0.0
    assert prompt_owners(batch.input_ids, batch.attention_mask, 1).tolist() == [0, 1, 0, 1, 4]
    ids, pos, predict_at, targets, layout = pack_rows(batch.input_ids, batch.attention_mask, batch.completion_mask,
                                                      share_prompts=True)
    assert ids.tolist() == [[7, 8, 1, 6, 8, 2, 3, 4, 8, 5]]
    assert pos.tolist() == [[0, 1, 2, 0, 1, 2, 2, 2, 0, 1]]
    assert predict_at.tolist() == [1, 4, 1, 8]  # row 2's token is predicted at row 0's prompt end; row 3 not counted
    assert targets.tolist() == [1, 2, 3, 5]
    assert layout.prompt_start.tolist() == [0, 3, 0, 3, 8]
    assert layout.prompt_len.tolist() == [2, 2, 2, 2, 1]
    assert layout.completion_start.tolist() == [2, 5, 6, 7, 9]
    assert layout.owner.tolist() == [True, True, False, False, True]
    # without sharing the same rows lay out whole, one after the other
    ids, _, predict_at, _, layout = pack_rows(batch.input_ids, batch.attention_mask, batch.completion_mask)
    assert ids.tolist() == [[7, 8, 1, 6, 8, 2, 7, 8, 3, 6, 8, 4, 8, 5]] and predict_at.tolist() == [1, 4, 7, 12]
    assert layout.owner.all()


def test_shared_load_and_units():
    # the docstring examples: rows 0 and 1 share a 6-token prompt: 10 + 8 + 7 - 6 = 19
    assert shared_load([0, 1, 2], [10, 8, 7], [6, 6, 3], [0, 0, 2]) == 19
    assert shared_load([1, 2], [10, 8, 7], [6, 6, 3], [0, 0, 2]) == 15  # row 1 alone pays its prompt
    assert prompt_units([0, 1, 0, 3, 1]) == [[0, 2], [1, 4], [3]]


@pytest.mark.parametrize("prompts, completions, budget, expected", [
    # the module example (5.): A = rows 0-2 (prompt 4), B = rows 3-4 (prompt 6); A's chunks [2, 0] (4 + 5 + 3 = 12)
    # and [1] (6), B's [3, 4] (6 + 1 + 1 = 8); first fit decreasing 12, 8, 6: 8 + 6 > 12
    ([4, 4, 4, 6, 6], [3, 2, 5, 1, 1], 12, [[2, 0], [3, 4], [1]]),
    # budget 14: A fits in one chunk (4 + 5 + 3 + 2 = 14), B 8; 14 + 8 > 14 -> two bins
    ([4, 4, 4, 6, 6], [3, 2, 5, 1, 1], 14, [[2, 0, 1], [3, 4]]),
    # A prompt 1, completions 5, 3, 4; B prompt 2, completions 1, 1; budget 10: A's chunks [0, 2] (1 + 5 + 4 = 10) and
    # [1] (1 + 3 = 4), B [3, 4] (2 + 1 + 1 = 4); first fit decreasing 10, 4, 4: B joins A's second chunk (8)
    ([1, 1, 1, 2, 2], [5, 3, 4, 1, 1], 10, [[0, 2], [1, 3, 4]]),
    # a big budget: each group in one chunk (A 4 + 10 = 14, B 8), both in one bin (22)
    ([4, 4, 4, 6, 6], [3, 2, 5, 1, 1], 100, [[2, 0, 1, 3, 4]]),
    # groups of 4 rows of (prompt 10, completion 5): a group is 30 tokens, unshared 60; budget 30: a bin per group
    ([10] * 8, [5] * 8, 30, [[0, 1, 2, 3], [4, 5, 6, 7]]),
    # a row over the budget alone; its group's other row in a chunk of its own
    ([3, 3], [20, 1], 10, [[0], [1]]),
])
def test_bin_units(prompts, completions, budget, expected):
    # rows 0-2 share one prompt, 3-4 another (owners by first row); for the groups of 4: rows 0-3 and 4-7
    owners = {5: [0, 0, 0, 3, 3], 8: [0, 0, 0, 0, 4, 4, 4, 4], 2: [0, 0]}[len(prompts)]
    lengths = [p + c for p, c in zip(prompts, completions)]
    got = bin_units(lengths, prompts, owners, budget)
    assert got == expected
    assert sorted(i for b in got for i in b) == list(range(len(prompts)))
    assert all(shared_load(b, lengths, prompts, owners) <= budget for b in got if len(b) > 1)


def test_split_bins_with_shared_loads():
    """One bin of group A (prompt 4; completions 3, 2, 5: 14 tokens shared, 22 unshared) split in two: rows by length
    9, 7, 6 to the lighter half by shared load: 9 -> h0 (9), 7 -> h1 (7), 6 -> h1 (7 + 2 = 9). Sorted by shared load
    (9, 9: ties keep order)."""
    lengths, prompts, owners = [7, 6, 9], [4, 4, 4], [0, 0, 0]

    def load(b):
        return shared_load(b, lengths, prompts, owners)
    assert split_bins([[2, 0, 1]], lengths, 2, load=load) == [[2], [0, 1]]
    assert load([0, 1]) == 9
    # given the owners, a bin of one prompt still halves by rows
    assert split_bins([[2, 0, 1]], lengths, 2, load=load, owners=owners) == [[2], [0, 1]]


def test_split_bins_keeps_prompt_units_whole():
    """A bin of A (rows 0-2: prompt 4, completions 3, 2, 5 -> 4 + 10 = 14) and B (rows 3-4: prompt 6, completions 1, 1
    -> 8) split in two: by units, A (14) then B (8) -> [0, 1, 2] | [3, 4]: each prompt paid once."""
    lengths, prompts, owners = [7, 6, 9, 7, 7], [4, 4, 4, 6, 6], [0, 0, 0, 3, 3]

    def load(b):
        return shared_load(b, lengths, prompts, owners)
    assert split_bins([[0, 1, 2, 3, 4]], lengths, 2, load=load, owners=owners) == [[0, 1, 2], [3, 4]]
    # by rows (no owners), longest first to the lighter half: row 2 (9) -> h0; row 0 (7) -> h1 (7); row 3 (7) -> h1
    # (14); row 4 (7) -> h0 (16); row 1 (6) -> h1 (14 + 6 - 4 = 16): both halves pay both prompts
    assert split_bins([[0, 1, 2, 3, 4]], lengths, 2, load=load) == [[2, 4], [0, 3, 1]]


@pytest.mark.parametrize("lengths, prompts, owners, world, expected", [
    # the docstring example: units of 4 with shared loads 24 and 11, one per rank
    ([7, 6, 9, 8, 3, 4, 5, 2], [2] * 4 + [1] * 4, [0] * 4 + [4] * 4, 2, [[0, 1, 2, 3], [4, 5, 6, 7]]),
    # 2 units on 4 ranks: rows, as balance_ranks: 9 r0, 8 r1, 7 r2, 6 r3, 5 r3 (11), 4 r2 (11), 3 r1 (11), 2 r0 (11)
    ([7, 6, 9, 8, 3, 4, 5, 2], [2] * 4 + [1] * 4, [0] * 4 + [4] * 4, 4, [[2, 7], [3, 4], [0, 5], [1, 6]]),
    # units of unequal size (3 and 1): rows -> [8, 7 | 1, 2] as the balance_ranks example
    ([8, 7, 1, 2], [1, 1, 1, 1], [0, 0, 0, 3], 2, [[0, 2], [1, 3]]),
    # 4 interleaved units of 2 on 2 ranks: loads A (rows 0, 2) 10 + 9 - 5 = 14, B (1, 3) 4 + 3 - 1 = 6,
    # C (4, 6) 8 + 8 - 4 = 12, D (5, 7) 7 + 2 - 1 = 8: 14 -> r0, 12 -> r1, 8 -> r1 (20), 6 -> r0 (20)
    ([10, 4, 9, 3, 8, 7, 8, 2], [5, 1, 5, 1, 4, 1, 4, 1], [0, 1, 0, 1, 4, 5, 4, 5], 2, [[0, 1, 2, 3], [4, 5, 6, 7]]),
])
def test_balance_ranks_by_units(lengths, prompts, owners, world, expected):
    assert balance_ranks_by_units(lengths, prompts, owners, world) == expected
