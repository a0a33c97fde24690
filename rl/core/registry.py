"""A named registry: how every algorithm variant is chosen once, by its recipe name, at start-up.

    ADVANTAGE_ESTIMATORS = Registry("advantage estimator")

    @ADVANTAGE_ESTIMATORS.register("group")
    def group_advantages(rewards, group_size): ...

    fn = ADVANTAGE_ESTIMATORS.choose("group")      # a ValueError naming the valid names for anything else
    list(ADVANTAGE_ESTIMATORS)                      # ['group', ...], in registration order

A Registry is a dict (name -> function), so a recipe check can list the names and a user can add a variant by
registering it before the run starts.
"""
from __future__ import annotations

from typing import Callable, TypeVar

F = TypeVar("F", bound=Callable)


class Registry(dict):
    def __init__(self, kind: str):
        super().__init__()
        self.kind = kind  # what one entry is, for error messages ("loss aggregation")

    def register(self, name: str) -> Callable[[F], F]:
        def deco(fn: F) -> F:
            self[name] = fn
            return fn
        return deco

    def choose(self, name: str) -> Callable:
        if name not in self:
            raise ValueError(f"unknown {self.kind} {name!r}; valid: {', '.join(self)}")
        return self[name]
