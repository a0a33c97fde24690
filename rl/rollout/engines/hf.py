"""Rollout engine on a transformers model with its own decoding loop: the CPU/debug engine, sharing the learner's
model (no weight copy).

Why not `model.generate`: (1) generate applies the model's `generation_config`, which may add `repetition_penalty`,
`top_k`, `no_repeat_ngram_size`, ... that the recipe never asked for; the engine/learner logprob comparison then
measures a distribution nobody trains on. This loop applies exactly the recipe's settings (temperature, top_p,
top_k) and nothing else. (2) To report sampling logprobs, generate keeps every step's [B, V] logits; here the chosen
token's logprob is gathered at each step and only one step's logits exist. (3) Less per-step Python overhead.

Per step, for B rows (left-padded prompts, KV cache):

    z = logits[:, -1].float() / T               [B, V]    (greedy: argmax of the raw logits, logprob at T = 1)
    logprob = log_softmax(z)[token]             [B]       (the convention of rl/core/episode.py: no top-k/top-p)
    token ~ softmax(top_k/top_p-filtered z)     [B]       drawn with the engine's own torch.Generator
                                                          (exponential race: argmax p / Exp(1))

The KV cache is allocated once per chunk for prompt + max_tokens positions and each step writes its position in place
(rl/rollout/engines/kv_cache.py; transformers' DynamicCache copies the whole cache at every step).
Each prompt is prefilled once and its KV cache repeated for its n samples (`Cache.batch_repeat_interleave`): a GRPO
group of G completions costs one prefill, not G. Rows that produced EOS keep being fed padding until they are a
quarter of the batch; then they are dropped from the batch and the KV cache (`Cache.batch_select_indices`), so the
cost of a step follows the rows still decoding.

`update_weights(model)` only re-points the engine at the (unwrapped) learner model: both see the same tensors, so the
engine's logprobs equal the learner's up to the numerics of batched/cached decoding.

Sharded learners (ZeRO-3, FSDP2): every forward of the model is a collective, so ranks must decode in lock step.
Stop strings (`SamplingParams.stop`, e.g. the ToRL tool style's "```output"): a row ends at the token that completes
one (kept in the completion, finish reason `stop`), as vLLM's `stop` with the stop string's token kept.

`sync` (rl/train/distributed.py `DecodeSync`) makes every rank run the same number of chunks (a rank with fewer prompts
decodes a one-token dummy row) and the same number of steps (until every rank's rows have finished).
"""
from __future__ import annotations

import contextlib
from typing import Callable, ContextManager

import torch

from rl.core.collate import position_ids
from rl.core.episode import Completion, SamplingParams


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
        self.max_batch_size = max_batch_size  # rows (prompts x n) per decoding loop
        self.autocast = autocast or contextlib.nullcontext
        self.sync = sync
        self.eos_id = tokenizer.eos_token_id
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        self.on_progress: Callable[[], None] | None = None  # called once per decoding step (the rollout worker's clock)

    def update_weights(self, model: torch.nn.Module, weights=None) -> None:
        self.model = model  # shared tensors: nothing to copy, and `weights` is left unstarted

    def release_memory(self, weights_follow: bool = True) -> None:
        pass  # the learner's own model: no memory of the engine's to give back

    def close(self) -> None:
        pass

    @torch.no_grad()
    def generate(self, prompts: list[list[int]], params: SamplingParams) -> list[list[Completion]]:
        generator = torch.Generator(device=self._device())
        # no seed: one drawn from the global RNG (seeded by the run), so runs stay reproducible
        generator.manual_seed(params.seed if params.seed is not None else int(torch.randint(0, 2 ** 62, (1,))))
        per_chunk = max(1, self.max_batch_size // params.n)  # prompts per decoding loop (x n rows)
        chunks = [prompts[s:s + per_chunk] for s in range(0, len(prompts), per_chunk)]
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
        from rl.rollout.engines.kv_cache import preallocated_cache

        dummy = not prompts  # a rank with nothing to decode still takes part in the collectives
        unique = prompts or [[self.pad_id]]
        device = self._device()
        U, n, width = len(unique), params.n, max(map(len, unique))
        ids = torch.full((U, width), self.pad_id, dtype=torch.long)  # [U, P] left-padded
        mask = torch.zeros_like(ids)  # [U, P]
        for i, p in enumerate(unique):
            ids[i, width - len(p):] = torch.tensor(p)
            mask[i, width - len(p):] = 1
        ids, mask = ids.to(device), mask.to(device)
        cache = preallocated_cache(width + params.max_tokens)  # written in place, not grown by torch.cat each step
        with self.autocast():  # each prompt's prefill once, then its KV cache is shared by its n samples
            logits = self.model(input_ids=ids, attention_mask=mask, position_ids=position_ids(mask),
                                past_key_values=cache, use_cache=True, logits_to_keep=1).logits[:, -1]  # [U, V]
        cache.batch_repeat_interleave(n)
        logits, mask = logits.repeat_interleave(n, 0), mask.repeat_interleave(n, 0)  # [B, V], [B, P]; B = U * n
        B = U * n
        next_pos = position_ids(mask)[:, -1:]  # [B, 1] position of each row's last prompt token
        out_tokens = torch.full((B, params.max_tokens), self.pad_id, dtype=torch.long, device=device)  # [B, L]
        out_logprobs = torch.zeros(B, params.max_tokens, device=device)  # [B, L]
        active = torch.arange(B, device=device)  # [b] original row of each row still in the batch
        finished = torch.zeros(B, dtype=torch.bool, device=device)  # [b] finished, awaiting removal
        stop_at = torch.full((B,), -1, dtype=torch.long, device=device)  # [B] step of a stop string, -1: none
        for t in range(params.max_tokens):
            if t > 0:
                with self.autocast():
                    logits = self.model(input_ids=step_ids, attention_mask=mask, position_ids=step_pos,
                                        past_key_values=cache, use_cache=True,
                                        logits_to_keep=1).logits[:, -1]  # [b, V]
            token, logprob = self._sample(logits, params, generator)  # [b], [b]
            if self.on_progress is not None:
                self.on_progress()
            token = token.masked_fill(finished, self.pad_id)
            out_tokens[active, t] = token
            out_logprobs[active, t] = logprob
            if params.stop:
                stopped = self._stopped(out_tokens, active, finished, t, params.stop)  # [b] bool
                stop_at[active[stopped]] = t
                finished = finished | stopped
            finished = finished | (token == self.eos_id)
            done = bool(finished.all()) or dummy
            if (self.sync.all_true(done) if self.sync is not None else done):
                break
            mask = torch.cat([mask, torch.ones(len(active), 1, dtype=mask.dtype, device=device)], dim=1)  # [b, +1]
            next_pos = next_pos + 1  # [b, 1]
            step_ids, step_pos = token.unsqueeze(1), next_pos  # [b, 1]
            if not done and int(finished.sum()) * 4 >= len(active):  # drop finished rows once they are a quarter
                keep = (~finished).nonzero().squeeze(1)  # [b']
                cache.batch_select_indices(keep)
                active, mask, next_pos, step_ids = active[keep], mask[keep], next_pos[keep], step_ids[keep]
                step_pos, finished = next_pos, finished[keep]
        if dummy:
            return []
        new_tokens, new_logprobs = out_tokens.cpu(), out_logprobs.cpu()  # [B, L]
        results = []
        for i in range(B):
            p, row = prompts[i // n], new_tokens[i].tolist()
            if stop_at[i] >= 0 and (self.eos_id not in row or row.index(self.eos_id) > stop_at[i]):
                cut, reason = int(stop_at[i]) + 1, "stop"  # the token that completed the stop string stays
            elif self.eos_id in row:
                cut, reason = row.index(self.eos_id) + 1, "stop"
            else:
                cut, reason = t + 1, "length"
            completion_ids = row[:cut]
            results.append(Completion(
                prompt_ids=list(p), completion_ids=completion_ids,
                text=self.tokenizer.decode(completion_ids, skip_special_tokens=True),
                finish_reason=reason, logprobs=new_logprobs[i, :cut].tolist()))
        return results

    def _stopped(self, out_tokens: torch.Tensor, active: torch.Tensor, finished: torch.Tensor, t: int,
                 stop: tuple[str, ...]) -> torch.Tensor:
        """[b] bool: the rows still decoding whose text now contains a stop string. Only the last few tokens are
        decoded (special tokens kept), enough to hold the longest stop string: a string completed earlier would have
        stopped the row then."""
        width = max(map(len, stop)) + 1  # a token is at least one character
        tails = out_tokens[active, max(0, t + 1 - width):t + 1].tolist()  # [b, <= width]
        hit = [not f and any(s in self.tokenizer.decode(tail, skip_special_tokens=False) for s in stop)
               for tail, f in zip(tails, finished.tolist())]
        return torch.tensor(hit, dtype=torch.bool, device=finished.device)

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
            # exponential race: argmax_v p_v / E_v with E_v ~ Exp(1) is a draw from p (as vLLM samples);
            # one fused pass instead of torch.multinomial's per-row CDF search
            race = torch.empty_like(probs).exponential_(generator=generator)  # [B, V]
            token = (probs / race).argmax(-1)  # [B]
        logprob = z.gather(-1, token[:, None]).squeeze(1) - torch.logsumexp(z, -1)  # [B]
        return token, logprob
