"""Rollout engine on transformers `generate`: the CPU/debug engine, sharing the learner's model (no weight copy).

`update_weights(model)` only re-points the engine at the (unwrapped) learner model: both see the same tensors, so the
engine's logprobs equal the learner's up to the numerics of batched/cached decoding. Fine for CPU and small GPU runs;
use the vLLM engine for speed.
"""
from __future__ import annotations

import torch

from rl.episode import Completion, SamplingParams


class HFEngine:
    def __init__(self, model: torch.nn.Module, tokenizer, max_batch_size: int = 256):
        self.model = model
        self.tokenizer = tokenizer
        self.max_batch_size = max_batch_size
        self.eos_id = tokenizer.eos_token_id
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id

    def update_weights(self, model: torch.nn.Module, weights=None) -> None:
        self.model = model  # shared tensors: nothing to copy, and `weights` is left unstarted

    def close(self) -> None:
        pass

    @torch.no_grad()
    def generate(self, prompts: list[list[int]], params: SamplingParams) -> list[list[Completion]]:
        flat = [p for p in prompts for _ in range(params.n)]
        if params.seed is not None:
            torch.manual_seed(params.seed)
        out: list[Completion] = []
        for start in range(0, len(flat), self.max_batch_size):
            out.extend(self._generate_chunk(flat[start:start + self.max_batch_size], params))
        return [out[i * params.n:(i + 1) * params.n] for i in range(len(prompts))]

    def _generate_chunk(self, prompts: list[list[int]], params: SamplingParams) -> list[Completion]:
        device = next(self.model.parameters()).device
        width = max(map(len, prompts))
        ids = torch.full((len(prompts), width), self.pad_id, dtype=torch.long)  # [B, P] left-padded
        mask = torch.zeros_like(ids)
        for i, p in enumerate(prompts):
            ids[i, width - len(p):] = torch.tensor(p)
            mask[i, width - len(p):] = 1
        sampling = {} if params.greedy else dict(temperature=params.temperature, top_p=params.top_p,
                                                 top_k=params.top_k or None)
        was_training = self.model.training
        self.model.eval()
        gen = self.model.generate(
            input_ids=ids.to(device), attention_mask=mask.to(device), max_new_tokens=params.max_tokens,
            do_sample=not params.greedy, eos_token_id=self.eos_id, pad_token_id=self.pad_id,
            output_logits=True, return_dict_in_generate=True, **sampling)
        self.model.train(was_training)
        new_tokens = gen.sequences[:, width:].cpu()  # [B, L]
        temperature = 1.0 if params.greedy else params.temperature
        # One [B, V] step at a time: never a stacked [B, L, V] float32 copy of the raw logits generate returned.
        per_step = []
        for step_logits, step_tokens in zip(gen.logits, new_tokens.T.to(device)):  # [B, V], [B]
            scaled = step_logits.float() / temperature  # [B, V]
            per_step.append(scaled.gather(-1, step_tokens.unsqueeze(-1)).squeeze(-1) - torch.logsumexp(scaled, -1))
        logprobs = torch.stack(per_step, dim=1).cpu()  # [B, L]
        results = []
        for i, p in enumerate(prompts):
            row = new_tokens[i].tolist()
            if self.eos_id in row:
                cut, reason = row.index(self.eos_id) + 1, "stop"
            else:
                cut, reason = len(row), "length"
            completion_ids = row[:cut]
            results.append(Completion(
                prompt_ids=list(p), completion_ids=completion_ids,
                text=self.tokenizer.decode(completion_ids, skip_special_tokens=True),
                finish_reason=reason, logprobs=logprobs[i, :cut].tolist()))
        return results
