"""The reward registry: names -> reward builders, `register_reward`, `get_reward`, and import-path references.

A reward function follows TRL GRPOTrainer's convention, `fn(completions, **columns) -> list[float | None]`, where
`completions` holds strings or chat-message lists and each dataset column arrives as a keyword list (`answer`, ...).
A registry entry is either

- a *reward function* (`@register_reward("name")`): recipe parameters are passed to it as keyword arguments on every
  call, and must be named parameters of the function; or
- a *factory* (`@register_reward("name", factory=True)`): called once with the recipe parameters, it validates them
  and returns the reward function (all built-in rewards are factories).

`get_reward(name, **params)` accepts a registry key or an import path `"my_pkg.my_rewards:my_fn"`, and returns a
picklable `Reward` with a proper `__name__` (TRL logs `rewards/<__name__>/mean`), which can be handed to
`trl.GRPOTrainer(reward_funcs=[...])` unchanged:

    >>> from rewards import get_reward
    >>> acc = get_reward("accuracy")
    >>> acc.__name__, acc(["<think> 2+2 </think> <answer> 4 </answer>", "<answer> 5 </answer>"], answer=["4", "4"])
    ('accuracy', [1.0, 0.0])
    >>> get_reward("nope")
    Traceback (most recent call last):
    ...
    ValueError: unknown reward 'nope'; valid: accuracy, format, tag_count, reasoning_steps, cosine, repetition, ...
"""
from __future__ import annotations

import importlib
import inspect
import sys
from dataclasses import dataclass
from typing import Any, Callable

REWARDS: list[str] = []  # registered names, in registration order (built-ins first)


@dataclass(frozen=True)
class RewardEntry:
    name: str
    obj: Callable[..., Any]
    factory: bool  # obj(**params) returns the reward function
    cheap: bool  # True: the scorer runs it in the parent process; False: in its worker processes
    batched: bool = False  # True: called once per batch with every completion, in the parent process
    source: str | None = None  # "/abs/path/file.py:func" when the reward was named by a file path

    @property
    def ref(self) -> str:
        """An import path that rebuilds this entry in another process ("module:qualname", or the file's absolute
        path "/abs/file.py:qualname" for a reward named by path)."""
        return self.source or f"{self.obj.__module__}:{self.obj.__qualname__}"

    @property
    def importable(self) -> bool:
        """Whether `ref` can be imported in a fresh (forkserver/spawn) worker process."""
        if self.source is not None:
            return "<locals>" not in self.obj.__qualname__
        if "<locals>" in self.obj.__qualname__ or "<lambda>" in self.obj.__qualname__:
            return False
        if self.obj.__module__ in ("__main__", "__mp_main__"):
            return getattr(sys.modules.get("__main__"), "__file__", None) is not None
        return True


_REGISTRY: dict[str, RewardEntry] = {}


def register_reward(name: str, *, factory: bool = False, cheap: bool = False, batched: bool = False) -> Callable:
    """Decorator: register a reward function (or, with `factory=True`, a reward factory) under `name`.

    `cheap=True` lets the scorer run it in the parent process (for rewards that do no parsing and are linear-time);
    the default runs it in the worker processes, one completion per call, with a per-item timeout. `batched=True`:
    one call per batch with all its completions, in the parent process, under one deadline for the call (a reward
    model, a remote verifier). An import-path function declares the same with the attribute `fn.batched = True`.
    """
    if not isinstance(name, str) or not name or ":" in name:
        raise ValueError(f"reward name must be a non-empty string without ':', got {name!r}")

    def deco(obj: Callable) -> Callable:
        existing = _REGISTRY.get(name)
        if existing is not None and existing.ref != f"{obj.__module__}:{obj.__qualname__}":
            raise ValueError(f"reward {name!r} is already registered (by {existing.ref})")
        obj.__reward_factory__ = factory
        obj.__reward_cheap__ = cheap
        obj.__reward_batched__ = batched
        _REGISTRY[name] = RewardEntry(name, obj, factory, cheap, batched)
        if name not in REWARDS:
            REWARDS.append(name)
        return obj

    return deco


def _unknown(name: Any, why: str = "") -> ValueError:
    return ValueError(f"unknown reward {name!r}{why}; valid: {', '.join(REWARDS)} (or an import path "
                      f"'pkg.module:function', or a file 'path/to/file.py:function')")


def is_file_reference(name: str) -> bool:
    """Whether a reward name points at a file ("path/to/file.py:func") rather than a module ("pkg.mod:func").

    >>> [is_file_reference(n) for n in ("my_rewards.py:short", "lib/r.py:f", "my_pkg.my_rewards:f", "accuracy")]
    [True, True, False, False]
    """
    module, sep, _ = name.rpartition(":")
    return bool(sep) and module.endswith(".py")


def _import_file(path: str) -> Any:
    """The module of a .py file, loaded once per process under a name made of its absolute path (a worker process
    that rebuilds the reward loads the same file). FileNotFoundError names the absolute path looked at."""
    import hashlib
    import importlib.util
    from pathlib import Path

    file = Path(path).expanduser().resolve()
    if not file.is_file():
        raise FileNotFoundError(f"no file {file}" + ("" if Path(path).is_absolute() else
                                                     f" ({path} relative to the working directory {Path.cwd()})"))
    module_name = f"_reward_file_{file.stem}_{hashlib.sha1(str(file).encode()).hexdigest()[:10]}"
    if module_name in sys.modules:
        return sys.modules[module_name]
    spec = importlib.util.spec_from_file_location(module_name, file)
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[module_name]
        raise
    return module


def _where_modules_are_looked_for(module_name: str) -> str:
    """The directories an import of `module_name` searched, for the error: '' stands for the working directory."""
    from pathlib import Path
    dirs = [str(Path.cwd()) if not p else p for p in sys.path if not p or Path(p).is_dir()]
    shown = ", ".join(dirs[:4]) + (f" and {len(dirs) - 4} more" if len(dirs) > 4 else "")
    top = module_name.split(".")[0]
    return (f"; looked for module {top!r} in sys.path ({shown}); name a file instead: "
            f"'path/to/{top}.py:function'")


def resolve(name: str) -> RewardEntry:
    """The entry for a registry key, an import path "pkg.module:attr" (imported here) or a file path
    "path/to/file.py:attr" (loaded here; relative to the working directory). ValueError if none of them, saying
    where the module or file was looked for."""
    if not isinstance(name, str):
        raise _unknown(name)
    if name in _REGISTRY:
        return _REGISTRY[name]
    if ":" not in name:
        raise _unknown(name)
    by_file = is_file_reference(name)
    module_name, _, attr = name.rpartition(":") if by_file else name.partition(":")
    source = None
    try:
        obj: Any = _import_file(module_name) if by_file else importlib.import_module(module_name)
        if by_file:
            source = f"{obj.__file__}:{attr}"
        for part in attr.split("."):
            obj = getattr(obj, part)
    except FileNotFoundError as e:
        raise ValueError(f"reward {name!r}: {e}") from None
    except ModuleNotFoundError as e:
        where = _where_modules_are_looked_for(module_name) if e.name and module_name.startswith(e.name) else ""
        raise _unknown(name, f" (import failed: {type(e).__name__}: {e}{where})") from None
    except (ImportError, AttributeError, ValueError) as e:
        raise _unknown(name, f" (import failed: {type(e).__name__}: {e})") from None
    if not callable(obj):
        raise ValueError(f"reward {name!r} is not callable")
    return RewardEntry(name, obj, bool(getattr(obj, "__reward_factory__", False)),
                       bool(getattr(obj, "__reward_cheap__", False)),
                       bool(getattr(obj, "__reward_batched__", False) or getattr(obj, "batched", False) is True),
                       source)


class Reward:
    """A built reward: call it like the function it wraps. Picklable (rebuilt by reference + parameters)."""

    def __init__(self, entry: RewardEntry, params: dict[str, Any], display_name: str):
        self.entry, self.params, self.name = entry, dict(params), display_name
        self.__name__ = self.__qualname__ = display_name
        self.cheap = entry.cheap
        if entry.factory:
            self._check_params(entry.obj, skip=())
            self._fn = entry.obj(**self.params)
        else:
            self._check_params(entry.obj, skip=("completions",))
            self._fn = entry.obj
        # a factory's reward function may declare itself batched too (`fn.batched = True`)
        self.batched = entry.batched or getattr(self._fn, "batched", False) is True

    def _check_params(self, fn: Callable, skip: tuple[str, ...]) -> None:
        try:
            sig = inspect.signature(fn)
        except (TypeError, ValueError):
            return
        named = {p.name for p in sig.parameters.values()
                 if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD) and p.name not in skip}
        for key in self.params:
            if key not in named:
                raise ValueError(f"reward {self.name!r}: unknown parameter {key!r} (valid: "
                                 f"{', '.join(sorted(named)) or 'none'})")

    def __call__(self, completions: list, **kwargs: Any) -> list[float | None]:
        if self.entry.factory:
            return self._fn(completions, **kwargs)
        return self._fn(completions, **{**kwargs, **self.params})

    @property
    def requires(self) -> tuple[str | tuple[str, ...], ...]:
        """Columns the reward cannot work without (a reward function may declare them as `fn.requires`); an entry
        that is a tuple lists alternatives (`("answer", "solution")`: either column will do)."""
        return tuple(getattr(self._fn, "requires", ()))

    @property
    def item_timeout_s(self) -> float | None:
        """How long one completion may take this reward, when it says so (`fn.item_timeout_s`: the `code` reward
        bounds each run itself and needs more than the scorer's default); None otherwise. The RewardScorer's
        per-item deadline for it is the larger of this and its own `timeout_s`."""
        value = getattr(self._fn, "item_timeout_s", None)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
            raise ValueError(f"reward {self.name!r}: item_timeout_s must be a positive number, got {value!r}")
        return float(value)

    def warmup(self) -> None:
        """Run the reward's one-off initialisation (imports, parser construction) if it has any."""
        hook = getattr(self._fn, "warmup", None)
        if callable(hook):
            hook()

    def drain_metrics(self) -> dict[str, float]:
        """The reward's own counters since the last call (a reward function may define `fn.drain_metrics()`;
        e.g. `code`'s tests run/passed, compile errors, sandbox kills), reset; {} if it has none."""
        hook = getattr(self._fn, "drain_metrics", None)
        return dict(hook()) if callable(hook) else {}

    def summarize(self, counters: dict[str, float]) -> dict[str, float]:
        """Step metrics from counters summed over workers (`fn.summarize`, e.g. a pass rate); default: as is."""
        hook = getattr(self._fn, "summarize", None)
        return dict(hook(counters)) if callable(hook) else dict(counters)

    def __reduce__(self):
        # By import path when possible: a fresh process may not have imported the module that registered the name.
        return _rebuild, (self.entry.ref if self.entry.importable else self.entry.name, self.params, self.name)

    def __repr__(self) -> str:
        return f"Reward({self.name!r}, {self.params!r})"


def _rebuild(name: str, params: dict[str, Any], display_name: str) -> Reward:
    import rewards  # noqa: F401  (registers the built-ins in a fresh process)
    return Reward(resolve(name), params, display_name)


def get_reward(name: str, **params: Any) -> Reward:
    """Build reward `name` (registry key or "pkg.module:function") with `params`. ValueError on unknown names or
    parameters, naming the reward and the parameter."""
    entry = resolve(name)
    display = name if name in _REGISTRY else name.rpartition(":")[2].rpartition(".")[2]
    return Reward(entry, params, display)


EVAL_SLOTS = ("accuracy", "format")  # what a held-out evaluation reports: eval/accuracy, eval/format


def eval_rewards(spec: dict[str, Any]) -> dict[str, Reward]:
    """The rewards that judge held-out evaluations, from a recipe's `eval_rewards:` mapping slot -> parameters.

    A slot is judged by the reward of its own name, or by the one named in `reward:` (the code world's eval/accuracy
    is the `code` reward's pass rate):

    >>> sorted(eval_rewards({"accuracy": {}, "format": None}))
    ['accuracy', 'format']
    >>> eval_rewards({"accuracy": {"reward": "code", "sandbox": "none"}})["accuracy"].name
    'code'
    >>> eval_rewards({"speed": {}})
    Traceback (most recent call last):
    ValueError: eval_rewards: unknown slot 'speed'; valid: accuracy, format

    Both slots are always present (an omitted one gets its own reward with defaults). ValueError, one line, for an
    unknown slot, an unknown reward or parameter."""
    if not isinstance(spec, dict):
        raise ValueError(f"eval_rewards: expected a mapping of {', '.join(EVAL_SLOTS)} to parameters, got {spec!r}")
    out = {}
    for slot in spec:
        if slot not in EVAL_SLOTS:
            raise ValueError(f"eval_rewards: unknown slot {slot!r}; valid: {', '.join(EVAL_SLOTS)}")
    for slot in EVAL_SLOTS:
        params = dict(spec.get(slot) or {})
        name = params.pop("reward", slot)
        try:
            out[slot] = get_reward(name, **params)
        except ValueError as e:
            raise ValueError(f"eval_rewards.{slot}: {e}") from None
    return out
