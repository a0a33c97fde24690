"""Rewards computed by models: reward_model.py (a sequence-classification reward model), scores.py (its pure helpers),
remote.py (reward-model server and client), judge.py (LLM-as-judge) with judge_text.py (template, verdict parser:
pure) and judge_http.py (an OpenAI-compatible endpoint); the judge's local engines live in rl/rollout/judge_engine.py."""
