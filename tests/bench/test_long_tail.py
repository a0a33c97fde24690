"""The long-tail benchmark (rl/bench/long_tail.py): its world (seeded completion lengths) and one short run of each
schedule through the real rollout worker (figures present and consistent; no timing is asserted)."""
from rl.bench.long_tail import LongTailEngine, main
from rl.core.episode import SamplingParams


def test_long_tail_lengths_are_a_property_of_the_prompt():
    # random.Random(i)'s first draw for i = 0..7: 0.844, 0.134, 0.956, 0.238, 0.236, 0.623, 0.793, 0.324 -> prompts
    # 1, 3, 4 are below 0.3: their chains are 10 x 4 = 40 decode steps, in any batch they are drawn into
    engine = LongTailEngine(step_s=0.0, short=4, long_factor=10, long_frac=0.3)
    assert engine.lengths([[i] for i in range(8)]) == [4, 40, 4, 40, 40, 4, 4, 4]
    assert engine.lengths([[3], [0]]) == [40, 4]
    groups = engine.generate([[0], [2]], SamplingParams(n=3, seed=0))  # both short
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


def test_streaming_steps_join_rows_into_free_slots():
    """Continuous batching by hand, 3 slots. Job 0: prompts [1], [2] (n 1, 3 tokens each); job 1: prompt [3] (n 2,
    1 token each). Queue: (0,0,0) (0,1,0) (1,0,0) (1,0,1).
      step 1: 3 rows join; (1,0,0) has its 1 token -> done
      step 2: (1,0,1) takes the free slot and finishes at once; the two 3-token rows have 2 tokens
      step 3 (weights version 1 applied before it): both 3-token rows finish, their last token stamped 1
    Token t of sample j of prompt p is 2 + (7 p + 3 j + t) % 50: prompt [1] -> 9, 10, 11; prompt [3], j 1 -> 26.
    The same completions as `generate` (one batch), which has no versions."""
    engine = LongTailEngine(step_s=0.0, short=None, slots=3)
    engine.submit(0, [[1], [2]], SamplingParams(n=1, max_tokens=3))
    engine.submit(1, [[3]], SamplingParams(n=2, max_tokens=1))
    assert engine.pending() == 4
    first, second = engine.step(), engine.step()
    assert [k for k, _ in first] == [(1, 0, 0)] and [k for k, _ in second] == [(1, 0, 1)]
    assert second[0][1].completion_ids == [26] and second[0][1].finish_reason == "length"
    engine.version = 1
    third = engine.step()
    assert [k for k, _ in third] == [(0, 0, 0), (0, 1, 0)] and engine.pending() == 0
    assert [c.completion_ids for _, c in third] == [[9, 10, 11], [16, 17, 18]]
    assert [c.versions for _, c in third] == [[0, 0, 1], [0, 0, 1]]
    batch = engine.generate([[1], [2]], SamplingParams(n=1, max_tokens=3))
    assert [(c.completion_ids, c.logprobs, c.finish_reason) for g in batch for c in g] == \
        [(c.completion_ids, c.logprobs, c.finish_reason) for _, c in third]


def test_streamed_mode_runs_and_reports(tmp_path):
    results = main(["--modes", "0,s1", "--steps", "4", "--decode-step-s", "0.001", "--train-s", "0.01"])
    assert [r["mode"] for r in results] == ["sync", "streamed k=1"]
    streamed = results[1]
    assert streamed["staleness_max"] <= 1.0 and streamed["dropped_groups"] >= 0
    assert 0 <= streamed["idle_s"] <= streamed["step_s"] and streamed["engine_idle_s"] >= 0
