"""Recipes: a YAML file is the whole run, read into nested dataclasses, with `a.b=value` overrides.

    python rl/grpo.py recipes/tiny/r1_zero.yaml train.learning_rate=3e-4 output_dir=runs/x

Every key is checked against the dataclass fields (unknown key -> error naming it and the valid ones), every value
against the field's type (`train.max_steps=ten` -> error). Errors are `ConfigError`, a one-line message, raised before
anything heavy happens. The same loader serves every entry point (GRPO, SFT, distillation) with its own root class.
"""
from __future__ import annotations

import dataclasses
import json
import types
import typing
from pathlib import Path
from typing import Any, Union

import yaml


class ConfigError(ValueError):
    """A recipe or override problem; the message names the key."""


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", str(tp).replace("typing.", ""))


def _coerce(value: Any, tp: Any, where: str) -> Any:
    """Check `value` against the annotation `tp`; ints are accepted for floats. Returns the (converted) value."""
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, where)
            except ConfigError:
                pass
        raise ConfigError(f"{where}: expected {' | '.join(_type_name(a) for a in args)}, got {value!r}")
    if tp is Any:
        return value
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return dict(value)
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        (item_tp,) = typing.get_args(tp)
        return [_coerce(v, item_tp, f"{where}[{i}]") for i, v in enumerate(value)]
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a section (mapping), got {value!r}")
        return build_dataclass(tp, value, where)
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp is bool and not isinstance(value, bool):
        raise ConfigError(f"{where}: expected true/false, got {value!r}")
    if tp is int and isinstance(value, bool):
        raise ConfigError(f"{where}: expected int, got {value!r}")
    if isinstance(tp, type) and not isinstance(value, tp):
        raise ConfigError(f"{where}: expected {_type_name(tp)}, got {value!r}")
    return value


def build_dataclass(cls: type, values: dict[str, Any], where: str = "") -> Any:
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in values.items():
        path = f"{where}.{key}" if where else key
        if key not in names:
            import difflib
            close = difflib.get_close_matches(str(key), names, n=1)
            hint = f" (did you mean {(where + '.' if where else '') + close[0]!r}?)" if close else ""
            raise ConfigError(f"unknown recipe key {path!r}{hint}; valid keys{' in ' + where if where else ''}: "
                              f"{', '.join(names)}")
        kwargs[key] = _coerce(value, hints[key], path)
    try:
        obj = cls(**kwargs)
    except ConfigError:
        raise
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{where or cls.__name__}: {e}") from None
    return obj


def _set_path(tree: dict, dotted: str, value: Any) -> None:
    """Set `a.b.c` in the YAML tree. A reward given as a plain weight (`rewards: {format: 0.5}`) is the section
    `{weight: 0.5}`, so `rewards.format.weight=1` and `rewards.format.prefilled_think=true` work whatever form the
    recipe used. A reward named by import path or file keeps its dots: `rewards.lib/mine.py:short.weight=0.2` sets
    `weight` of the reward `lib/mine.py:short`."""
    keys = dotted.split(".")
    if keys[0] == "rewards" and ":" in dotted:
        i = next(i for i, k in enumerate(keys) if ":" in k)
        keys = ["rewards", ".".join(keys[1:i + 1]), *keys[i + 1:]]
    node = tree
    if len(keys) == 3 and keys[0] == "rewards":
        rewards = tree.get("rewards")
        if isinstance(rewards, dict) and isinstance(rewards.get(keys[1]), (int, float)) \
                and not isinstance(rewards.get(keys[1]), bool):
            rewards[keys[1]] = {"weight": rewards[keys[1]]}
    for k in keys[:-1]:
        node = node.setdefault(k, {})
        if not isinstance(node, dict):
            raise ConfigError(f"override {dotted!r}: {k!r} is not a section")
    node[keys[-1]] = value


def parse_override(text: str) -> tuple[str, Any]:
    """`train.learning_rate=3e-4` -> ("train.learning_rate", 0.0003). Values are YAML scalars."""
    if "=" not in text:
        raise ConfigError(f"override {text!r} is not of the form key.path=value")
    key, raw = text.split("=", 1)
    value = yaml.safe_load(raw) if raw != "" else ""
    if isinstance(value, str):  # YAML reads 3e-4 as a string (no dot); accept it as a float
        try:
            value = float(value) if any(c in value.lower() for c in "e.") and value.lower() not in ("e",) else value
        except ValueError:
            pass
    return key.strip(), value


def load_config(cls: type, recipe: str | Path | None, overrides: list[str] = ()) -> Any:
    """Read the recipe YAML, apply overrides, type-check, run the root class's `validate()` if it has one."""
    tree: dict[str, Any] = {}
    if recipe is not None:
        path = Path(recipe)
        if not path.is_file():
            raise ConfigError(f"recipe file not found: {path}")
        try:
            loaded = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            where = f" line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
            problem = getattr(e, "problem", None) or str(e).splitlines()[0]
            raise ConfigError(f"recipe {path}: invalid YAML at{where}: {problem}") from None
        if not isinstance(loaded, dict):
            raise ConfigError(f"recipe {path} must be a mapping at the top level")
        tree = loaded
    for text in overrides:
        key, value = parse_override(text)
        _set_path(tree, key, value)
    config = build_dataclass(cls, tree)
    if hasattr(config, "validate"):
        config.validate()
    return config


def to_dict(config: Any) -> dict[str, Any]:
    return dataclasses.asdict(config)


def dump_yaml(config: Any) -> str:
    return yaml.safe_dump(json.loads(json.dumps(to_dict(config))), sort_keys=False)


def split_argv(argv: list[str]) -> tuple[str | None, list[str]]:
    """`[recipe.yaml, a.b=1, ...]` -> (recipe, overrides). An option (`--foo`) is a one-line ConfigError: recipes
    take `key=value` overrides only (`--help` is handled by rl/config/cli.py before this)."""
    for arg in argv:
        if arg.startswith("-") and "=" not in arg:
            raise ConfigError(f"unknown option {arg!r}: pass a recipe file and key.path=value overrides (--help)")
    recipe = argv[0] if argv and "=" not in argv[0] else None
    return recipe, argv[1:] if recipe else list(argv)
