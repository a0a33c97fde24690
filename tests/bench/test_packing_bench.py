"""The long-tail workload of rl/bench/packing.py (padded vs packed micro-batches)."""
from rl.bench.packing import skewed_lengths


def test_skewed_lengths_are_seeded_bounded_and_long_tailed():
    lengths = skewed_lengths(64, 100, 8192)
    assert lengths == skewed_lengths(64, 100, 8192)  # seeded
    assert min(lengths) >= 100 and max(lengths) == 8192  # the longest row is the limit itself
    median = sorted(lengths)[32]
    assert 1000 < median < 2500  # around max / 5 = 1638: most rows far shorter than the longest
    assert sum(lengths) < 0.5 * 64 * 8192  # padding every row to the longest would more than double the tokens


def test_grouped_rows_share_their_prompt_ids():
    """--group-size 2 --prompt 3: rows 0-1 and 2-3 share a prompt (the ids compared, as train.share_prompts does);
    row 4 is 3 tokens long, so its prompt is cut to 2 tokens and row 5's group prompt is its own."""
    from rl.bench.packing import make_batch
    from rl.core.packing import prompt_owners
    batch = make_batch([6, 8, 5, 4, 3, 7], vocab_size=50, pad_token_id=0, prompt=3, group_size=2)
    C = batch.completion_length
    assert batch.attention_mask[:, :-C].sum(-1).tolist() == [3, 3, 3, 3, 2, 3]
    assert prompt_owners(batch.input_ids, batch.attention_mask, C).tolist() == [0, 0, 2, 2, 4, 5]
    assert batch.attention_mask.sum(-1).tolist() == [6, 8, 5, 4, 3, 7]
