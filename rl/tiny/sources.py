"""The miniature world's models as named *model sources* for the loader (rl.train.models), which never imports
this package: the stages resolve `model.name_or_path` through the two functions below.

    >>> resolve_model_path("tiny")          # built on first use (minutes), then cached under $R1_CACHE
    '/.../.cache/tiny-<hash>'
    >>> resolve_model_path("runs/r1")       # not a tiny name: rl.train.models' rules (run dir -> latest checkpoint)

- `tiny` / `tiny-init`: the tiny base model (pretrained / untrained);
- `tiny-student` / `tiny-student-init`: the smaller student of the miniature pipeline (same tokenizer);
- `tiny-code`: the code world's base (rl/tiny/code_corpus.py: one-line Python functions, mostly buggy);
- `tiny-chat`: the tiny base fine-tuned on general replies too (rl/tiny/chat.py; the all-scenario RL policy);
- `tiny-rm`: the tiny world's reward model (rl/tiny/reward_model.py), for the `reward_model` reward's `model`.
- `tiny-tools`: the tool world's base (rl/tiny/tools_corpus.py: most writers guess products and sums, a few call
  the python tool).
"""
from __future__ import annotations

from functools import partial

from rl.tiny.build import NAMED_SPECS, build_tiny_model, cached_path
from rl.train import models


def _chat():
    from rl.tiny.chat import build_tiny_chat
    return build_tiny_chat()


def _reward_model():
    from rl.tiny.reward_model import build_tiny_reward_model
    return build_tiny_reward_model()


TINY_SOURCES: models.ModelSources = {**{name: partial(build_tiny_model, spec) for name, spec in NAMED_SPECS.items()},
                                     "tiny-chat": _chat, "tiny-rm": _reward_model}
TINY_NAMES = tuple(TINY_SOURCES)


def resolve_model_path(name_or_path: str) -> str:
    """rl.train.models.resolve_model_path with the tiny models as sources."""
    return models.resolve_model_path(name_or_path, TINY_SOURCES)


def check_model_source(name_or_path: str, key: str = "model.name_or_path") -> None:
    """rl.train.models.check_model_source with the tiny models as sources (a tiny name is always fine)."""
    models.check_model_source(name_or_path, key, TINY_SOURCES)


def is_cached(name: str) -> bool:
    """Whether tiny model `name` is built already (resolving it then takes no time)."""
    if name == "tiny-chat":
        from rl.tiny.build import default_cache_dir
        from rl.tiny.chat import TinyChatSpec
        return (default_cache_dir() / "tiny" / f"chat-{TinyChatSpec().key()}").is_dir()
    if name == "tiny-rm":
        from rl.tiny.build import default_cache_dir
        from rl.tiny.reward_model import TinyRMSpec
        return (default_cache_dir() / "tiny" / f"rm-{TinyRMSpec().key()}").is_dir()
    return cached_path(NAMED_SPECS[name]).is_dir()
