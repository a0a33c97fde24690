"""Rollout engine on a transformers model with its own decoding loop: the CPU/debug engine, sharing the learner's
model (no weight copy).

Why not `model.generate`: (1) generate applies the model's `generation_config`, which may add `repetition_penalty`,
`top_k`, `no_repeat_ngram_size`, ... that the recipe never asked for; the engine/learner logprob comparison then
measures a distribution nobody trains on. This loop applies exactly the recipe's settings (temperature, top_p,
top_k) and nothing else. (2) To report sampling logprobs, generate keeps every step's [B, V] logits; here the chosen
token's logprob is gathered at each step and only one step's logits exist. (3) Less per-step Python overhead.

Per step, for B rows (left-padded prompts, KV cache):

    z = logits[:, -1].float() / T               [B, V]    (greedy: argmax of the raw logits, logprob at T = 1)
    logprob = log_softmax(z)[token]             [B]       (the convention of rl/episode.py: no top-k/top-p)
    token ~ softmax(top_k/top_p-filtered z)     [B]       drawn with the engine's own torch.Generator

`update_weights(model)` only re-points the engine at the (unwrapped) learner model: both see the same tensors, so the
engine's logprobs equal the learner's up to the numerics of batched/cached decoding.

Sharded learners (ZeRO-3, FSDP2): every forward of the model is a collective, so ranks must decode in lock step.
`sync` (rl/distributed.py `DecodeSync`) makes every rank run the same number of chunks (a rank with fewer prompts
decodes a one-token dummy row) and the same number of steps (until every rank's rows have finished).
"""
from __future__ import annotations

import contextlib
from typing import Callable, ContextManager

import torch

from rl.collate import position_ids
from rl.episode import Completion, SamplingParams


def filter_logits(z: torch.Tensor, top_k: int, top_p: float) -> torch.Tensor:
    """[B, V] scaled logits -> the same with tokens outside top-k / the top-p nucleus set to -inf (a new tensor).

    Example: z = [2, 1, 0, -1] (p = [.64, .24, .09, .03]), top_k = 3 -> [2, 1, 0, -inf]; top_p = 0.8 -> [2, 1, -inf,
    -inf] (the smallest set whose probability reaches 0.8; the top token is always kept).
    """
    out = z
    if top_k and top_k < z.shape[-1]:
        kth = torch.topk(z, top_k, dim=-1).values[:, -1:]  # [B, 1]
        out = out.masked_fill(z < kth, float("-inf"))
    if top_p < 1.0:
        sorted_z, idx = torch.sort(out, dim=-1, descending=True)  # [B, V]
        cum = torch.softmax(sorted_z, -1).cumsum(-1)  # [B, V]
        drop_sorted = (cum - torch.softmax(sorted_z, -1)) >= top_p  # mass before this token already reaches top_p
        out = out.masked_fill(torch.zeros_like(drop_sorted).scatter(-1, idx, drop_sorted), float("-inf"))
    return out


class HFEngine:
    def __init__(self, model: torch.nn.Module, tokenizer, max_batch_size: int = 256,
                 autocast: Callable[[], ContextManager] | None = None, sync=None):
        self.model = model
        self.tokenizer = tokenizer
        self.max_batch_size = max_batch_size
        self.autocast = autocast or contextlib.nullcontext
        self.sync = sync
        self.eos_id = tokenizer.eos_token_id
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id

    def update_weights(self, model: torch.nn.Module, weights=None) -> None:
        self.model = model  # shared tensors: nothing to copy, and `weights` is left unstarted

    def close(self) -> None:
        pass

    @torch.no_grad()
    def generate(self, prompts: list[list[int]], params: SamplingParams) -> list[list[Completion]]:
        flat = [p for p in prompts for _ in range(params.n)]
        generator = torch.Generator(device=self._device())
        # no seed: one drawn from the global RNG (seeded by the run), so runs stay reproducible
        generator.manual_seed(params.seed if params.seed is not None else int(torch.randint(0, 2 ** 62, (1,))))
        chunks = [flat[s:s + self.max_batch_size] for s in range(0, len(flat), self.max_batch_size)]
        if self.sync is not None:  # the same number of decoding loops on every rank
            chunks += [[] for _ in range(self.sync.max_int(len(chunks)) - len(chunks))]
        was_training = self.model.training
        self.model.eval()
        out: list[Completion] = []
        try:
            for chunk in chunks:
                out.extend(self._generate_chunk(chunk, params, generator))
        finally:
            self.model.train(was_training)
        return [out[i * params.n:(i + 1) * params.n] for i in range(len(prompts))]

    def _device(self) -> torch.device:
        return next(self.model.parameters()).device

    def _generate_chunk(self, prompts: list[list[int]], params: SamplingParams,
                        generator: torch.Generator) -> list[Completion]:
        from transformers import DynamicCache

        dummy = not prompts  # a rank with nothing to decode still takes part in the collectives
        rows = prompts or [[self.pad_id]]
        device = self._device()
        width = max(map(len, rows))
        ids = torch.full((len(rows), width), self.pad_id, dtype=torch.long)  # [B, P] left-padded
        mask = torch.zeros_like(ids)  # [B, P]
        for i, p in enumerate(rows):
            ids[i, width - len(p):] = torch.tensor(p)
            mask[i, width - len(p):] = 1
        ids, mask = ids.to(device), mask.to(device)
        positions = position_ids(mask)  # [B, P]
        cache = DynamicCache()
        B = len(rows)
        tokens, logprobs = [], []
        finished = torch.zeros(B, dtype=torch.bool, device=device)  # [B]
        step_ids, step_pos = ids, positions
        for _ in range(params.max_tokens):
            with self.autocast():
                logits = self.model(input_ids=step_ids, attention_mask=mask, position_ids=step_pos,
                                    past_key_values=cache, use_cache=True, logits_to_keep=1).logits[:, -1]  # [B, V]
            token, logprob = self._sample(logits, params, generator)  # [B], [B]
            token = token.masked_fill(finished, self.pad_id)
            tokens.append(token)
            logprobs.append(logprob)
            finished = finished | (token == self.eos_id)
            done = bool(finished.all()) or dummy
            if (self.sync.all_true(done) if self.sync is not None else done):
                break
            mask = torch.cat([mask, torch.ones(B, 1, dtype=mask.dtype, device=device)], dim=1)  # [B, P + t + 1]
            step_pos = positions[:, -1:] + len(tokens)  # [B, 1]
            step_ids = token.unsqueeze(1)  # [B, 1]
        if dummy:
            return []
        new_tokens = torch.stack(tokens, dim=1).cpu()  # [B, L]
        new_logprobs = torch.stack(logprobs, dim=1).cpu()  # [B, L]
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
                finish_reason=reason, logprobs=new_logprobs[i, :cut].tolist()))
        return results

    @staticmethod
    def _sample(logits: torch.Tensor, params: SamplingParams,
                generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """[B, V] raw logits -> (token [B], its logprob [B] under softmax(logits / T), untruncated)."""
        if params.greedy:
            z = logits.float()  # [B, V]
            token = z.argmax(-1)  # [B]
        else:
            z = logits.float() / params.temperature  # [B, V]
            probs = torch.softmax(filter_logits(z, params.top_k, params.top_p), -1)  # [B, V]
            token = torch.multinomial(probs, 1, generator=generator).squeeze(1)  # [B]
        logprob = z.gather(-1, token[:, None]).squeeze(1) - torch.logsumexp(z, -1)  # [B]
        return token, logprob
