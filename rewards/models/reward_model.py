"""`reward_model`: a sequence-classification reward model (any `AutoModelForSequenceClassification` with one output
and a chat template: Skywork-Reward style, or the tiny world's rl/tiny/reward_model.py) as a reward with TRL's
calling convention, `fn(completions, prompts=..., **columns) -> list[float | None]`.

    rewards:
      reward_model: {weight: 1.0, model: path/or/hub-name, mode: after_think, normalize: false, batch_size: 16}

Each (prompt, completion) pair is rendered with the reward model's own chat template as a user turn and an
assistant turn; the assistant turn is the part `mode` selects (rewards/models/scores.py: `after_think`, R1's
helpfulness on the final summary; `whole`, R1's harmlessness on the whole response). The pairs are scored in batches
of `batch_size` under `torch.no_grad`, in `dtype` (`auto`: bfloat16 on a GPU that has it, else float32), on `device`
(`auto`: this process's GPU, `cuda:$LOCAL_RANK`, else the CPU): one copy per rank, beside the policy, loaded once by
`warmup()` (the RewardScorer's warmup, at start-up) and kept resident; with `offload: true` it waits in host memory
and is moved to `device` for each scoring call only (the learner trains without it; metric `offload_s`). The value is the model's single logit, or with
`normalize: true` its z-score over the call's batch (GRPO's step; per task with reward sets).

Step metrics (RewardScorer: `rewards/reward_model/<key>`): `length_corr`, the Pearson correlation of the raw score with
the completion's length in tokens (the `completion_length` column, else characters): the reward-hacking watch;
`raw_mean`; `batch_s`, seconds per forward batch (`length_corr` is left out of a step whose lengths or scores
are all equal, not NaN).

Runs in the scorer's process (batched=True), never in its worker processes: the model is loaded once per rank, whole
(under DeepSpeed ZeRO-3 too: `outside_zero3_init`).
"""
from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path
from typing import Any

from rewards.extract import completion_text
from rewards.models.scores import MODES, correlation_counts, scored_part, summarize_counts, zscore
from rewards.scoring.registry import register_reward

DTYPES = ("auto", "float32", "bfloat16", "float16")


def _messages(prompt: Any, response: str) -> list[dict]:
    """The conversation a reward model reads: the prompt (a string: one user turn; a message list: as is) and the
    response as the assistant's turn."""
    if isinstance(prompt, (list, tuple)):
        turns = [dict(m) for m in prompt if isinstance(m, dict)]
    else:
        turns = [{"role": "user", "content": "" if prompt is None else str(prompt)}]
    return turns + [{"role": "assistant", "content": response}]


@contextlib.contextmanager
def outside_zero3_init():
    """Load models as if DeepSpeed ZeRO-3 were off. Under ZeRO-3, accelerate registers its DeepSpeed config with
    transformers (`HfDeepSpeedConfig`), and every `from_pretrained` then runs inside `deepspeed.zero.Init`, which
    partitions the parameters across ranks: a reward model called outside the DeepSpeed engine would see empty
    shards ("Padding_idx must be within num_embeddings"). The registration is lifted for the load and restored after
    (transformers keeps it in `integrations.deepspeed._hf_deepspeed_config_weak_ref`; re-check on an upgrade)."""
    try:
        from transformers.integrations import deepspeed as hf_ds
    except ImportError:  # pragma: no cover - transformers without its DeepSpeed integration
        yield
        return
    ref = getattr(hf_ds, "_hf_deepspeed_config_weak_ref", None)
    config = ref() if ref is not None else None
    if config is None:
        yield
        return
    hf_ds.unset_hf_deepspeed_config()
    try:
        yield
    finally:
        hf_ds.set_hf_deepspeed_config(config)


class RewardModel:
    """The loaded reward model and its tokenizer; `__call__` follows TRL's reward-function convention."""

    batched = True  # RewardScorer: one call per batch, in the scorer's process
    requires = ("prompts",)

    def __init__(self, model: str, mode: str, normalize: bool, batch_size: int, max_length: int, dtype: str,
                 device: str, reasoning_delimiters: tuple[str, ...], offload: bool = False):
        self.path, self.mode, self.normalize, self.offload = model, mode, normalize, offload
        self.batch_size, self.max_length, self.dtype_name, self.device_name = batch_size, max_length, dtype, device
        self.delimiters = reasoning_delimiters
        self.model = self.tokenizer = None
        self._counts: dict[str, float] = {}

    # -- loading ---------------------------------------------------------------------------------------------------
    def _device_and_dtype(self):
        import torch
        device = self.device_name
        if device == "auto":
            device = f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}" if torch.cuda.is_available() else "cpu"
        name = self.dtype_name
        if name == "auto":
            name = "bfloat16" if device.startswith("cuda") and torch.cuda.is_bf16_supported() else "float32"
        return torch.device(device), getattr(torch, name)

    def warmup(self) -> None:
        """Load the model and tokenizer (once). A one-line ValueError for a model that is not a one-output
        sequence classifier or has no chat template."""
        if self.model is not None:
            return
        from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer
        where = f"reward_model {self.path!r}"
        try:
            config = AutoConfig.from_pretrained(self.path)
        except (OSError, ValueError) as e:
            raise ValueError(f"{where}: cannot load its config ({str(e).splitlines()[0][:200]})") from None
        if getattr(config, "num_labels", 1) != 1:
            raise ValueError(f"{where}: a reward model has one output (num_labels=1), this one has "
                             f"{config.num_labels}")
        tokenizer = AutoTokenizer.from_pretrained(self.path)
        if not getattr(tokenizer, "chat_template", None):
            raise ValueError(f"{where}: its tokenizer has no chat template (needed to render prompt + response)")
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        tokenizer.truncation_side = "left"  # over max_length: the end of the response is kept
        tokenizer.padding_side = "right"
        device, dtype = self._device_and_dtype()
        with outside_zero3_init():  # a whole copy per rank, never ZeRO-3 partitions (it only runs forward passes)
            model = AutoModelForSequenceClassification.from_pretrained(self.path, dtype=dtype)
        if model.config.pad_token_id is None:
            model.config.pad_token_id = tokenizer.pad_token_id
        model.requires_grad_(False)
        # offload: the weights wait in host memory between scoring calls (the learner trains without them on the device)
        self.model, self.tokenizer = model.to("cpu" if self.offload else device).eval(), tokenizer
        self.device = device

    # -- scoring ---------------------------------------------------------------------------------------------------
    def texts(self, prompts: list[Any], completions: list[Any]) -> list[str]:
        """The rendered (prompt, selected part of the completion) conversations, as the model reads them."""
        return [self.tokenizer.apply_chat_template(_messages(p, scored_part(completion_text(c), self.mode,
                                                                            self.delimiters)), tokenize=False)
                for p, c in zip(prompts, completions)]

    def raw_scores(self, prompts: list[Any], completions: list[Any]) -> list[float]:
        """The model's logit per (prompt, completion), `batch_size` pairs per forward pass. [N]"""
        import torch
        self.warmup()
        texts = self.texts(prompts, completions)
        if self.offload:  # to the device for this call only; back to the CPU after it (also on error)
            t0 = time.perf_counter()
            self.model.to(self.device)
            self._add({"offload_s": time.perf_counter() - t0})
            try:
                return self._forward(texts)
            finally:
                t0 = time.perf_counter()
                self.model.to("cpu")
                if self.device.type == "cuda":
                    torch.cuda.empty_cache()
                self._add({"offload_s": time.perf_counter() - t0})
        return self._forward(texts)

    def _forward(self, texts: list[str]) -> list[float]:
        import torch
        out: list[float] = []
        for s in range(0, len(texts), self.batch_size):
            t0 = time.perf_counter()
            enc = self.tokenizer(texts[s:s + self.batch_size], padding=True, truncation=True,
                                 max_length=self.max_length, add_special_tokens=False, return_tensors="pt")
            with torch.no_grad():
                logits = self.model(input_ids=enc["input_ids"].to(self.device),
                                    attention_mask=enc["attention_mask"].to(self.device)).logits  # [B, 1]
            out.extend(logits[:, 0].float().cpu().tolist())
            self._add({"forward_s": time.perf_counter() - t0, "batches": 1.0})
        return out

    def __call__(self, completions: list[Any], prompts: list[Any] | None = None,
                 completion_length: list[int] | None = None, **kwargs: Any) -> list[float | None]:
        if prompts is None:
            raise ValueError("reward_model needs the prompts (TRL passes `prompts`; the GRPO stage does)")
        if len(prompts) != len(completions):
            raise ValueError(f"reward_model: {len(prompts)} prompts for {len(completions)} completions")
        if not completions:
            return []
        raw = self.raw_scores(list(prompts), list(completions))
        lengths = completion_length if completion_length is not None else \
            [len(completion_text(c)) for c in completions]
        self._add({**correlation_counts(raw, lengths), "raw_sum": sum(raw)})
        return zscore(raw) if self.normalize else raw

    def _add(self, counts: dict[str, float]) -> None:
        for k, v in counts.items():
            self._counts[k] = self._counts.get(k, 0.0) + v

    def drain_metrics(self) -> dict[str, float]:
        counts, self._counts = self._counts, {}
        return counts

    summarize = staticmethod(summarize_counts)


@register_reward("reward_model", factory=True, batched=True)
def make_reward_model(model: str = "", mode: str = "after_think", normalize: bool = False, batch_size: int = 16,
                      max_length: int = 2048, dtype: str = "auto", device: str = "auto",
                      reasoning_delimiters: list[str] | tuple[str, ...] = ("</think>",), url: str = "",
                      timeout_s: float = 60.0, retries: int = 2, offload: bool = False) -> RewardModel:
    """Check the parameters (nothing is loaded here: a recipe is validated before any model loads) and return the
    reward; its `warmup()` loads the model. A local `model` path must be a directory. With `url` instead of `model`
    the pairs are scored by a server (rewards/models/remote.py; `timeout_s`: its silence deadline)."""
    def bad(what: str) -> ValueError:
        return ValueError(f"reward 'reward_model': {what}")
    if bool(model) == bool(url) or not isinstance(model, str) or not isinstance(url, str):
        raise bad("parameter 'model' (a path or hub name of a sequence-classification reward model) or 'url' (a "
                  "reward server's address) is required, not both")
    if url and not url.startswith(("http://", "https://")):
        raise bad(f"url={url!r} must start with http:// or https://")
    if isinstance(timeout_s, bool) or not isinstance(timeout_s, (int, float)) or not timeout_s > 0:
        raise bad(f"timeout_s must be a positive number, got {timeout_s!r}")
    if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
        raise bad(f"retries must be an integer >= 0, got {retries!r}")
    local = Path(model).expanduser()
    if model and (local.exists() or model.startswith((".", "/", "~"))) and not local.is_dir():
        raise bad(f"model {model!r} is not a directory")
    if mode not in MODES:
        raise bad(f"mode={mode!r} is not one of: {', '.join(MODES)}")
    if not isinstance(normalize, bool):
        raise bad(f"normalize must be true or false, got {normalize!r}")
    if not isinstance(offload, bool):
        raise bad(f"offload must be true or false, got {offload!r}")
    for key, value in (("batch_size", batch_size), ("max_length", max_length)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise bad(f"{key} must be a positive integer, got {value!r}")
    if dtype not in DTYPES:
        raise bad(f"dtype={dtype!r} is not one of: {', '.join(DTYPES)}")
    if not isinstance(device, str) or not (device in ("auto", "cpu") or device.startswith("cuda")):
        raise bad(f"device={device!r}: expected auto, cpu or cuda[:N]")
    if isinstance(reasoning_delimiters, str) or not reasoning_delimiters \
            or not all(isinstance(d, str) and d for d in reasoning_delimiters):
        raise bad(f"reasoning_delimiters must be a non-empty list of strings, got {reasoning_delimiters!r}")
    if url:
        from rewards.models.remote import RemoteRewardModel
        return RemoteRewardModel(url, float(timeout_s), retries, mode, normalize, batch_size,
                                 tuple(reasoning_delimiters))
    return RewardModel(model, mode, normalize, batch_size, max_length, dtype, device, tuple(reasoning_delimiters),
                       offload)
