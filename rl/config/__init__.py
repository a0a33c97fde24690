"""Recipes and command lines: YAML recipes -> typed dataclasses with dotted overrides, one schema per stage.

recipe.py (the generic loader: types, overrides, one-line ConfigError), grpo.py / sft.py / distill.py (the schemas
of the stages), cli.py (runs a stage's main with one-line errors and exit codes).

Imports: rl.core (registries the schemas validate against) and the standard library. Never rl.train, rl.rollout or
the stages (tests/test_layout.py).
"""
