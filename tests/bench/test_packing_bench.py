"""The long-tail workload of rl/bench/packing.py (padded vs packed micro-batches)."""
from rl.bench.packing import skewed_lengths


def test_skewed_lengths_are_seeded_bounded_and_long_tailed():
    lengths = skewed_lengths(64, 100, 8192)
    assert lengths == skewed_lengths(64, 100, 8192)  # seeded
    assert min(lengths) >= 100 and max(lengths) == 8192  # the longest row is the limit itself
    median = sorted(lengths)[32]
    assert 1000 < median < 2500  # around max / 5 = 1638: most rows far shorter than the longest
    assert sum(lengths) < 0.5 * 64 * 8192  # padding every row to the longest would more than double the tokens
