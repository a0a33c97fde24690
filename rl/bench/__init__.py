"""Benchmarks of the GRPO pipeline against TRL (issue 10, item 6). See docs/performance.md.

    python -m rl.bench.trl_side_by_side   # steps/s: this project's loop vs trl.GRPOTrainer, identical work
    python -m rl.bench.memory             # peak allocated bytes of one learner micro-step, vocab 151,936
    python -m rl.bench.models             # build (or find) the cached random-init benchmark models
"""
