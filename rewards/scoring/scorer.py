"""`RewardScorer`: several named rewards with weights (a recipe's `rewards:` mapping), scored over a batch.

The spec maps a reward name (registry key or import path "pkg.module:function") to a weight, or to a mapping with
an optional `weight` (default 1.0) and the reward's parameters:

    >>> spec = {"accuracy": 1.0, "format": {"weight": 0.5, "prefilled_think": False}}
    >>> with RewardScorer(spec, num_workers=0) as scorer:
    ...     res = scorer.score(["<think> 2+2 </think> <answer> 4 </answer>", "<answer> 5 </answer>"],
    ...                        {"answer": ["4", "4"]})
    >>> res.totals, res.per_reward["accuracy"], res.metrics["rewards/format/mean"]
    ([1.5, 0.0], [1.0, 0.0], 0.5)

Cheap rewards (format, tag_count, reasoning_steps, repetition, soft_overlong: linear-time scans) run in this process
on the full text. Batched rewards (`register_reward(..., batched=True)` or `fn.batched = True`: a reward model, a
remote verifier) run in this process too, one call per batch with every completion, under one deadline of `timeout_s`
per completion. Parsing rewards (accuracy, cosine, countdown, and user rewards unless registered `cheap=True`) run
in `num_workers` worker processes (rewards/scoring/pool.py; started on the first `score`, reused until `close`) on the last
`max_chars` characters of each completion, each (item, reward) limited to `timeout_s` (or to the reward's own
`item_timeout_s` when that is longer: `code` bounds each run itself, by its per-test budget): a timeout scores 0.0
and is counted. An exception on an item scores 0.0 and is counted too (`rewards/<name>/errors`, a warning with the first
one), but a reward that raises on EVERY item of a batch is broken, not unlucky: `score` raises `RewardError`, one
line naming the reward and its first exception, and the training stages stop on it (exit 1). So does a reward
that errors on more than `max_error_frac` of the completions of the last `error_window` batches (GRPO's `scoring:`
section: 0.5 over 10 steps; the defaults here, 1.0 over 1, check nothing beyond the every-item rule). `num_workers=0` scores everything in-process (debugging, tests), still with the caps and, in the main
thread, the per-item SIGALRM timeout (but nothing can stop C code that never returns there).

Rewards per row (`reward_sets={task: [names]}`, rewards/scoring/routing.py): a row's `task` column names the rewards
that score it; each reward is called on its rows only, and the others get None ("does not apply": 0 in the total, as
any None; left out of the reward's mean and of its none_frac and error counts). Metrics per task:
`rewards/<task>/<name>`, `reward/<task>/mean`, `task/<task>/frac`.

Columns: every entry of `columns` that is a list as long as `completions` is handed to the rewards (`answer`,
`nums`, `target`, `completion_length`, `completion_ids`, ...); other entries only to the in-process rewards.
"""
from __future__ import annotations

import collections
import logging
import math
import time
from dataclasses import dataclass, field
from typing import Any, Mapping

from rewards.scoring.deadline import ItemTimeout, deadline
from rewards.extract import cap_tail, completion_text
from rewards.scoring.pool import ERROR, OK, TIMEOUT, WorkerPool
from rewards.scoring.registry import Reward, get_reward, resolve
from rewards.scoring.routing import (TASK_COLUMN, applies, check_reward_sets, plan_rows, subset_columns,
                                     task_metrics)

logger = logging.getLogger(__name__)


class RewardError(RuntimeError):
    """A reward that raised on every completion of a batch: a broken reward, not hostile input. One line naming the
    reward and its first exception; a training run stops on it (exit 1) instead of training on zeros."""


@dataclass
class ScoreResult:
    totals: list[float]  # weighted sum per completion; None counts as 0 in the total
    per_reward: dict[str, list[float | None]]  # unweighted values
    metrics: dict[str, float] = field(default_factory=dict)
    # "rewards/<name>/mean" (over non-None; nan if all None), "rewards/<name>/none_frac", "rewards/<name>/timeouts",
    # "rewards/<name>/errors", "rewards/<name>/time_s" (summed per-item time), "time/score_s" (wall time), and a
    # reward's own step metrics (its drain_metrics() counters, summed over workers, through its summarize(); e.g.
    # "rewards/code/pass_rate", "rewards/code/compile_errors", "rewards/code/timeouts", "rewards/code/sandbox_kills")


def _parse_spec(spec: Any) -> list[tuple[str, float, dict[str, Any]]]:
    """[(name, weight, params)], or a one-line ValueError naming the problem."""
    if not isinstance(spec, Mapping) or not spec:
        raise ValueError(f"rewards: expected a non-empty mapping {{name: weight or {{weight: w, **params}}}}, "
                         f"got {spec!r}")
    out = []
    for name, value in spec.items():
        if not isinstance(name, str):
            raise ValueError(f"rewards: reward names must be strings, got {name!r}")
        if isinstance(value, Mapping):
            params = dict(value)
            weight = params.pop("weight", 1.0)
        else:
            weight, params = value, {}
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not math.isfinite(weight):
            raise ValueError(f"rewards: weight of {name!r} must be a finite number, got {weight!r}")
        bad = [k for k in params if not isinstance(k, str)]
        if bad:
            raise ValueError(f"rewards: parameter names of {name!r} must be strings, got {bad[0]!r}")
        out.append((name, float(weight), params))
    return out


def missing_columns(requires: tuple, columns: Mapping[str, Any]) -> list[str]:
    """The requirements that `columns` do not meet, described: an entry of `requires` is a column name, or a tuple
    of alternatives (`("answer", "solution")`: either will do).

    >>> missing_columns(("nums", ("answer", "solution")), {"solution": [], "nums": []})
    []
    >>> missing_columns(("nums", ("answer", "solution")), {"question": []})
    ["'nums'", "'answer' (or 'solution')"]
    """
    out = []
    for need in requires:
        names = (need,) if isinstance(need, str) else tuple(need)
        if not any(n in columns for n in names):
            out.append(repr(names[0]) + "".join(f" (or {n!r})" for n in names[1:]))
    return out


def validate_reward_spec(spec: Any, reward_sets: Any = None) -> None:
    """Check a recipe's `rewards:` mapping (names, weights, parameters) and, when given, its `reward_sets` (task ->
    reward names) without starting any process or loading any model; one-line ValueError naming the problem.
    Import-path rewards are imported."""
    parsed = _parse_spec(spec)
    for name, _, params in parsed:
        get_reward(name, **params)
    if reward_sets is not None:
        check_reward_sets(reward_sets, [name for name, _, _ in parsed])


class RewardScorer:
    """Weighted rewards over batches, parsing rewards in a reused worker pool (see module docstring)."""

    def __init__(self, spec: Mapping[str, float | Mapping[str, Any]], num_workers: int = 2, timeout_s: float = 5.0,
                 max_chars: int = 20000, max_error_frac: float = 1.0, error_window: int = 1,
                 reward_sets: Mapping[str, list[str]] | None = None):
        if isinstance(num_workers, bool) or not isinstance(num_workers, int) or num_workers < 0:
            raise ValueError(f"RewardScorer: num_workers must be an integer >= 0, got {num_workers!r}")
        if isinstance(timeout_s, bool) or not isinstance(timeout_s, (int, float)) or not timeout_s > 0:
            raise ValueError(f"RewardScorer: timeout_s must be a positive number, got {timeout_s!r}")
        if isinstance(max_chars, bool) or not isinstance(max_chars, int) or max_chars < 1:
            raise ValueError(f"RewardScorer: max_chars must be a positive integer, got {max_chars!r}")
        parsed = _parse_spec(spec)
        self.names: list[str] = [n for n, _, _ in parsed]
        self.weights: dict[str, float] = {n: w for n, w, _ in parsed}
        self.params: dict[str, dict[str, Any]] = {n: p for n, _, p in parsed}
        self.rewards: dict[str, Reward] = {n: get_reward(n, **p) for n, _, p in parsed}  # validates
        # per-row rewards: {task: [names]}; None scores every row with every reward (rewards/scoring/routing.py)
        self.reward_sets = None if reward_sets is None else check_reward_sets(reward_sets, self.names)
        self.num_workers, self.timeout_s, self.max_chars = num_workers, float(timeout_s), max_chars
        # per-item deadline of each reward: `timeout_s`, or more where the reward needs it (`code`: its run's cap)
        self.item_timeouts: dict[str, float] = {n: max(self.timeout_s, self.rewards[n].item_timeout_s or 0.0)
                                                for n in self.names}
        # Which rewards go to workers: parsing ones whose code a fresh process can import.
        self.worker_names = [n for n in self.names if num_workers > 0 and not self.rewards[n].cheap
                             and not self.rewards[n].batched and self.rewards[n].entry.importable]
        self._pool: WorkerPool | None = None
        self._warmed: set[str] = set()
        # the error budget: (errors, items) of each reward's last `error_window` batches
        if not 0 < max_error_frac <= 1 or isinstance(error_window, bool) or not isinstance(error_window, int) \
                or error_window < 1:
            raise ValueError(f"RewardScorer: need 0 < max_error_frac <= 1 and an integer error_window >= 1, got "
                             f"{max_error_frac!r}, {error_window!r}")
        self.max_error_frac, self.error_window = float(max_error_frac), error_window
        self._last_error: dict[str, str] = {}
        self._recent: dict[str, collections.deque] = {n: collections.deque(maxlen=self.error_window)
                                                      for n in self.names}

    # -- lifecycle ---------------------------------------------------------------------------------------------
    @property
    def pool(self) -> WorkerPool | None:
        if self._pool is None and self.worker_names:
            specs = [(self.rewards[n].entry.ref, self.params[n]) for n in self.worker_names]
            self._pool = WorkerPool(specs, num_workers=self.num_workers, timeout_s=self.timeout_s,
                                    timeouts=[self.item_timeouts[n] for n in self.worker_names])
        return self._pool

    def warmup(self) -> None:
        """Initialise the in-process batched rewards now (a reward model loads its weights), at start-up rather than
        inside the first step's scoring deadline; a bad model path fails here, before the policy loads."""
        for name in self.names:
            if self.rewards[name].batched and name not in self._warmed:
                try:
                    self.rewards[name].warmup()
                except (ValueError, OSError) as e:  # a bad model path or model: one line, the run stops (exit 1)
                    raise RewardError(f"reward {name!r}: {str(e).splitlines()[0] if str(e) else type(e).__name__}"
                                      ) from None
                self._warmed.add(name)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.close()
            self._pool = None

    def __enter__(self) -> "RewardScorer":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # noqa: BLE001 (interpreter shutdown)
            pass

    # -- scoring -------------------------------------------------------------------------------------------------
    def score(self, completions: list[str | list[dict]], columns: Mapping[str, Any] | None = None) -> ScoreResult:
        start = time.perf_counter()
        columns = dict(columns or {})
        n = len(completions)
        for k, v in columns.items():
            if isinstance(v, (list, tuple)) and len(v) != n:
                raise ValueError(f"column {k!r} has {len(v)} values for {n} completions")
        if self.reward_sets is None:
            plan = [("", list(range(n)), list(self.names))]
        else:  # each row's task names the rewards that score it; the others give it None (rewards/scoring/routing.py)
            tasks = columns.get(TASK_COLUMN)
            plan = plan_rows(tasks if isinstance(tasks, (list, tuple)) else [None] * n, self.reward_sets)
        values = {name: [None] * n for name in self.names}
        status = {name: [OK] * n for name in self.names}
        seconds = {name: 0.0 for name in self.names}
        counters: dict[str, dict[str, float]] = {name: {} for name in self.names}
        for _, idx, members in plan:
            sub = columns if len(idx) == n else subset_columns(columns, idx, n)
            vals, stats, secs, counts = self._score_rows([completions[i] for i in idx], sub, members)
            for name in members:
                for j, i in enumerate(idx):
                    values[name][i], status[name][i] = vals[name][j], stats[name][j]
                seconds[name] += secs[name]
                for key, c in counts.get(name, {}).items():
                    counters[name][key] = counters[name].get(key, 0.0) + c
        mask = None if self.reward_sets is None else applies(plan, self.names, n)
        result = self._finish(values, status, seconds, n, time.perf_counter() - start, mask)
        for name, counts in counters.items():
            if counts:
                for key, v in self.rewards[name].summarize(counts).items():
                    result.metrics[f"rewards/{name}/{key}"] = float(v)
        if self.reward_sets is not None:
            result.metrics.update(task_metrics(plan, result.per_reward, result.totals))
        return result

    def _score_rows(self, completions: list, columns: dict[str, Any], members: list[str]):
        """Rewards `members` over these completions: (values, status, seconds, counters), each keyed by name."""
        n = len(completions)
        for name in members:
            missing = missing_columns(self.rewards[name].requires, columns)
            if missing:
                raise ValueError(f"reward {name!r} needs the column(s) {', '.join(missing)}; columns: "
                                 f"{', '.join(sorted(columns)) or 'none'}")
        item_cols = {k: list(v) for k, v in columns.items() if isinstance(v, (list, tuple))}
        texts = [completion_text(c) for c in completions]
        capped = [cap_tail(t, self.max_chars) for t in texts]
        values: dict[str, list] = {}
        counters: dict[str, dict[str, float]] = {}
        status: dict[str, list[int]] = {}
        seconds: dict[str, float] = {}
        in_workers = [name for name in self.worker_names if name in members]

        for name in members:
            if name in in_workers:
                continue
            if self.rewards[name].cheap:  # linear-time: the whole batch at once, on the full text
                t0 = time.perf_counter()
                try:
                    out = self.rewards[name](texts, **columns)
                except Exception as e:  # noqa: BLE001 (a batch reward that raises has failed on every item)
                    raise RewardError(f"reward {name!r} raised on all {n} completions of this batch: "
                                      f"{type(e).__name__}: {str(e)[:200]}") from None
                if len(out) != n:
                    raise ValueError(f"reward {name!r} returned {len(out)} values for {n} completions")
                values[name], status[name] = [None if v is None else float(v) for v in out], [OK] * n
                seconds[name] = time.perf_counter() - t0
            elif self.rewards[name].batched:
                values[name], status[name], seconds[name] = self._batched(name, capped, item_cols)
            else:
                values[name], status[name], seconds[name] = self._in_process(name, capped, item_cols)
            counters[name] = self.rewards[name].drain_metrics()

        if in_workers and n:
            vals, stats, secs = self.pool.run(capped, item_cols, [self.worker_names.index(m) for m in in_workers])
            for k, name in enumerate(in_workers):
                values[name], status[name], seconds[name] = vals[k], stats[k], secs[k]
                counters[name] = self.pool.last_metrics[k]
        else:
            for name in in_workers:
                values[name], status[name], seconds[name] = [], [], 0.0
        return values, status, seconds, counters

    def _batched(self, name: str, texts: list[str], cols: dict[str, list]):
        """One call with the whole batch, under one deadline of `timeout_s` per completion (a reward model or a
        remote verifier scores a batch far faster than item by item). Raising = failing on every item (RewardError);
        running out of time scores the batch 0.0, counted as timeouts."""
        fn, n = self.rewards[name], len(texts)
        if name not in self._warmed:
            fn.warmup()
            self._warmed.add(name)
        t0 = time.perf_counter()
        try:
            with deadline(self.item_timeouts[name] * max(n, 1)):
                out = fn(texts, **cols)
        except ItemTimeout:
            return [0.0] * n, [TIMEOUT] * n, time.perf_counter() - t0
        except Exception as e:  # noqa: BLE001 (one call for the batch: it failed on every item)
            raise RewardError(f"reward {name!r} raised on all {n} completions of this batch: "
                              f"{type(e).__name__}: {str(e)[:200]}") from None
        if len(out) != n:
            raise ValueError(f"reward {name!r} returned {len(out)} values for {n} completions")
        return [None if v is None else float(v) for v in out], [OK] * n, time.perf_counter() - t0

    def _in_process(self, name: str, texts: list[str], cols: dict[str, list]):
        fn = self.rewards[name]
        if name not in self._warmed:
            fn.warmup()
            self._warmed.add(name)
        vals: list[Any] = []
        stats: list[int] = []
        t_total = 0.0
        for j, text in enumerate(texts):
            t0 = time.perf_counter()
            try:
                with deadline(self.item_timeouts[name]):
                    v = fn([text], **{k: [c[j]] for k, c in cols.items()})[0]
                vals.append(None if v is None else float(v))
                stats.append(OK)
            except ItemTimeout:
                vals.append(0.0)
                stats.append(TIMEOUT)
            except Exception as e:  # noqa: BLE001 (hostile input must not crash the scorer)
                vals.append(f"{type(e).__name__}: {str(e)[:200]}")
                stats.append(ERROR)
            t_total += time.perf_counter() - t0
        return vals, stats, t_total

    def _check_error_budget(self, name: str, errors: int, n: int, first: str | None) -> None:
        """RewardError once the last `error_window` batches are in and more than `max_error_frac` of their items
        errored. E.g. window 10 at 64 completions a step, max 0.5: 321 errors of 640 stop the run, 320 do not."""
        recent = self._recent[name]
        recent.append((errors, n))
        if first is not None:
            self._last_error[name] = first
        if len(recent) < self.error_window:
            return
        bad, total = sum(e for e, _ in recent), sum(m for _, m in recent)
        if total and bad / total > self.max_error_frac:
            raise RewardError(f"reward {name!r} raised on {bad} of {total} completions ({bad / total:.0%}) over the "
                              f"last {len(recent)} batches, more than max_error_frac={self.max_error_frac:g}: "
                              f"{self._last_error.get(name, '')}")

    def _finish(self, values, status, seconds, n: int, wall: float, mask: dict[str, list[bool]] | None = None
                ) -> ScoreResult:
        """Totals and metrics. `mask[name][i]`: whether reward `name` scores row i (per-row reward sets; None: every
        row); its errors and none_frac count the rows it scores only."""
        per_reward: dict[str, list[float | None]] = {}
        metrics: dict[str, float] = {}
        totals = [0.0] * n
        for name in self.names:
            vals, stats = values[name], status[name]
            m = n if mask is None else sum(mask[name])  # the rows this reward scores
            errors = [v for v, s in zip(vals, stats) if s == ERROR]
            if errors and len(errors) == m:
                raise RewardError(f"reward {name!r} raised on all {m} completions of this batch: {errors[0]}")
            if errors:
                logger.warning("reward %r: %d error(s) scored 0.0; first: %s", name, len(errors), errors[0])
            self._check_error_budget(name, len(errors), m, errors[0] if errors else None)
            clean = [0.0 if s == ERROR else v for v, s in zip(vals, stats)]
            per_reward[name] = clean
            w = self.weights[name]
            for i, v in enumerate(clean):
                if v is not None:
                    totals[i] += w * v
            present = [v for v in clean if v is not None]
            metrics[f"rewards/{name}/mean"] = sum(present) / len(present) if present else float("nan")
            metrics[f"rewards/{name}/none_frac"] = (m - len(present)) / m if m else 0.0
            metrics[f"rewards/{name}/timeouts"] = float(sum(s == TIMEOUT for s in stats))
            metrics[f"rewards/{name}/errors"] = float(len(errors))
            metrics[f"rewards/{name}/time_s"] = float(seconds[name])
        metrics["time/score_s"] = wall
        return ScoreResult(totals=totals, per_reward=per_reward, metrics=metrics)
