"""The pure GRPO math: what one step computes, on plain tensors and lists, with no machinery around it.

episode.py (the data contract: SamplingParams, Completion, Episode, Batch), advantages.py (group-relative advantages,
a registry), losses.py (policy losses and their aggregations, registries), logprobs.py (chunked LM-head logprobs),
rollout_correction.py (importance-weight modes, truncated IS among them, a registry),
staleness.py (bounded staleness), streaming.py (stream mode: groups, per-token versions), collate.py (episodes ->
padded Batch), eval_metrics.py
(pass@k, maj@k).

Imports: torch and the standard library only, and other rl.core modules. Nothing from rl.train, rl.rollout,
rl.config, the stages, vllm, accelerate or trackers (tests/test_layout.py checks this from the source).
"""
