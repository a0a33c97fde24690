"""Stream mode's pure pieces (rl/core/streaming.py): slot admission, group assembly, per-token versions ->
group version -> staleness, and which arrived groups a step takes. Expected values derived by hand."""
import pytest

from rl.core.staleness import staleness_metrics
from rl.core.streaming import (GroupAssembler, admit, group_version, spanning_fraction, take_groups,
                               version_spans)


@pytest.mark.parametrize("queued, running, slots, expected", [
    (5, 30, 32, 2),    # 2 free slots
    (1, 0, 32, 1),     # fewer queued than free
    (4, 32, 32, 0),    # full: nobody joins
    (0, 3, 32, 0),     # nothing queued
    (40, 0, 32, 32),   # an empty engine fills every slot at once
])
def test_admit_fills_free_slots(queued, running, slots, expected):
    assert admit(queued, running, slots) == expected


def test_admit_refuses_nonsense():
    with pytest.raises(ValueError, match="slots=0 must be >= 1"):
        admit(1, 0, 0)


def test_groups_complete_when_their_last_sequence_does_in_any_order():
    """Two jobs, n = 2: job 0 has prompts 0, 1; job 1 has prompt 0. Sequences finish interleaved; each group comes
    out exactly once, at its last sequence, in sample order."""
    g = GroupAssembler()
    g.expect(0, prompts=2, n=2)
    g.expect(1, prompts=1, n=2)
    events = [((0, 1, 1), "b1"), ((1, 0, 0), "x0"), ((0, 1, 0), "b0"), ((0, 0, 0), "a0"), ((1, 0, 1), "x1"),
              ((0, 0, 1), "a1")]
    out = [(key[:2], g.add(*key, item)) for key, item in events]
    assert out == [((0, 1), None), ((1, 0), None), ((0, 1), ["b0", "b1"]), ((0, 0), None), ((1, 0), ["x0", "x1"]),
                   ((0, 0), ["a0", "a1"])]
    assert g.open_groups() == 0


@pytest.mark.parametrize("bad, message", [
    (lambda g: g.add(9, 0, 0, "?"), "unknown job 9"),
    (lambda g: g.add(0, 0, 2, "?"), "sample 2 outside 0..1"),
    (lambda g: (g.add(0, 0, 0, "a"), g.add(0, 0, 0, "a")), "finished twice"),
    (lambda g: g.expect(0, 1, 2), "submitted twice"),
])
def test_group_assembler_refuses_inconsistent_sequences(bad, message):
    g = GroupAssembler()
    g.expect(0, prompts=1, n=2)
    with pytest.raises(ValueError, match=message):
        bad(g)


@pytest.mark.parametrize("versions, expected", [
    ([[0, 0, 1], [1, 1]], 0),      # one completion started before the push of version 1
    ([[3, 3], [3]], 3),
    ([[], [2, 4]], 2),             # an empty completion has no version of its own
])
def test_group_version_is_the_oldest_token(versions, expected):
    assert group_version(versions) == expected


def test_group_version_of_no_tokens_is_an_error():
    with pytest.raises(ValueError, match="no tokens"):
        group_version([[], []])


@pytest.mark.parametrize("versions, expected", [
    ([0, 0, 1, 1, 1, 3], [(0, 2), (1, 3), (3, 1)]),
    ([5], [(5, 1)]),
    ([], []),
])
def test_version_spans(versions, expected):
    assert version_spans(versions) == expected


def test_version_spans_refuse_versions_going_back():
    with pytest.raises(ValueError, match="go back from 2 to 1"):
        version_spans([2, 1])


def test_per_token_versions_to_staleness():
    """Two groups trained at learner version 4. Group A: tokens of versions [2, 2, 3] and [3, 4] -> version 2,
    staleness 2 (its oldest token), even though most tokens are fresher; group B: [4], [4] -> staleness 0.
    Per sample (2 completions each): staleness [2, 2, 0, 0] -> mean 1.0, max 2; versions mean (2+2+4+4)/4 = 3."""
    groups = [[[2, 2, 3], [3, 4]], [[4], [4]]]
    versions = [group_version(g) for g in groups]
    assert versions == [2, 4]
    assert staleness_metrics(versions, 4, [2, 2]) == {"rollout/staleness_mean": 1.0, "rollout/staleness_max": 2.0,
                                                      "rollout/version_mean": 3.0, "rollout/version_max": 4.0}
    assert spanning_fraction([c for g in groups for c in g]) == 0.5  # [2,2,3] and [3,4] span two versions


@pytest.mark.parametrize("versions, need, learner, k, taken, dropped", [
    ([2, 0, 3, 3], 2, 3, 2, [0, 2], [1]),        # staleness [1, 3, 0, 0]: 1 is too old; 3 waits
    ([2, 0, 3, 3], 2, 3, None, [1, 0], []),      # no bound: the two oldest
    ([3, 1, 2], 2, 3, 2, [1, 2], []),            # oldest first: the version-3 group that came first waits
    ([4, 4, 2, 4], 2, 4, 2, [2, 0], []),         # a long chain (v2) arriving behind fresher groups goes first
    ([0, 0, 1], 3, 2, 1, [2], [0, 1]),           # not enough fresh ones yet: take what there is
    ([1, 1, 1], 0, 1, 0, [], []),                # nothing needed
    ([5, 5], 1, 5, 0, [0], []),                  # k = 0 admits only the learner's own version
])
def test_take_groups(versions, need, learner, k, taken, dropped):
    assert take_groups(versions, need, learner, k) == (taken, dropped)
