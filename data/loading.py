"""Load datasets into canonical examples: {"prompt": str | messages, "answer": str, **extra columns}.

Sources (the recipe's `data.train` / `data.test`):
    procedural:arithmetic          the offline task of data/tasks.py (train/test splits, disjoint)
    procedural:code                function-writing problems with hidden asserts (data/code_tasks.py; `test_list`)
    procedural:general / :mixed    general prompts (`task: general`, no gold), alone or half and half with arithmetic
                                   (`task: arithmetic`) for per-row reward sets (data/general_tasks.py)
    procedural:tools               products and long sums, easy with the python tool (data/tool_tasks.py)
    path/to/file.jsonl|json|parquet|csv  a local file (loaded with `datasets`)
    org/name                       a hub dataset (needs network; CI never uses one)

Columns are renamed with `prompt_column` / `answer_column`; a missing column is a one-line error listing the ones
that exist. The gold column defaults to `answer`, and a dataset without one but with `solution` (MATH, NuminaMath,
open-r1's name) uses that: the rewards parse worked solutions ending in `\\boxed{}` and GSM8K's `... #### 72` as
well as bare values. Extra columns are kept: they travel to the reward functions as keyword lists.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from data.tasks import arithmetic_dataset

LOCAL_FORMATS = {".jsonl": "json", ".json": "json", ".parquet": "parquet", ".csv": "csv"}
ANSWER_ALIASES = {"answer": ("solution",)}  # default gold column -> the names datasets also use for it


class DataError(ValueError):
    """A dataset problem, named in one line."""


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0][:200]}" if text else type(e).__name__


def _bad_file(path: Path, error: BaseException) -> str:
    """Why `datasets` could not read a local file, in one line: the first line that is not JSON (.jsonl), else the
    library's own first line."""
    if path.suffix.lower() == ".jsonl":
        with open(path, encoding="utf-8", errors="replace") as fh:
            for i, line in enumerate(fh, 1):
                if line.strip():
                    try:
                        json.loads(line)
                    except ValueError as e:
                        return f"dataset file {path} line {i}: not valid JSON ({getattr(e, 'msg', e)})"
    return f"dataset file {path} could not be read ({_first_line(error)})"


def read_dataset(source: str, split: str):
    """A `datasets.Dataset` from a local .jsonl/.json/.parquet/.csv file or a hub dataset; every failure is one
    DataError line: a missing file, an empty one, the first bad JSON line, a file or directory without a known
    suffix, a hub dataset that cannot be fetched (offline: HF_HUB_OFFLINE=1)."""
    import datasets

    path = Path(source)
    suffix = path.suffix.lower()
    if suffix in LOCAL_FORMATS:
        if not path.is_file():
            raise DataError(f"dataset file not found: {source}")
        if path.stat().st_size == 0 or (suffix != ".parquet" and not path.read_bytes()[:1 << 20].strip()):
            raise DataError(f"dataset file {source} is empty")
        was_on = datasets.is_progress_bar_enabled()
        datasets.disable_progress_bars()  # a local file loads in a moment: no "Generating train split" bars
        try:
            return datasets.load_dataset(LOCAL_FORMATS[suffix], data_files={split: str(path)}, split=split)
        except Exception as e:  # noqa: BLE001 (the library's errors are long tracebacks; say which line is bad)
            raise DataError(_bad_file(path, e)) from None
        finally:
            if was_on:
                datasets.enable_progress_bars()
    if path.exists():
        raise DataError(f"dataset {source}: a local {'directory' if path.is_dir() else 'file'} without a known "
                        f"suffix; name the file .jsonl, .json, .parquet or .csv")
    try:
        return datasets.load_dataset(source, split=split)
    except Exception as e:  # noqa: BLE001
        offline = os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes", "on")
        hint = (" while offline (HF_HUB_OFFLINE=1) and not in the local cache" if offline
                else f" ({_first_line(e)})")
        raise DataError(f"dataset {source!r}: no such local file (.jsonl/.json/.parquet/.csv), and the hub dataset "
                        f"could not be loaded{hint}") from None


def _procedural(name: str, split: str, num_train: int, num_test: int, seed: int) -> list[dict[str, Any]]:
    from data.code_tasks import code_dataset
    from data.general_tasks import general_dataset, mixed_dataset
    from data.tool_tasks import tool_dataset
    tasks = {"arithmetic": arithmetic_dataset, "code": code_dataset, "general": general_dataset,
             "mixed": mixed_dataset, "tools": tool_dataset}
    if name not in tasks:
        raise DataError(f"unknown procedural task {name!r}; valid: {', '.join(tasks)}")
    try:
        train, test = tasks[name](num_train, num_test, seed=seed)
    except ValueError as e:  # too many problems asked for
        raise DataError(f"procedural:{name}: {e} (data.num_train + data.num_test)") from None
    if split not in ("train", "test"):
        raise DataError(f"procedural:{name} has splits train and test, not {split!r}")
    return train if split == "train" else test


def _gold_column(answer_column: str, columns: set[str], source: str, split: str) -> str:
    """`answer_column` if the dataset has it, else the first alias it has (`solution` for `answer`)."""
    if answer_column in columns:
        return answer_column
    for alias in ANSWER_ALIASES.get(answer_column, ()):
        if alias in columns:
            return alias
    aliases = ANSWER_ALIASES.get(answer_column, ())
    nor = f" (nor its alias {', '.join(map(repr, aliases))})" if aliases else ""
    raise DataError(f"dataset {source} ({split}) has no column {answer_column!r}{nor}; columns: "
                    f"{', '.join(sorted(columns))} (set data.prompt_column / data.answer_column)")


def evaluation_set_line(train: str, test: str | None, test_split: str, num_rows: int) -> str:
    """What a training stage says at start-up about its held-out evaluation, so a run on your own data never
    evaluates silently on the recipe's toy task:

    >>> evaluation_set_line("procedural:arithmetic", "procedural:arithmetic", "test", 200)
    'evaluation: 200 rows of procedural:arithmetic (test)'

    With data.train=mine.jsonl and the tiny recipe's data.test left as it is, the line goes on: "-- note: the
    recipe's procedural task, while data.train is mine.jsonl: set data.test=YOUR_TEST_FILE (or data.test=null ...)".
    """
    if not test:
        return "evaluation: none (data.test is not set)"
    line = f"evaluation: {num_rows} rows of {test} ({test_split})"
    if test.startswith("procedural:") and not train.startswith("procedural:"):
        line += (f" -- note: the recipe's procedural task, while data.train is {train}: set data.test=YOUR_TEST_FILE "
                 f"(or data.test=null for none)")
    return line


def training_set_line(train: str, split: str, num_rows: int, prompt_column: str, gold_column: str, num_train: int,
                      prompts_drawn: int | None = None) -> str:
    """What a training stage says at start-up about the rows it trains on, so a setting that does not apply (the
    recipe's `data.num_train: 2000` on a 30-row file) is never silent:

    >>> training_set_line("procedural:arithmetic", "train", 2000, "prompt", "answer", 2000, 40 * 8)
    'training: 2000 rows of procedural:arithmetic (train; data.num_train=2000); 320 prompts drawn over the run (0.16 passes)'
    >>> training_set_line("mine.jsonl", "train", 30, "problem", "solution", 2000, 40 * 8)  # doctest: +NORMALIZE_WHITESPACE
    "training: 30 rows of mine.jsonl (train; prompt column 'problem', gold column 'solution'; data.num_train=2000
    applies to procedural tasks only: a file is used whole); 320 prompts drawn over the run (10.67 passes)"

    `prompts_drawn`: steps x prompts per step x processes (None: not said; SFT counts epochs instead).
    """
    if train.startswith("procedural:"):
        what = f"{split}; data.num_train={num_train}"
    else:
        what = f"{split}; prompt column {prompt_column!r}, gold column {gold_column!r}"
        if num_train != num_rows:
            what += f"; data.num_train={num_train} applies to procedural tasks only: a file is used whole"
    line = f"training: {num_rows} rows of {train} ({what})"
    if prompts_drawn is not None and num_rows:
        line += f"; {prompts_drawn} prompts drawn over the run ({prompts_drawn / num_rows:.2f} passes)"
    return line


def load_examples(source: str, split: str = "train", **kwargs) -> list[dict[str, Any]]:
    """Rows of `source`/`split` as canonical examples (at most `limit`); keywords as `load_examples_and_gold`."""
    return load_examples_and_gold(source, split, **kwargs)[0]


def load_examples_and_gold(source: str, split: str = "train", *, prompt_column: str = "prompt",
                           answer_column: str = "answer", limit: int | None = None, num_train: int = 2000,
                           num_test: int = 200, seed: int = 0, keep_columns: list[str] | None = None
                           ) -> tuple[list[dict[str, Any]], str]:
    """(canonical examples, the gold column actually read): `solution` when `answer` was asked for and only
    `solution` exists, so a saved config can say what was used.

    `keep_columns`: the other columns kept (None: all). Only these become Python objects: OpenR1-Math-220k's
    `generations` and `messages` (the original R1 traces, kilobytes per row) stay in the memory-mapped Arrow file
    instead of being copied into every example on every rank and pickled to the reward workers with each item."""
    if source.startswith("procedural:"):
        rows = _procedural(source.split(":", 1)[1], split, num_train, num_test, seed)
        columns = set(rows[0]) if rows else {"prompt", "answer"}
    else:
        ds = read_dataset(source, split)
        columns = set(ds.column_names)
        answer_column = _gold_column(answer_column, columns, source, split)
        if prompt_column not in columns:
            raise DataError(f"dataset {source} ({split}) has no column {prompt_column!r}; columns: "
                            f"{', '.join(sorted(columns))} (set data.prompt_column / data.answer_column)")
        if keep_columns is not None:
            unknown = [c for c in keep_columns if c not in columns]
            if unknown:
                raise DataError(f"dataset {source} ({split}) has no column {unknown[0]!r} (data.columns); columns: "
                                f"{', '.join(sorted(columns))}")
            ds = ds.select_columns(list(dict.fromkeys([prompt_column, answer_column, *keep_columns])))
        if limit is not None:
            ds = ds.select(range(min(limit, len(ds))))
        rows = ds.to_list()
    for needed in (prompt_column, answer_column):
        if needed not in columns:
            raise DataError(f"dataset {source} ({split}) has no column {needed!r}; columns: {', '.join(sorted(columns))}")
    out = []
    for row in rows[:limit] if limit is not None else rows:
        ex = {k: v for k, v in row.items() if k not in (prompt_column, answer_column)
              and (keep_columns is None or k in keep_columns)}
        ex["prompt"], ex["answer"] = row[prompt_column], str(row[answer_column])
        out.append(ex)
    if not out:
        raise DataError(f"dataset {source} ({split}) is empty")
    return out, answer_column
