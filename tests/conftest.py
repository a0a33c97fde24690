import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parents[1]

# A few-second random model with the real tokenizer recipe: for learner/loss/engine tests (not for learning tests).
MICRO_SPEC = dict(hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64, vocab_size=300, num_docs=2000,
                  pretrain=False)


@pytest.fixture(scope="session")
def micro_model_dir(tmp_path_factory) -> Path:
    from rl.tiny.build import TinySpec, build_tiny_model
    return build_tiny_model(TinySpec(**MICRO_SPEC), cache_dir=tmp_path_factory.mktemp("micro"))
