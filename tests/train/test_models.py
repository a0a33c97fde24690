"""Context length (issue 16, defect 6): prompt + completion must fit the model's positions, checked from the config
alone, before any weights are loaded or any engine starts."""
import pytest
from transformers import LlamaConfig

from rl.config.recipe import ConfigError
from rl.train.models import check_context_length, context_length

TINY = "recipes/tiny/r1_zero.yaml"


def test_context_length_from_config_only(tmp_path):
    LlamaConfig(max_position_embeddings=4096).save_pretrained(tmp_path)  # a config.json, no weights
    assert context_length(str(tmp_path)) == 4096
    check_context_length(str(tmp_path), 1024, 3072)  # fits exactly
    with pytest.raises(ConfigError) as e:
        check_context_length(str(tmp_path), 1024, 8192)
    assert str(e.value) == ("rollout.max_prompt_length=1024 + rollout.max_completion_length=8192 = 9216 exceeds the "
                            f"4096 positions of {tmp_path} (max_position_embeddings): shorten them or use a model "
                            "with a longer context")
    assert context_length(str(tmp_path / "missing")) is None  # no config: left to the model loader


def test_grpo_stops_before_loading_weights(micro_model_dir, tmp_path, monkeypatch):
    from rl import grpo
    from rl.train import models
    monkeypatch.setattr(models, "load_causal_lm", lambda *_a, **_k: pytest.fail("weights loaded before the check"))
    positions = context_length(str(micro_model_dir))
    with pytest.raises(ConfigError, match=rf"= {positions + 1} exceeds the {positions} positions"):
        grpo.main([TINY, f"model.name_or_path={micro_model_dir}", "rollout.max_prompt_length=64",
                   f"rollout.max_completion_length={positions - 63}", "data.test=null",
                   f"output_dir={tmp_path / 'run'}", "logging.progress_bar=false"])
