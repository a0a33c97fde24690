"""SFT rows from several sources, each with its own columns: R1's stage 3 mixes the reasoning traces sampled from the
RL checkpoint with non-reasoning data (R1 §2.3.3), and the two rarely share column names.

    data:
      train: runs/x/rs/traces.jsonl          # prompt / completion (the distillation's rows)
      mix:
        - {source: procedural:general_replies, prompt_column: instruction, completion_column: reply, count: 200}

Each extra source is read with its own `prompt_column` / `completion_column` and renamed to prompt / completion;
`count` rows are drawn from it (null: all of them; more than it holds: it is repeated, each pass in its own seeded
order, so 500 of 200 rows is every row twice and 100 rows once). The mixed rows are shuffled by the seed. Every row
keeps a `source` column naming where it came from, and the mix reports rows per source.

    >>> main = [{"prompt": "a", "completion": "1"}, {"prompt": "b", "completion": "2"}]
    >>> extra = [{"q": "x", "r": "X"}]
    >>> rows, counts = mix_rows(("traces", main), [("chat", renamed(extra, "q", "r"), 3)], seed=0)
    >>> counts, sorted(r["prompt"] for r in rows)
    ({'traces': 2, 'chat': 3}, ['a', 'b', 'x', 'x', 'x'])

Procedural SFT sources (no file needed): `procedural:cold_start` (correct, strictly formatted arithmetic traces,
data/tasks.py) and `procedural:general_replies` (the general prompts of data/general_tasks.py with their preferred,
polite and concise reply, columns `instruction` / `reply`).
"""
from __future__ import annotations

import random
from typing import Any

SFT_PROCEDURAL = ("procedural:cold_start", "procedural:general_replies")


def draw(rows: list[dict], count: int | None, seed: int) -> list[dict]:
    """`count` rows of `rows` (None: all, in order): whole passes, each in its own order shuffled by (seed, pass),
    then the start of one more pass.

    >>> [r["i"] for r in draw([{"i": 0}, {"i": 1}, {"i": 2}], 5, seed=0)].count(0) >= 1   # every row at least once
    True
    >>> draw([{"i": 0}], 0, seed=0)
    []
    """
    if count is None:
        return list(rows)
    if count < 0:
        raise ValueError(f"count={count} must be at least 0")
    if count and not rows:
        raise ValueError(f"{count} rows asked of an empty source")
    out: list[dict] = []
    passes = 0
    while len(out) < count:
        order = list(rows)
        random.Random(seed * 1_000_003 + passes).shuffle(order)
        out.extend(order[:count - len(out)])
        passes += 1
    return out


def renamed(rows: list[dict], prompt_column: str, completion_column: str) -> list[dict]:
    """Rows with `prompt_column` / `completion_column` renamed to prompt / completion (other columns kept)."""
    return [{**{k: v for k, v in r.items() if k not in (prompt_column, completion_column)},
             "prompt": r[prompt_column], "completion": r[completion_column]} for r in rows]


def mix_rows(main: tuple[str, list[dict]], extras: list[tuple[str, list[dict], int | None]], seed: int
             ) -> tuple[list[dict], dict[str, int]]:
    """(rows, rows per source): the main rows whole, each extra's `count` rows drawn (`draw`), every row tagged with
    its `source`, all shuffled by `seed`; no extras: the main rows unchanged, in order. Sources with the same name
    count together."""
    name, rows = main
    if not extras:
        return rows, {name: len(rows)}
    out = [{**r, "source": name} for r in rows]
    counts = {name: len(rows)}
    for i, (extra_name, extra_rows, count) in enumerate(extras, 1):
        picked = draw(extra_rows, count, seed + i)
        out += [{**r, "source": extra_name} for r in picked]
        counts[extra_name] = counts.get(extra_name, 0) + len(picked)
    random.Random(seed).shuffle(out)
    return out, counts


def general_reply_rows(num_train: int, num_test: int, seed: int, split: str) -> list[dict[str, Any]]:
    """The general prompts of `split` with their preferred reply, no reasoning (R1's non-reasoning data answers
    simple queries without a chain of thought), in the answer tag: {"instruction": "Thank Ann for the tea",
    "reply": " <answer> Thank you so much! </answer>", "task": "general"}. Capped at the 216 / 72 prompts that
    exist."""
    from data.general_tasks import TEST_PROMPTS, TRAIN_PROMPTS, general_prompt, general_split, in_format, write_reply
    train, test = general_split(min(num_train, TRAIN_PROMPTS), min(num_test, TEST_PROMPTS), seed)
    return [{"instruction": general_prompt(*t), "reply": in_format(write_reply(*t, "good"), 1), "task": "general"}
            for t in (train if split == "train" else test)]


def sft_source_rows(source: str, split: str, prompt_column: str, completion_column: str, num_train: int,
                    num_test: int, seed: int, where: str = "data") -> list[dict[str, Any]]:
    """Rows {"prompt", "completion", **other columns} of one SFT source (a procedural one, a local file, a hub
    dataset); an unknown procedural source, a missing column or an empty source is a one-line DataError naming the
    recipe keys to set (`where`: data, data.mix[0], ...)."""
    from data.loading import DataError, read_dataset

    if source.startswith("procedural:"):
        if source == "procedural:cold_start":
            from data.tasks import cold_start_dataset
            rows = cold_start_dataset(num_train, num_test=num_test, seed=seed)
        elif source == "procedural:general_replies":
            rows = general_reply_rows(num_train, num_test, seed, split)
        else:
            raise DataError(f"{where}: unknown procedural SFT source {source!r}; valid: {', '.join(SFT_PROCEDURAL)}")
        columns = set(rows[0]) if rows else set()
    else:
        ds = read_dataset(source, split)
        columns, rows = set(ds.column_names), None
    for needed in (prompt_column, completion_column):
        if needed not in columns and (rows is None or rows):
            raise DataError(f"dataset {source} ({split}) has no column {needed!r}; columns: "
                            f"{', '.join(sorted(columns))} (set {where}.prompt_column / {where}.completion_column)")
    if rows is None:
        rows = ds.to_list()
    if not rows:
        raise DataError(f"dataset {source} ({split}) is empty")
    if (prompt_column, completion_column) == ("prompt", "completion"):
        return rows
    return renamed(rows, prompt_column, completion_column)
