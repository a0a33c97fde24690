"""Rewards computed by models: reward_model.py (a sequence-classification reward model), scores.py (its pure helpers)."""
