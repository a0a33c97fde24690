"""The long-tail benchmark (rl/bench/long_tail.py): its world (seeded completion lengths) and one short run of each
schedule through the real rollout worker (figures present and consistent; no timing is asserted)."""
from rl.bench.long_tail import LongTailEngine, main
from rl.core.episode import SamplingParams


def test_long_tail_lengths_are_seeded():
    # random.Random(0)'s first draws: 0.844, 0.758, 0.421, 0.259, 0.511, 0.405, 0.784, 0.303 -> only the 4th is
    # below 0.3: that prompt's chains are 10 x 4 = 40 decode steps
    engine = LongTailEngine(step_s=0.0, short=4, long_factor=10, long_frac=0.3)
    assert engine.lengths(8, seed=0) == [4, 4, 4, 40, 4, 4, 4, 4]
    groups = engine.generate([[5], [6]], SamplingParams(n=3, seed=0))  # first two draws: both short
    assert [[len(c.completion_ids) for c in g] for g in groups] == [[4, 4, 4], [4, 4, 4]]


def test_each_schedule_runs_and_reports(tmp_path):
    out = tmp_path / "lt.json"
    results = main(["--modes", "0,1", "--steps", "4", "--decode-step-s", "0.001", "--train-s", "0.01",
                    "--json", str(out)])
    assert [r["async_steps"] for r in results] == [0, 1]
    assert [r["staleness_max"] for r in results] == [0.0, 1.0]  # the schedule's staleness, nothing more
    for r in results:
        assert 0 <= r["idle_s"] <= r["step_s"] and 0 <= r["idle_share"] <= 1
    assert out.is_file()
