"""The `judge` reward's local backends, run by the project's own rollout engines: `engine: hf` (the transformers
engine, rl/rollout/engines/hf.py) and `engine: vllm` (a colocated vLLM engine, rl/rollout/engines/vllm.py), both
greedy. Importing this module registers them with rewards.models.judge (rewards never import rl);
the GRPO stage does before it builds its rewards (a TRL user imports it once).

The judge model is a causal LM with a chat template; each judge prompt is one user turn, rendered with that template
(generation prompt added), cut from the left to fit the model's context less `max_tokens`, and decoded greedily for
at most `max_tokens` tokens. It is loaded once per rank, whole (outside DeepSpeed ZeRO-3's partitioning, as the
reward model), in `dtype` (`auto`: bfloat16 on a GPU that has it, else float32) on `device` (`auto`: this rank's GPU,
else the CPU). `offload: true` keeps it on the CPU between scoring calls (hf: moved to the device for the call and
back; vllm: the engine's sleep mode, level 1, after each call), so the learner trains without it in accelerator
memory, at the price of one host<->device copy of its weights per scored batch.
"""
from __future__ import annotations

import os
from typing import Any

from rewards.models.judge import register_judge_engine
from rewards.models.reward_model import outside_zero3_init
from rl.core.episode import SamplingParams


def _device_and_dtype(device: str, dtype: str) -> tuple[str, str]:
    import torch
    if device == "auto":
        device = f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}" if torch.cuda.is_available() else "cpu"
    if dtype == "auto":
        dtype = "bfloat16" if device.startswith("cuda") and torch.cuda.is_bf16_supported() else "float32"
    return device, dtype


class EngineJudge:
    """`warmup()` loads the judge model into an engine; `generate(prompts) -> (texts, counts)` (greedy)."""

    def __init__(self, model: str, engine: str = "hf", max_tokens: int = 256, dtype: str = "auto",
                 device: str = "auto", offload: bool = False, gpu_memory_utilization: float = 0.2):
        self.path, self.kind, self.max_tokens = model, engine, max_tokens
        self.device, self.dtype = _device_and_dtype(device, dtype)
        self.offload, self.gpu_memory_utilization = offload, gpu_memory_utilization
        self.engine = self.tokenizer = None
        self.context = 0

    def warmup(self) -> None:
        if self.engine is not None:
            return
        from rl.train.models import context_length, load_causal_lm, load_tokenizer
        where = f"judge model {self.path!r}"
        try:
            tokenizer = load_tokenizer(self.path)
        except (OSError, ValueError) as e:
            raise ValueError(f"{where}: cannot load its tokenizer ({str(e).splitlines()[0][:200]})") from None
        if not getattr(tokenizer, "chat_template", None):
            raise ValueError(f"{where}: its tokenizer has no chat template (needed to render the judge prompt)")
        self.context = min(context_length(self.path) or 4096, 8192)  # the judge prompt's room (vLLM's KV cache)
        if self.max_tokens >= self.context:
            raise ValueError(f"{where}: max_tokens={self.max_tokens} leaves no room for the prompt in its context "
                             f"of {self.context} tokens")
        self.tokenizer = tokenizer
        if self.kind == "vllm":
            from rl.rollout.engines.vllm import VLLMEngine
            self.engine = VLLMEngine(self.path, tokenizer, dtype=self.dtype, max_model_len=self.context,
                                     gpu_memory_utilization=self.gpu_memory_utilization,
                                     enable_sleep_mode=self.offload)
            return
        from rl.rollout.engines.hf import HFEngine
        with outside_zero3_init():  # a whole copy per rank: it only runs forward passes
            model = load_causal_lm(self.path, self.dtype)
        model.requires_grad_(False)
        model.to("cpu" if self.offload else self.device).eval()
        self.engine = HFEngine(model, tokenizer)

    def token_ids(self, prompt: str) -> list[int]:
        """The judge prompt as one user turn in the model's chat template, cut from the left to fit."""
        text = self.tokenizer.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False,
                                                  add_generation_prompt=True)
        ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        return ids[-(self.context - self.max_tokens):]

    def generate(self, prompts: list[str]) -> tuple[list[str | None], dict[str, float]]:
        self.warmup()
        if not prompts:
            return [], {}
        ids = [self.token_ids(p) for p in prompts]
        params = SamplingParams(n=1, greedy=True, temperature=1.0, max_tokens=self.max_tokens)
        if self.kind == "vllm":
            out = self.engine.generate(ids, params)
            if self.offload:
                self.engine.release_memory(weights_follow=False)  # sleep level 1: weights kept in host memory
        elif self.offload:
            self.engine.model.to(self.device)
            try:
                out = self.engine.generate(ids, params)
            finally:
                self.engine.model.to("cpu")
        else:
            out = self.engine.generate(ids, params)
        return [group[0].text for group in out], {"calls": float(len(prompts))}


def _builder(kind: str):
    def build(model: str, **options: Any) -> EngineJudge:
        return EngineJudge(model, engine=kind, **options)
    return build


for _kind in ("hf", "vllm"):
    register_judge_engine(_kind, _builder(_kind))
