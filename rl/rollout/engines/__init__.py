"""Rollout engines behind one interface (`RolloutEngine`, base.py): token ids in, sampled token ids (and their
logprobs) out, plus weight updates from the learner.

base.py (the protocol), hf.py (transformers), vllm.py + vllm_adapter.py (vLLM colocated: the only vllm import) +
vllm_server.py (the client of a rollout server: streamed requests, many in flight), worker.py + worker_process.py (an engine in its own
process; placement.py where it runs, weight_stream.py the bucketed weight push, version_gate.py the push gate of
server mode with several ranks; stream_worker.py + vllm_stream.py its stream mode, `rollout.stream`), bench.py (engine throughput), install_vllm.sh (the vLLM build for this machine).
`make_engine` is the one place an engine is chosen (from the recipe's `rollout.engine`).

Imports: rl.core, rl.train, rl.config. Never rl.rollout.episodes, rewards or the stages (tests/test_layout.py).
"""
from __future__ import annotations


def make_engine(rollout_cfg, model, tokenizer, model_path: str, seed: int = 0, max_model_len: int = 2048,
                dtype: str = "float32", autocast=None, sync=None):
    """`autocast`: the learner's autocast context factory (the transformers engine samples in the learner's compute
    dtype); `sync`: rl.train.distributed.DecodeSync when the learner shards its parameters (transformers engine only)."""
    if rollout_cfg.engine == "hf":
        from rl.rollout.engines.hf import HFEngine
        return HFEngine(model, tokenizer, autocast=autocast, sync=sync)
    if rollout_cfg.engine == "vllm":
        from rl.rollout.engines.vllm import VLLMEngine
        return VLLMEngine(model_path, tokenizer, dtype=dtype, seed=seed, max_model_len=max_model_len,
                          gpu_memory_utilization=rollout_cfg.vllm_gpu_memory_utilization,
                          enable_sleep_mode=rollout_cfg.vllm_enable_sleep_mode, mode=rollout_cfg.vllm_mode,
                          server_url=rollout_cfg.vllm_server_url, timeout_s=rollout_cfg.timeout_s,
                          seed_mode=rollout_cfg.seed_mode, max_in_flight=rollout_cfg.vllm_max_in_flight,
                          **({"tensor_parallel_size": rollout_cfg.tensor_parallel_size}
                             if rollout_cfg.tensor_parallel_size > 1 else {}))
    raise ValueError(f"unknown rollout engine {rollout_cfg.engine!r}; valid: hf, vllm")
