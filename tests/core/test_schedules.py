"""LR schedule factors against hand computations (rl/core/schedules.py), and the same schedule in GRPO and SFT."""
import pytest
import torch

from rl.core.schedules import SCHEDULES, ScheduleParams, lr_factor_fn


@pytest.mark.parametrize("name, warmup, total, params, expected", [
    # warmup 2 of 6: (s+1)/3 = 1/3, 2/3; then constant 1
    ("constant", 2, 6, ScheduleParams(), [1 / 3, 2 / 3, 1, 1, 1, 1]),
    # linear, no warmup, T = 4: p = s/4 -> 1, 0.75, 0.5, 0.25
    ("linear", 0, 4, ScheduleParams(), [1, 0.75, 0.5, 0.25]),
    # cosine, T = 4: (1 + cos(pi s/4)) / 2 = 1, 0.85355, 0.5, 0.14645
    ("cosine", 0, 4, ScheduleParams(), [1, 0.8535534, 0.5, 0.1464466]),
    # step, T = 10, milestones 0.8 / 0.9 with 0.316 / 0.1: p = 0.0..0.7 -> 1; p = 0.8 -> 0.316; p = 0.9 -> 0.1
    ("step", 0, 10, ScheduleParams(), [1] * 8 + [0.316, 0.1]),
    # step after warmup 2, T = 6: post-warmup p = (s-2)/4 = 0, .25, .5, .75; milestone 0.5 -> 0.1
    ("step", 2, 6, ScheduleParams(milestones=(0.5,), values=(0.1,)), [1 / 3, 2 / 3, 1, 1, 0.1, 0.1]),
    # wsd, T = 10, last 20% decays linearly to 0: p = 0.8 -> 1, p = 0.9 -> 0.5
    ("wsd", 0, 10, ScheduleParams(decay_fraction=0.2), [1] * 9 + [0.5]),
    # wsd to a floor of 0.1, last 50% of T = 4: p = 0.5 -> 1, p = 0.75 -> 1 - 0.9 * 0.5 = 0.55
    ("wsd", 0, 4, ScheduleParams(decay_fraction=0.5, min_ratio=0.1), [1, 1, 1, 0.55]),
])
def test_schedule_factors(name, warmup, total, params, expected):
    f = lr_factor_fn(name, warmup, total, params)
    assert [f(s) for s in range(total)] == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize("params, message", [
    (ScheduleParams(milestones=(0.5,), values=(0.1, 0.01)), "must have the same length"),
    (ScheduleParams(milestones=(0.9, 0.5), values=(0.1, 0.01)), "increasing fractions"),
    (ScheduleParams(decay_fraction=0.0), "lr_decay_fraction=0.0"),
])
def test_bad_schedule_params_name_the_problem(params, message):
    with pytest.raises(ValueError, match=message):
        lr_factor_fn("step", 0, 10, params)


def test_every_registered_schedule_starts_at_peak_after_warmup():
    for name in SCHEDULES:
        assert lr_factor_fn(name, 3, 10)(3) == 1.0, name


def test_recipe_rejects_unknown_schedule_in_one_line():
    from rl.config.grpo import GRPOConfig
    from rl.config.recipe import ConfigError, load_config
    with pytest.raises(ConfigError, match=r"train.lr_scheduler='exp' is not one of: constant, linear, cosine, step, wsd"):
        load_config(GRPOConfig, "recipes/tiny/r1_zero.yaml", ["train.lr_scheduler=exp"])
    with pytest.raises(ConfigError, match=r"^train.lr_step_milestones \[0.5\] and lr_step_values"):
        load_config(GRPOConfig, "recipes/tiny/r1_zero.yaml", ["train.lr_step_milestones=[0.5]"])


def test_sft_trainer_uses_the_grpo_schedule():
    """rl/sft.py's trainer builds its scheduler with the same function as the GRPO learner: same LR sequence."""
    from rl.config.recipe import load_config
    from rl.config.sft import SFTConfig
    from rl.sft import scheduled_trainer_class
    from rl.train.learner import make_scheduler

    cfg = load_config(SFTConfig, "recipes/tiny/cold_start_sft.yaml",
                      ["train.lr_scheduler=step", "train.warmup_steps=1", "train.lr_step_milestones=[0.5]",
                       "train.lr_step_values=[0.1]"])

    class FakeTrainer:  # the one thing create_scheduler reads from transformers' Trainer
        lr_scheduler = None

        def __init__(self, optimizer):
            self.optimizer = optimizer

    def lrs(scheduler, n):
        out = []
        for _ in range(n):
            out.append(scheduler.get_last_lr()[0])
            scheduler.optimizer.step()
            scheduler.step()
        return out

    opt_a = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sft_sched = scheduled_trainer_class(FakeTrainer, cfg.train)(opt_a).create_scheduler(5)
    opt_b = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    # warmup 1: 1/2; then p = (s-1)/4: 0, .25 -> 1; .5, .75 -> 0.1
    assert lrs(sft_sched, 5) == pytest.approx([0.5, 1, 1, 0.1, 0.1])
    assert lrs(make_scheduler(opt_b, cfg.train, 5), 5) == pytest.approx([0.5, 1, 1, 0.1, 0.1])


@pytest.mark.parametrize("overrides, total, warmup", [
    (["train.warmup_steps=0"], 100, 0),
    (["train.warmup_steps=7"], 100, 7),
    (["train.warmup_steps=0", "train.warmup_ratio=0.05"], 300, 15),   # 5% of 300 steps
    (["train.warmup_steps=0", "train.warmup_ratio=0.05"], 10, 0),     # round(0.5) = 0: no warmup on 10 steps
])
def test_warmup_ratio(overrides, total, warmup):
    from rl.config.grpo import GRPOConfig
    from rl.config.recipe import load_config
    assert load_config(GRPOConfig, "recipes/tiny/r1_zero.yaml", overrides).train.warmup_for(total) == warmup


def test_warmup_steps_and_ratio_together_are_refused():
    from rl.config.recipe import ConfigError, load_config
    from rl.config.sft import SFTConfig
    with pytest.raises(ConfigError, match="set one of them"):
        load_config(SFTConfig, "recipes/tiny/cold_start_sft.yaml", ["train.warmup_ratio=0.1"])  # recipe: steps 5
