"""Shared helpers for the stage tests (SFT, distillation, export, evaluation): tiny configs on the micro model."""
from __future__ import annotations

import pytest


@pytest.fixture
def sft_overrides(micro_model_dir, tmp_path):
    """Overrides for a few-second SFT run on the micro model (its 300-token vocabulary makes prompts ~200 tokens)."""
    return [f"model.name_or_path={micro_model_dir}", f"output_dir={tmp_path / 'sft'}", "data.num_train=16",
            "data.max_length=256", "rollout.max_prompt_length=512", "rollout.max_completion_length=8",
            "data.max_eval_samples=4", "train.batch_size=4", "train.learning_rate=1e-3", "logging.progress_bar=false"]
