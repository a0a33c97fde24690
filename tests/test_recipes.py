"""Every recipe in recipes/ (recursively) parses and type-checks against its schema; launch configs load."""
from pathlib import Path

import pytest
import yaml

from rl.config.recipe import load_config

RECIPES = Path(__file__).resolve().parents[1] / "recipes"
ALL = sorted(p for p in RECIPES.rglob("*.yaml"))


def schema_for(path: Path):
    if path.parent.name == "accelerate":
        return None
    if "teacher" in (yaml.safe_load(path.read_text()) or {}):  # distillation, and R1's stage 3 (r1_rs_sft.yaml)
        from rl.config.distill import DistillConfig
        return DistillConfig
    if "sft" in path.stem:
        from rl.config.sft import SFTConfig
        return SFTConfig
    if "distill" in path.stem:
        from rl.config.distill import DistillConfig
        return DistillConfig
    from rl.config.grpo import GRPOConfig
    return GRPOConfig


def test_recipes_found():
    names = {str(p.relative_to(RECIPES)) for p in ALL}
    assert {"r1_zero.yaml", "tiny/r1_zero.yaml", "accelerate/zero3.yaml", "accelerate/ddp.yaml",
            "accelerate/zero2.yaml", "accelerate/fsdp2.yaml"} <= names


@pytest.mark.parametrize("path", ALL, ids=lambda p: str(p.relative_to(RECIPES)))
def test_recipe_is_valid(path):
    schema = schema_for(path)
    if schema is None:
        from accelerate.commands.config.config_args import ClusterConfig
        cfg = ClusterConfig.from_yaml_file(str(path))  # raises on keys accelerate does not know
        assert cfg.num_processes >= 1
        return
    cfg = load_config(schema, path)  # keys, types, registries, reward names
    student = getattr(cfg, "student", None)
    if student is not None and student.sft_recipe:  # the student's SFT recipe with the overrides, as rl/distill.py
        from rl.config.sft import SFTConfig
        load_config(SFTConfig, RECIPES.parent / student.sft_recipe, student.overrides)
    header = path.read_text().splitlines()[0]
    assert header.startswith("#"), "a recipe opens with a comment saying what it is and how to launch it"


def test_recipes_are_plain_yaml_mappings():
    for path in ALL:
        assert isinstance(yaml.safe_load(path.read_text()), dict), path


@pytest.mark.parametrize("recipe, answer_from", [
    ("r1_zero.yaml", "tag_or_box"), ("r1_zero_8k.yaml", "tag_or_box"), ("r1.yaml", "tag_or_box"),
    ("r1_zero_tools.yaml", "tag_or_box"), ("tiny/r1_zero_tools.yaml", "tag_or_box"),  # (an output block holds numbers)  # the tool's output block holds the number too: only the tag counts
    ("tiny/r1_zero.yaml", "anywhere"),  # the miniature's findings were measured with the answer read anywhere
])
def test_where_the_r1_recipes_read_the_answer(recipe, answer_from):
    """R1 asks for the answer in a specified format so that rules can verify it: the R1 recipes' accuracy (training
    and held-out evaluation) credits only an <answer> tag or a \\boxed{} answer, never a stray last number."""
    from rewards import get_reward
    from rl.config.grpo import GRPOConfig
    from rewards.scoring.registry import eval_rewards
    from rewards.scoring.scorer import _parse_spec
    cfg = load_config(GRPOConfig, RECIPES / recipe)
    params = {n: p for n, _, p in _parse_spec(cfg.rewards)}["accuracy"]
    stray = ["xx 12 yy 9 zz"]  # the completion: its last number is the gold, in no answer format
    expected = [0.0] if answer_from == "tag_or_box" else [1.0]
    assert get_reward("accuracy", **params)(stray, answer=["\\boxed{9}"]) == expected
    assert eval_rewards(cfg.eval_rewards)["accuracy"](stray, answer=["\\boxed{9}"]) == expected
