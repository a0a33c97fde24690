"""The learner's probe: a fixed prompt + completion and the training learner's logprobs of it, saved with each GRPO
checkpoint, so that rl/export.py checks the *exported* model against the model that was trained (not against itself):
a wrong LoRA merge (a mis-scaled B, the wrong base model) or a wrong weight name changes these logprobs and fails.

    checkpoint-40/learner_probe.safetensors   input_ids [1, T] (int64), logprobs [1, C] (float32: the learner's
                                              logprobs of the C completion tokens, at rollout.temperature)
                                              metadata: prompt_length P (T = P + C), temperature, mixed_precision

Comparison (`compare`): mean and max |export - learner| over the C tokens. Both sides float32 (a float32 run, a
float32 export): the same function up to summation order (a LoRA merge W + s B A computed once instead of on the
fly), so max <= 1e-3. Either side 16-bit (bf16 autocast, ZeRO's bf16 module, a bf16 export): rounding of weights and
activations, so mean <= 0.01 nats. Worked example: learner [-1.00, -2.00], export [-1.00, -2.01] -> mean 0.005,
max 0.01: fails in float32 (max > 1e-3), passes at bf16 (mean <= 0.01).
"""
from __future__ import annotations

from pathlib import Path

import torch

PROBE_TEXT = "A conversation between User and Assistant. User: What is 3 + 4 * 5?. Assistant: <think> 4*5=20"
PROBE_FILE = "learner_probe.safetensors"
MAX_ABS_FLOAT32 = 1e-3  # both sides float32: max |dlogp|
MEAN_ABS_16BIT = 0.01  # either side 16-bit: mean |dlogp| (micro model: 4e-4 right, 0.023 with B doubled)


def probe_ids(tokenizer) -> tuple[list[int], list[int]]:
    """(prompt ids, completion ids): PROBE_TEXT's tokens split in half (the completion gets the second half)."""
    ids = tokenizer(PROBE_TEXT, add_special_tokens=False)["input_ids"]
    half = len(ids) // 2
    return ids[:half], ids[half:]


def probe_batch(tokenizer):
    """The probe as a one-row learner Batch (no padding; every completion token counts)."""
    from rl.core.collate import collate
    from rl.core.episode import Completion, Episode

    prompt, completion = probe_ids(tokenizer)
    episode = Episode(group_id=0, example={}, completion=Completion(prompt, completion, "", "stop",
                                                                      [0.0] * len(completion)))
    return collate([episode], tokenizer.pad_token_id)


def write_probe(directory: Path, tokenizer, logprobs: torch.Tensor, temperature: float, mixed_precision: str) -> None:
    """learner_probe.safetensors in `directory`: the probe's ids and the learner's `logprobs` [1, C] of it."""
    from safetensors.torch import save_file

    prompt, completion = probe_ids(tokenizer)
    save_file({"input_ids": torch.tensor([prompt + completion], dtype=torch.long),
               "logprobs": logprobs.detach().float().cpu().reshape(1, len(completion)).contiguous()},
              str(Path(directory) / PROBE_FILE),
              metadata={"prompt_length": str(len(prompt)), "temperature": repr(float(temperature)),
                        "mixed_precision": mixed_precision})


def model_logprobs(model, input_ids: torch.Tensor, prompt_length: int, temperature: float) -> torch.Tensor:
    """[1, C] logprobs of tokens P..T-1 of `input_ids` [1, T] under a transformers causal LM, at `temperature`
    (position P - 1 + t predicts completion token t, as in rl/train/policy.py)."""
    with torch.no_grad():
        logits = model(input_ids=input_ids.to(next(model.parameters()).device)).logits.float().cpu()  # [1, T, V]
    logprobs = torch.log_softmax(logits[:, prompt_length - 1:-1] / temperature, dim=-1)
    return logprobs.gather(-1, input_ids[:, prompt_length:, None]).squeeze(-1)


def compare(model, directory: Path, dtype: str) -> dict | None:
    """The exported `model` (weights in `dtype`) against the learner's probe saved in `directory`: {"probe_mean_abs_
    diff", "probe_max_abs_diff", "probe_ok"}; None when the checkpoint has no probe (SFT, older GRPO checkpoints)."""
    from safetensors import safe_open

    path = Path(directory) / PROBE_FILE
    if not path.is_file():
        return None
    with safe_open(str(path), "pt") as f:
        meta = f.metadata()
        input_ids, want = f.get_tensor("input_ids"), f.get_tensor("logprobs")
    got = model_logprobs(model, input_ids, int(meta["prompt_length"]), float(meta["temperature"]))
    diff = (got - want).abs()
    mean, peak = diff.mean().item(), diff.max().item()
    full_precision = dtype == "float32" and meta.get("mixed_precision", "no") == "no"
    ok = peak <= MAX_ABS_FLOAT32 if full_precision else mean <= MEAN_ABS_16BIT
    return {"probe_mean_abs_diff": mean, "probe_max_abs_diff": peak, "probe_ok": ok,
            "probe_limit": f"max <= {MAX_ABS_FLOAT32:g}" if full_precision else f"mean <= {MEAN_ABS_16BIT:g}"}
