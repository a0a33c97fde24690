"""Recipe errors are one line, name the problem, and come before any model is loaded."""
import json

import pytest

from rl.config.recipe import ConfigError, load_config, parse_override
from rl.config.grpo import GRPOConfig

TINY = "recipes/tiny/r1_zero.yaml"


def test_tiny_recipe_and_overrides():
    cfg = load_config(GRPOConfig, TINY, ["train.learning_rate=3e-4", "output_dir=runs/x", "algorithm.beta=0"])
    assert cfg.train.learning_rate == 3e-4 and cfg.output_dir == "runs/x"
    assert cfg.algorithm.beta == 0.0 and isinstance(cfg.algorithm.beta, float)  # int accepted for float
    assert cfg.prompts_per_step == cfg.train.batch_size // cfg.rollout.group_size


@pytest.mark.parametrize("override, message", [
    (["train.learnig_rate=1e-6"], "unknown recipe key 'train.learnig_rate' (did you mean 'train.learning_rate'?); "
                                  "valid keys in train: learning_rate"),
    (["trian.max_steps=3"], "unknown recipe key 'trian' (did you mean 'train'?)"),
    (["rollout.temprature=0.7"], "unknown recipe key 'rollout.temprature' (did you mean 'rollout.temperature'?)"),
    (["train.max_steps=ten"], "train.max_steps: expected int, got 'ten'"),
    (["rollout.temperature=hot"], "rollout.temperature: expected float, got 'hot'"),
    (["algorithm.mask_truncated_completions=3"], "expected true/false, got 3"),
    (["train.batch_size=60", "rollout.group_size=8"], "train.batch_size=60 is not divisible by rollout.group_size=8"),
    (["train.micro_batch_size=24"], "train.batch_size=64 is not divisible by train.micro_batch_size=24"),
    (["algorithm.loss=ppo"], "algorithm.loss='ppo' is not one of: grpo, bnpo, dapo, dr_grpo"),
    (["algorithm.advantage=zscore"], "algorithm.advantage='zscore' is not one of: group, batch, none"),
    (["rollout.group_size=1", "train.batch_size=4", "train.micro_batch_size=4"], "need at least 2"),
    (["rewards={accuracy: 1.0, acuracy: 0.5}"], "acuracy"),
    (["train.max_steps=0"], "train.max_steps=0 must be at least 1"),
    (["justakey"], "not of the form key.path=value"),
    (["rollout.engine=vllm", "rollout.tensor_parallel_size=2"], "GRPO pushes weights into a colocated engine"),
    (["eval_rewards={speed: {}}"], "eval_rewards: unknown slot 'speed'; valid: accuracy, format"),
    (["eval_rewards={accuracy: {reward: cod}}"], "eval_rewards.accuracy: unknown reward 'cod'"),
    (["eval_rewards={accuracy: code}"], "eval_rewards.accuracy: expected a mapping of parameters"),
])
def test_bad_recipes_are_one_line_errors(override, message):
    with pytest.raises(ConfigError) as err:
        load_config(GRPOConfig, TINY, override)
    text = str(err.value)
    assert message in text
    assert "\n" not in text


def test_eval_rewards_judge_the_code_world_with_the_code_reward():
    cfg = load_config(GRPOConfig, "recipes/tiny/r1_zero_code.yaml", [])
    assert cfg.eval_rewards == {"accuracy": {"reward": "code"}, "format": {}}
    assert load_config(GRPOConfig, TINY, []).eval_rewards == {"accuracy": {}, "format": {}}  # the default


def test_unknown_reward_lists_valid_names():
    with pytest.raises(ConfigError) as err:
        load_config(GRPOConfig, TINY, ["rewards={acuracy: 1.0}"])
    assert "accuracy" in str(err.value) and "format" in str(err.value)


def test_missing_recipe_file():
    with pytest.raises(ConfigError, match="recipe file not found: nope.yaml"):
        load_config(GRPOConfig, "nope.yaml")


def test_parse_override_scalars():
    assert parse_override("a.b=3e-4") == ("a.b", 3e-4)
    assert parse_override("a.b=true") == ("a.b", True)
    assert parse_override("a.b=null") == ("a.b", None)
    assert parse_override("a=runs/x") == ("a", "runs/x")


def test_missing_dataset_column_fails_before_model_load(tmp_path, monkeypatch):
    """grpo.main must stop at the data step: no model is ever resolved."""
    from rl import grpo
    from rl.train import models
    data = tmp_path / "d.jsonl"
    data.write_text(json.dumps({"question": "1+1?", "answer": "2"}) + "\n")
    monkeypatch.setattr(models, "resolve_model_path", lambda *_: pytest.fail("model loaded before data check"))
    from data.loading import DataError
    with pytest.raises(DataError, match=r"has no column 'prompt'; columns: answer, question"):
        grpo.main([TINY, f"data.train={data}", "data.test=null", f"output_dir={tmp_path / 'run'}"])


def test_cli_prints_one_line_and_exits_2():
    import subprocess
    import sys
    proc = subprocess.run([sys.executable, "rl/grpo.py", TINY, "train.lr=1"], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "error: unknown recipe key 'train.lr'; valid keys in train: learning_rate, lr_scheduler, warmup_steps, "
        "warmup_ratio, lr_step_milestones, lr_step_values, lr_decay_fraction, lr_min_ratio, max_steps, batch_size, micro_batch_size, max_tokens_per_micro_batch, share_prompts, max_grad_norm, weight_decay, adam_beta1, adam_beta2, seed, "
        "logprob_chunk_elements, dist_timeout_s"]


def test_reward_parameters_override_a_plain_weight():
    cfg = load_config(GRPOConfig, TINY, ["rewards.format.weight=0.25", "rewards.format.prefilled_think=true"])
    assert cfg.rewards == {"accuracy": 1.0, "format": {"weight": 0.25, "prefilled_think": True}}
    cfg = load_config(GRPOConfig, TINY, ["rewards.accuracy=2"])
    assert cfg.rewards == {"accuracy": 2, "format": 0.5}


def test_invalid_yaml_names_file_line_and_column(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("model:\n  name_or_path: tiny\n data: [unclosed\n")
    with pytest.raises(ConfigError, match=rf"^recipe {bad}: invalid YAML at line 3, column 2: "):
        load_config(GRPOConfig, bad)


def test_overwrite_cannot_resume_from_a_path():
    with pytest.raises(ConfigError, match="overwrite=true starts a new run: it cannot resume from 'runs/x/c'"):
        load_config(GRPOConfig, TINY, ["overwrite=true", "resume=runs/x/c"])


@pytest.mark.parametrize("script, module, cls", [
    ("rl/grpo.py", "rl.config.grpo", "GRPOConfig"), ("rl/sft.py", "rl.config.sft", "SFTConfig"),
    ("rl/distill.py", "rl.config.distill", "DistillConfig"),
])
def test_help_lists_every_key_with_its_default(script, module, cls):
    """`--help` lists the sections and their keys with defaults, read from the schema (it was 8 lines)."""
    import dataclasses
    import importlib
    from rl.config.cli import usage

    text = usage(script, "x.yaml", keys=True)
    schema = getattr(importlib.import_module(module), cls)

    def leaves(obj, prefix=""):
        for f in dataclasses.fields(obj):
            value = getattr(obj, f.name)
            yield from leaves(value, f"{prefix}{f.name}.") if dataclasses.is_dataclass(value) else [(prefix, f.name)]
    keys = list(leaves(schema()))
    assert len(keys) > 20
    flat = " ".join(text.split())  # wrapped lines joined
    for prefix, key in keys:
        assert f" {key}=" in flat or f"{prefix.rstrip('.')}: {key}=" in flat, (prefix, key)
    if cls == "GRPOConfig":
        assert "train: learning_rate=1e-06," in flat and "rollout: engine=hf," in flat
