"""recipes/r1_zero_8k.yaml really fits 8k-token completions (issue 16, defect 6): its model's config (built here with
DeepSeek-R1-Distill-Qwen-1.5B's published shape, no download) passes the context check that stops recipes/r1_zero.yaml's
Qwen2.5-Math-1.5B (4,096 positions) from going to 8k."""
from __future__ import annotations

from pathlib import Path

import pytest

from rl.config.grpo import GRPOConfig
from rl.config.recipe import ConfigError, load_config
from rl.train.models import check_context_length, context_length, rope_scaled

RECIPES = Path(__file__).resolve().parents[1] / "recipes"


def qwen2_config_dir(tmp_path, name: str, positions: int) -> str:
    """A config.json only (what the check reads): Qwen2, 28 layers, hidden 1536, 12 heads / 2 KV heads."""
    from transformers import Qwen2Config

    path = tmp_path / name
    Qwen2Config(vocab_size=151936, hidden_size=1536, intermediate_size=8960, num_hidden_layers=28,
                num_attention_heads=12, num_key_value_heads=2, max_position_embeddings=positions,
                rope_theta=10000.0, tie_word_embeddings=False).save_pretrained(path)
    return str(path)


def test_the_8k_recipe_fits_its_model(tmp_path):
    cfg = load_config(GRPOConfig, RECIPES / "r1_zero_8k.yaml")
    r = cfg.rollout
    assert r.max_completion_length >= 8192 and cfg.model.name_or_path == "deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B"
    distill = qwen2_config_dir(tmp_path, "r1_distill_qwen_1.5b", 131072)
    assert context_length(distill) == 131072 and not rope_scaled(distill)  # positions of its own, no scaling
    check_context_length(distill, r.max_prompt_length, r.max_completion_length)  # 1024 + 8192 = 9216 <= 131072


def test_the_4k_model_of_r1_zero_cannot_take_8k(tmp_path):
    math_4k = qwen2_config_dir(tmp_path, "qwen2.5_math_1.5b", 4096)
    base = load_config(GRPOConfig, RECIPES / "r1_zero.yaml").rollout
    check_context_length(math_4k, base.max_prompt_length, base.max_completion_length)  # 1024 + 3000 fits
    r = load_config(GRPOConfig, RECIPES / "r1_zero_8k.yaml").rollout
    with pytest.raises(ConfigError, match="= 9216 exceeds the 4096 positions"):
        check_context_length(math_4k, r.max_prompt_length, r.max_completion_length)
