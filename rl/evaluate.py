"""The evaluation stage: a model (dir, checkpoint, run dir or tiny name) on named benchmarks -> a results table.

    python rl/evaluate.py runs/tiny_r1 --k 4 --out runs/tiny_r1/eval
    python rl/evaluate.py exports/student --benchmarks arithmetic,gsm8k --template chat      # hub sets need network

Greedy `eval/*` metrics and sampled `sampled/*` metrics (pass@1 over k samples at T 0.6, pass@k, maj@k) come from
rl/rollout/evaluation.py (the same code the training loops evaluate with); the math of pass@k and maj@k, with a
worked example, is in rl/core/eval_metrics.py. This file holds the benchmarks by name, the report and the CLI.
"""
from __future__ import annotations

import sys
from pathlib import Path

if __name__ == "__main__" and not __package__:  # `python rl/evaluate.py`: import from the repo root, not from rl/
    sys.path[0] = str(Path(__file__).resolve().parents[1])

from rl.rollout.evaluation import evaluate_greedy, evaluate_sampled  # noqa: E402


# name -> (hub dataset id, config, split, prompt column, answer column, how to read the gold answer)
BENCHMARKS: dict[str, tuple[str | None, str | None, str, str, str, str]] = {
    "arithmetic": (None, None, "test", "prompt", "answer", "as_is"),  # procedural, offline (data/tasks.py)
    "math500": ("HuggingFaceH4/MATH-500", None, "test", "problem", "answer", "as_is"),
    "gsm8k": ("openai/gsm8k", "main", "test", "question", "answer", "after_hashes"),  # gold: "...#### 72"
    "aime2024": ("HuggingFaceH4/aime_2024", None, "train", "problem", "answer", "as_is"),
}


def is_local_file(name: str) -> bool:
    from data.loading import LOCAL_FORMATS
    return Path(name).suffix.lower() in LOCAL_FORMATS


def load_benchmark(name: str, limit: int | None = None, num_test: int = 200, seed: int = 0) -> list[dict]:
    """Canonical {"prompt", "answer"} rows of a benchmark in BENCHMARKS (hub sets need the network), or of a local
    .jsonl/.json/.parquet/.csv file with `prompt` and `answer` (or `solution`) columns, as a GRPO recipe's data."""
    if is_local_file(name):
        from data.loading import load_examples
        return load_examples(name, "train", limit=limit)
    if name not in BENCHMARKS:
        raise ValueError(f"unknown benchmark {name!r}; valid: {', '.join(BENCHMARKS)}, or a local "
                         f".jsonl/.json/.parquet/.csv file")
    hub_id, config, split, prompt_col, answer_col, gold = BENCHMARKS[name]
    if hub_id is None:
        from data.loading import load_examples
        return load_examples("procedural:arithmetic", split, limit=limit, num_test=num_test, seed=seed)
    import datasets
    try:
        ds = datasets.load_dataset(hub_id, config, split=split)
    except Exception as e:  # offline (HF_HUB_OFFLINE=1) or not cached
        raise ValueError(f"benchmark {name} ({hub_id}) is not available offline: {type(e).__name__}") from None
    rows = ds.select(range(min(limit, len(ds)))) if limit else ds
    def read(a):
        return str(a).split("####")[-1].strip() if gold == "after_hashes" else str(a)
    return [{"prompt": r[prompt_col], "answer": read(r[answer_col])} for r in rows]


def evaluate_model(model_dir: str, benchmarks: list[str] = ("arithmetic",), k: int = 4, max_tokens: int = 64,
                   template: str = "r1_zero", system_prompt: str | None = None, limit: int | None = None,
                   temperature: float = 0.6, top_p: float = 0.95, seed: int = 0, num_test: int = 200,
                   prefilled_think: bool = False) -> dict[str, dict[str, float]]:
    """Greedy (`eval/*`) and sampled (`sampled/*`) metrics of one model per benchmark (HF engine); `limit` None = the
    whole benchmark. `prefilled_think`: the template opens <think> (R1-Distill): the format reward expects the
    completion to start inside the reasoning, and accuracy judges only the text after </think>, so a box written
    mid-reasoning in a trace cut off by max_tokens is not counted as the answer."""
    from rl.train.models import check_model_source
    for name in benchmarks:
        if name not in BENCHMARKS and not is_local_file(name):
            raise ValueError(f"unknown benchmark {name!r}; valid: {', '.join(BENCHMARKS)}, or a local "
                             f".jsonl/.json/.parquet/.csv file")
    check_model_source(model_dir, "model_dir")
    from rewards import get_reward
    from rl.rollout.collect import PromptEncoder
    from rl.train.models import load_causal_lm, load_tokenizer
    from rl.rollout.hf import HFEngine
    from rl.train.models import resolve_model_path

    data = {name: load_benchmark(name, limit, num_test, seed) for name in benchmarks}
    path = resolve_model_path(model_dir)
    tokenizer = load_tokenizer(path)
    engine = HFEngine(load_causal_lm(path), tokenizer)
    encoder = PromptEncoder(tokenizer, template, system_prompt, max_prompt_length=4096)
    rewards = {"accuracy": get_reward("accuracy", after_think=prefilled_think),
               "format": get_reward("format", prefilled_think=prefilled_think)}
    results = {}
    for name, examples in data.items():
        print(f"[evaluate] {name}: {len(examples)} problems", flush=True)
        greedy, _ = evaluate_greedy(engine, encoder, examples, max_tokens, rewards)
        sampled, _ = evaluate_sampled(engine, encoder, examples, k, max_tokens, rewards, temperature, top_p, seed)
        results[name] = {**greedy, **sampled, "num_problems": len(examples)}
    return results


COLUMNS = [("eval/accuracy", "greedy acc"), ("sampled/pass@1", "pass@1"), ("sampled/maj@{k}", "maj@{k}"),
           ("sampled/pass@{k}", "pass@{k}"), ("eval/format", "format"), ("eval/completion_len", "mean len")]


def markdown_table(results: dict[str, dict[str, float]], k: int = 4) -> str:
    """{row name: metrics} -> a markdown table (percentages, length in tokens); missing metrics print as '-'."""
    cols = [(key.format(k=k), title.format(k=k)) for key, title in COLUMNS]
    lines = ["| model | " + " | ".join(t for _, t in cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for name, m in results.items():
        cells = []
        for key, title in cols:
            v = m.get(key)
            cells.append("-" if v is None else f"{v:.1f}" if title == "mean len" else f"{100 * v:.1f}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_report(results: dict, out_dir: str | Path, k: int = 4, stem: str = "results", notes: str = ""
                 ) -> tuple[Path, Path]:
    """results.json (everything) and results.md (the table, then `notes` markdown), written atomically into out_dir."""
    import json
    import os

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for suffix, text in ((".json", json.dumps(results, indent=1)), (".md", markdown_table(results, k) + (f"\n{notes}" if notes else ""))):
        path = out / f"{stem}{suffix}"
        tmp = out / f".tmp-{stem}{suffix}"
        tmp.write_text(text)
        os.replace(tmp, path)
        paths.append(path)
    return paths[0], paths[1]


def main(argv: list[str] | None = None) -> dict:
    import argparse

    ap = argparse.ArgumentParser(description="Evaluate a model: greedy accuracy, pass@1/pass@k/maj@k, format rate.")
    ap.add_argument("model_dir", help="model dir, checkpoint, run dir, or tiny / tiny-student")
    ap.add_argument("--k", type=int, default=4, help="samples per problem (pass@k, maj@k)")
    ap.add_argument("--out", help="write results.json and results.md here")
    ap.add_argument("--benchmarks", default="arithmetic",
                    help=f"comma-separated: {', '.join(BENCHMARKS)}, or local .jsonl/.json/.parquet/.csv files "
                         f"with prompt and answer columns")
    ap.add_argument("--template", default="r1_zero", choices=["r1_zero", "chat", "plain"])
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--limit", type=int, default=None, help="at most this many problems per benchmark (default: all)")
    ap.add_argument("--system-prompt", default=None, help="system message for --template chat")
    ap.add_argument("--prefilled-think", action="store_true",
                    help="the chat template opens <think> (R1-Distill, Qwen3): judge the answer after </think>")
    ap.add_argument("--temperature", type=float, default=0.6)
    ap.add_argument("--top-p", type=float, default=0.95)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    if a.k < 1:
        raise ValueError(f"--k {a.k} must be at least 1")
    results = evaluate_model(a.model_dir, a.benchmarks.split(","), a.k, a.max_tokens, a.template, a.system_prompt,
                             a.limit, a.temperature, a.top_p, a.seed, prefilled_think=a.prefilled_think)
    table = {f"{Path(a.model_dir).name} / {Path(b).name if is_local_file(b) else b}": m for b, m in results.items()}
    print(markdown_table(table, a.k), end="")
    if a.out:
        write_report(table, a.out, a.k)
    return results


if __name__ == "__main__":
    from rl.config.cli import run_cli
    run_cli(main, (ValueError,))
