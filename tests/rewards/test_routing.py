"""Rewards chosen per row (rewards/scoring/routing.py, RewardScorer(reward_sets=...)): a row's task picks the rewards
that score it; the others give it None (never 0), which the weighted total counts as 0 and the metrics leave out."""
from __future__ import annotations

import pytest
import torch

from rewards import RewardScorer, validate_reward_spec
from rewards.scoring.routing import check_reward_sets, check_row_tasks, plan_rows
from rl.core.advantages import group_scaled

def count_rows(completions, **kwargs):
    """Cheap test reward: each completion scores the number of completions its call got."""
    return [float(len(completions))] * len(completions)


count_rows.__reward_cheap__ = True

NAMES = ["accuracy", "format", "tests.rewards.test_routing:count_rows"]
COUNT = "tests.rewards.test_routing:count_rows"


@pytest.mark.parametrize("sets, error", [
    ({}, "reward_sets: expected a non-empty mapping"),
    ([["accuracy"]], "reward_sets: expected a non-empty mapping"),
    ({"math": []}, "reward_sets.math: expected a non-empty list"),
    ({"math": "accuracy"}, "reward_sets.math: expected a non-empty list"),
    ({"math": ["acuracy"]}, "reward_sets.math: unknown reward 'acuracy'; the recipe's rewards: accuracy, format"),
    ({"math": ["accuracy", "accuracy"], "chat": ["format"]}, "reward_sets.math: a reward is listed twice"),
    ({"math": ["accuracy"]}, "reward_sets: reward 'format' is in rewards but in no reward set (sets: math)"),
    ({"format": ["accuracy", "format"]}, "reward_sets: task 'format' has the name of a reward"),
    ({"a/b": ["accuracy", "format"]}, "task names must be non-empty strings without '/'"),
])
def test_bad_reward_sets_are_one_line_errors(sets, error):
    with pytest.raises(ValueError) as e:
        validate_reward_spec({"accuracy": 1.0, "format": 0.5}, sets)
    assert error in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize("tasks, error", [
    (["math", "poetry"], "row 1: task 'poetry' has no reward set (reward_sets: math, chat)"),
    ([None], "row 0: no 'task' column (reward_sets: math, chat)"),
    ([3], "row 0: task 3 has no reward set"),
])
def test_rows_without_a_known_task_are_one_line_errors(tasks, error):
    with pytest.raises(ValueError, match=error.replace("(", r"\(").replace(")", r"\)")):
        check_row_tasks(tasks, {"math": ["accuracy"], "chat": ["format"]})


def test_plan_keeps_every_row_once_in_first_seen_task_order():
    plan = plan_rows(["chat", "math", "chat", "math", "math"], {"math": ["accuracy"], "chat": ["format"]})
    assert plan == [("chat", [0, 2], ["format"]), ("math", [1, 3, 4], ["accuracy"])]


ARITH_RIGHT = "<think> 4*5=20 </think> <answer> 20 </answer>"   # accuracy 1, format 1
ARITH_WRONG = "<answer> 9 </answer>"                            # accuracy 0, format 0
CHAT = "<think> hi </think> <answer> Hello! </answer>"          # format 1; its answer None would be None anyway


@pytest.mark.parametrize("workers", [0, 1])
def test_each_reward_scores_its_rows_only_and_the_others_get_none(workers):
    spec = {"accuracy": 1.0, "format": 0.5, COUNT: 0.25}
    sets = {"arithmetic": ["accuracy", "format"], "general": ["format", COUNT]}
    completions = [ARITH_RIGHT, CHAT, ARITH_WRONG, CHAT]
    cols = {"answer": ["20", None, "20", None], "task": ["arithmetic", "general", "arithmetic", "general"]}
    with RewardScorer(spec, num_workers=workers, reward_sets=sets) as scorer:
        res = scorer.score(completions, cols)
    # accuracy: the arithmetic rows only (a general row's missing gold never reaches it); the count reward: general
    assert res.per_reward["accuracy"] == [1.0, None, 0.0, None]
    assert res.per_reward["format"] == [1.0, 1.0, 0.0, 1.0]
    assert res.per_reward[COUNT] == [None, 2.0, None, 2.0]  # one call, with the two general rows
    # totals: 1 + 0.5 = 1.5; 0.5 + 0.25 * 2 = 1.0; 0; 1.0 (None adds 0)
    assert res.totals == [1.5, 1.0, 0.0, 1.0]
    m = res.metrics
    assert m["rewards/accuracy/mean"] == 0.5 and m["rewards/accuracy/none_frac"] == 0.0  # over the rows it scores
    assert m["rewards/arithmetic/accuracy"] == 0.5 and m["rewards/arithmetic/format"] == 0.5
    assert m["rewards/general/format"] == 1.0 and m[f"rewards/general/{COUNT}"] == 2.0
    assert m["reward/arithmetic/mean"] == 0.75 and m["reward/general/mean"] == 1.0
    assert m["task/arithmetic/frac"] == 0.5
    assert "rewards/general/accuracy" not in m


def test_a_reward_in_every_set_scores_as_without_sets():
    """Equivalence: sets that give every task every reward change no value, total or reward metric."""
    spec = {"accuracy": 1.0, "format": 0.5}
    completions = [ARITH_RIGHT, ARITH_WRONG, CHAT, ARITH_RIGHT]
    cols = {"answer": ["20", "20", "7", "3"], "task": ["a", "b", "b", "a"]}
    with RewardScorer(spec, num_workers=0) as plain, \
            RewardScorer(spec, num_workers=0, reward_sets={"a": ["accuracy", "format"],
                                                           "b": ["accuracy", "format"]}) as routed:
        p, r = plain.score(completions, cols), routed.score(completions, cols)
    assert p.totals == r.totals and p.per_reward == r.per_reward
    for key in ("rewards/accuracy/mean", "rewards/format/mean", "rewards/accuracy/none_frac"):
        assert p.metrics[key] == r.metrics[key]


def test_an_unknown_task_at_scoring_time_is_an_error():
    with RewardScorer({COUNT: 1.0}, num_workers=0, reward_sets={"general": [COUNT]}) as scorer:
        with pytest.raises(ValueError, match="row 1: task 'math' has no reward set"):
            scorer.score(["a", "b"], {"task": ["general", "math"]})


def test_group_advantages_of_a_task_only_see_its_own_rewards():
    """A group is one prompt, hence one task: the rewards that do not apply to it are None for every member, add 0
    to every total, and leave its advantages as if only its own rewards existed."""
    spec = {"accuracy": 1.0, "format": 0.5}
    completions = [ARITH_RIGHT, ARITH_WRONG, CHAT, CHAT.replace("<think> hi </think> ", "")]
    cols = {"answer": ["20", "20", None, None], "task": ["math", "math", "chat", "chat"]}
    with RewardScorer(spec, num_workers=0, reward_sets={"math": ["accuracy", "format"], "chat": ["format"]}) as s:
        totals = s.score(completions, cols).totals
    with RewardScorer({"format": 0.5}, num_workers=0) as only_format:
        chat_alone = only_format.score(completions[2:], {}).totals
    assert totals[2:] == chat_alone == [0.5, 0.0]
    adv, _ = group_scaled(torch.tensor(totals), 2)  # groups [1.5, 0] and [0.5, 0]: each +-1/sqrt(2)*... scaled
    adv_alone, _ = group_scaled(torch.tensor(chat_alone), 2)
    assert torch.allclose(adv[2:], adv_alone)
    assert adv[0] > 0 > adv[1]


@pytest.mark.parametrize("override, message", [
    (["reward_sets={arithmetic: [accuracy, format], general: [politeness]}"],
     "reward_sets.general: unknown reward 'politeness'; the recipe's rewards: accuracy, format"),
    (["reward_sets={arithmetic: [accuracy]}"], "reward_sets: reward 'format' is in rewards but in no reward set"),
    (["reward_sets={arithmetic: [accuracy, format]}", "data.columns=[answer]"],
     "reward_sets picks each row's rewards by its 'task' column: add task to data.columns"),
])
def test_recipe_reward_sets_are_checked_at_load_time(override, message):
    from rl.config.grpo import GRPOConfig
    from rl.config.recipe import ConfigError, load_config
    with pytest.raises(ConfigError) as err:
        load_config(GRPOConfig, "recipes/tiny/r1_zero.yaml", override)
    assert str(err.value).startswith(message) and "\n" not in str(err.value)


def test_a_training_row_of_an_unknown_task_stops_the_run_before_any_model_loads():
    from rl.config.recipe import ConfigError
    from rl.config.reward_checks import check_reward_rows, reward_specs_by_row
    sets = {"arithmetic": ["accuracy"], "general": ["format"]}
    rows = [{"prompt": "p", "task": "arithmetic"}, {"prompt": "q", "task": "general"}, {"prompt": "r", "task": "x"}]
    with pytest.raises(ConfigError, match=r"^training data: row 2: task 'x' has no reward set \(reward_sets: "
                                          r"arithmetic, general\)$"):
        check_reward_rows(sets, rows, "training data")
    check_reward_rows(sets, rows[:2], "training data")  # known tasks: nothing to say
    assert reward_specs_by_row({"accuracy": 1.0, "format": 0.5}, sets, rows[:2]) == [
        ({"accuracy": 1.0}, rows[0]), ({"format": 0.5}, rows[1])]
