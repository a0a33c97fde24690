"""`tool_format` (issue 27): the share of an episode's tool calls that parsed, from the counts multi-turn episodes
hand to the rewards as columns; and those columns really reach the rewards through the scorer."""
import pytest

from rewards import RewardScorer, get_reward
from rl.core.episode import Completion, Episode
from rl.rollout.episodes.collect import score_episodes


@pytest.mark.parametrize("calls, errors, expected", [
    (2, 0, 1.0),  # every call parsed
    (0, 0, 1.0),  # no call: the form is not wrong
    (1, 3, 0.25),  # 1 of 4 parsed
    (0, 2, 0.0),  # nothing parsed
])
def test_tool_format_table(calls, errors, expected):
    assert get_reward("tool_format")([""], tool_calls=[calls], tool_format_errors=[errors]) == [expected]


def test_tool_format_cannot_judge_single_turn_runs():
    assert get_reward("tool_format")(["a", "b"], answer=["1", "2"]) == [None, None]


def test_episode_counts_reach_the_rewards_as_columns():
    info = [{"tool_calls": 1.0, "tool_format_errors": 1.0}, {"tool_calls": 2.0, "tool_format_errors": 0.0}]
    episodes = [Episode(0, {"prompt": "q", "answer": "4"}, Completion([1], [2], "x", "stop", [0.0], mask=[1], info=i))
                for i in info]
    scorer = RewardScorer({"tool_format": 1.0}, num_workers=0)
    try:
        score_episodes(episodes, scorer)
    finally:
        scorer.close()
    assert [e.rewards["tool_format"] for e in episodes] == [0.5, 1.0]  # 1 of 2 parsed; 2 of 2
