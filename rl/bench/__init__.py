"""Benchmarks of the GRPO pipeline against TRL (issue 10, item 6). See docs/performance.md.

    python -m rl.bench.trl_side_by_side   # steps/s: this project's loop vs trl.GRPOTrainer, identical work
    python -m rl.bench.memory             # peak allocated bytes of one learner micro-step, vocab 151,936
    python -m rl.bench.models             # build (or find) the cached random-init benchmark models
    python -m rl.bench.gpu_check          # make gpu-check: rl/grpo.py at Qwen2.5-1.5B's shape on one GPU (never run
                                          # on one yet; --device cpu --tiny is its CPU dry run)
"""
