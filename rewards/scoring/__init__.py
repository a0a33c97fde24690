"""The scoring machinery, apart from the reward functions: registry.py (names -> functions, `register_reward`,
`module:function` specs), scorer.py (`RewardScorer`: weighted rewards, metrics), pool.py (worker processes with a
per-item deadline), deadline.py (signal- and thread-based time limits)."""
