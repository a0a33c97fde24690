"""The training machinery: what holds, moves and saves the policy.

learner.py (optimizer step over micro-batches), policy.py (the model wrapper that returns logprobs), distributed.py
(accelerate / DeepSpeed / FSDP2 adapters), checkpoint.py (atomic save and resume), models.py (loading models and
tokenizers), tracking.py (metrics.jsonl and trackers), report.py (before/after table and plot of a run).

Imports: rl.core, rl.config (the recipe schemas it is driven by), and libraries
(accelerate, deepspeed, transformers). Never rl.rollout or the stages (tests/test_layout.py).
"""
