"""Evaluation: greedy accuracy and strict-format rate on a held-out set, plus sampled pass@k / maj@k.

    eval/accuracy  fraction of greedy completions whose answer math-verifies against the gold
    eval/format    fraction in strict R1 format (<think>...</think> <answer>...</answer>)
    eval/completion_len  mean completion length in tokens

pass@k is the unbiased estimator of Chen et al. (2021): with n samples of which c are correct,
pass@k = 1 - C(n - c, k) / C(n, k). Example: n = 4, c = 1, k = 2 -> 1 - C(3,2)/C(4,2) = 1 - 3/6 = 0.5.
"""
from __future__ import annotations

import sys
from collections import Counter
from math import comb
from pathlib import Path

if __name__ == "__main__" and not __package__:  # `python rl/evaluate.py`: import from the repo root, not from rl/
    sys.path[0] = str(Path(__file__).resolve().parents[1])

from rl.episode import SamplingParams  # noqa: E402


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from n samples with c correct (0 <= c <= n, 1 <= k <= n)."""
    if not (0 <= c <= n and 1 <= k <= n):
        raise ValueError(f"pass@k needs 0 <= c <= n and 1 <= k <= n, got n={n} c={c} k={k}")
    if n - c < k:
        return 1.0
    return 1.0 - comb(n - c, k) / comb(n, k)


def majority_correct(answers: list[str | None], correct: list[float | None]) -> float:
    """maj@k: 1 if the most frequent extracted answer (ties: first seen) is a correct one."""
    votes = Counter(a for a in answers if a is not None)
    if not votes:
        return 0.0
    top = votes.most_common(1)[0][0]
    return float(next(c for a, c in zip(answers, correct) if a == top) or 0.0)


def evaluate_greedy(engine, encoder, examples: list[dict], max_tokens: int, rewards: dict) -> tuple[dict, list]:
    """Greedy decoding on `examples`; `rewards` maps "accuracy"/"format" to reward callables.

    Returns (metrics, rows) where rows hold prompt, completion, answer and scores for inspection.
    """
    prompts = [encoder(("eval", i), ex) for i, ex in enumerate(examples)]
    outputs = engine.generate(prompts, SamplingParams(n=1, greedy=True, max_tokens=max_tokens))
    texts = [group[0].text for group in outputs]
    answers = [ex["answer"] for ex in examples]
    extra = {k: [ex.get(k) for ex in examples] for k in examples[0] if k not in ("prompt", "answer")}
    acc = rewards["accuracy"](texts, answer=answers, **extra)
    fmt = rewards["format"](texts, answer=answers, **extra)
    n = len(examples)
    metrics = {
        "eval/accuracy": sum(a or 0.0 for a in acc) / n,
        "eval/format": sum(f or 0.0 for f in fmt) / n,
        "eval/completion_len": sum(len(g[0].completion_ids) for g in outputs) / n,
        "eval/truncated_frac": sum(g[0].finish_reason == "length" for g in outputs) / n,
    }
    rows = [{"prompt": ex["prompt"], "completion": t, "answer": ex["answer"], "accuracy": a, "format": f}
            for ex, t, a, f in zip(examples, texts, acc, fmt)]
    return metrics, rows


# ---------------------------------------------------------------------------------------------------------------------
# Sampled evaluation (pass@1 over k samples, pass@k, maj@k), benchmarks by name, reports, and the CLI.
#
#     python rl/evaluate.py runs/tiny_r1 --k 4 --out runs/tiny_r1/eval
#     python rl/evaluate.py exports/student --benchmarks arithmetic,gsm8k --template chat      # hub sets need network
#
# Worked example for one problem, k = 4 samples with extracted answers [23, 35, 23, None], gold 23:
#     correct = [1, 0, 1, 0]  -> pass@1 = 2/4 = 0.5, pass@4 = 1 (some sample correct), maj@4 = 1 (23 wins 2 votes to 1)
# The reported values are the means over problems.

# name -> (hub dataset id, config, split, prompt column, answer column, how to read the gold answer)
BENCHMARKS: dict[str, tuple[str | None, str | None, str, str, str, str]] = {
    "arithmetic": (None, None, "test", "prompt", "answer", "as_is"),  # procedural, offline (data/tasks.py)
    "math500": ("HuggingFaceH4/MATH-500", None, "test", "problem", "answer", "as_is"),
    "gsm8k": ("openai/gsm8k", "main", "test", "question", "answer", "after_hashes"),  # gold: "...#### 72"
    "aime2024": ("HuggingFaceH4/aime_2024", None, "train", "problem", "answer", "as_is"),
}


def load_benchmark(name: str, limit: int | None = None, num_test: int = 200, seed: int = 0) -> list[dict]:
    """Canonical {"prompt", "answer"} rows of a benchmark in BENCHMARKS (hub sets need the network)."""
    if name not in BENCHMARKS:
        raise ValueError(f"unknown benchmark {name!r}; valid: {', '.join(BENCHMARKS)}")
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


def extracted_answer(text: str) -> str | None:
    """The answer a completion commits to (last <answer> block or \\boxed{}), None if it commits to none."""
    from rewards.extract import extract_answer
    answer, source = extract_answer(text)
    return answer if source in ("answer", "boxed") and answer else None


def sampled_metrics(correct: list[list[float]], answers: list[list[str | None]], formats: list[list[float]],
                    lengths: list[list[int]], truncated: list[list[bool]], k: int) -> dict[str, float]:
    """Per-problem lists of n >= k samples -> mean pass@1, unbiased pass@k, maj@k (first k samples), format rate,
    mean completion length, truncated fraction."""
    m = len(correct)
    n_samples = sum(len(c) for c in correct)
    out = {
        "pass@1": sum(sum(c) / len(c) for c in correct) / m,
        f"pass@{k}": sum(pass_at_k(len(c), int(sum(c)), k) for c in correct) / m,
        f"maj@{k}": sum(majority_correct(a[:k], c[:k]) for a, c in zip(answers, correct)) / m,
        "format": sum(map(sum, formats)) / n_samples,
        "completion_len": sum(map(sum, lengths)) / n_samples,
        "truncated_frac": sum(map(sum, truncated)) / n_samples,
    }
    return out


def evaluate_sampled(engine, encoder, examples: list[dict], k: int, max_tokens: int, rewards: dict,
                     temperature: float = 0.6, top_p: float = 0.95, seed: int = 0, n: int | None = None
                     ) -> tuple[dict, list]:
    """n (default k) samples per problem at the R1 paper's evaluation setting (T=0.6, top_p=0.95) -> metrics named
    `sampled/pass@1`, `sampled/pass@{k}`, `sampled/maj@{k}`, `sampled/format`, `sampled/completion_len`, ..."""
    n = n or k
    prompts = [encoder(("eval", i), ex) for i, ex in enumerate(examples)]
    groups = engine.generate(prompts, SamplingParams(n=n, temperature=temperature, top_p=top_p, max_tokens=max_tokens,
                                                     seed=seed))
    texts = [c.text for g in groups for c in g]
    answers_gold = [ex["answer"] for ex in examples for _ in range(n)]
    acc = rewards["accuracy"](texts, answer=answers_gold)
    fmt = rewards["format"](texts, answer=answers_gold)
    def per_problem(flat):
        return [list(flat[i * n:(i + 1) * n]) for i in range(len(examples))]
    correct = per_problem([a or 0.0 for a in acc])
    metrics = sampled_metrics(correct, per_problem([extracted_answer(t) for t in texts]),
                              per_problem([f or 0.0 for f in fmt]),
                              per_problem([len(c.completion_ids) for g in groups for c in g]),
                              per_problem([c.finish_reason == "length" for g in groups for c in g]), k)
    rows = [{"prompt": ex["prompt"], "answer": ex["answer"], "completions": [c.text for c in g],
             "correct": cs} for ex, g, cs in zip(examples, groups, correct)]
    return {f"sampled/{key}": v for key, v in metrics.items()}, rows


def evaluate_model(model_dir: str, benchmarks: list[str] = ("arithmetic",), k: int = 4, max_tokens: int = 64,
                   template: str = "r1_zero", system_prompt: str | None = None, limit: int | None = 200,
                   temperature: float = 0.6, top_p: float = 0.95, seed: int = 0, num_test: int = 200
                   ) -> dict[str, dict[str, float]]:
    """Greedy (`eval/*`) and sampled (`sampled/*`) metrics of one model per benchmark (HF engine)."""
    for name in benchmarks:
        if name not in BENCHMARKS:
            raise ValueError(f"unknown benchmark {name!r}; valid: {', '.join(BENCHMARKS)}")
    from rewards import get_reward
    from rl.collect import PromptEncoder
    from rl.models import load_causal_lm, load_tokenizer
    from rl.rollout.hf import HFEngine
    from rl.models import resolve_model_path

    data = {name: load_benchmark(name, limit, num_test, seed) for name in benchmarks}
    path = resolve_model_path(model_dir)
    tokenizer = load_tokenizer(path)
    engine = HFEngine(load_causal_lm(path), tokenizer)
    encoder = PromptEncoder(tokenizer, template, system_prompt, max_prompt_length=4096)
    rewards = {"accuracy": get_reward("accuracy"), "format": get_reward("format")}
    results = {}
    for name, examples in data.items():
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


def write_report(results: dict, out_dir: str | Path, k: int = 4, stem: str = "results") -> tuple[Path, Path]:
    """results.json (everything) and results.md (the table), written atomically into out_dir."""
    import json
    import os

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for suffix, text in ((".json", json.dumps(results, indent=1)), (".md", markdown_table(results, k))):
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
    ap.add_argument("--benchmarks", default="arithmetic", help=f"comma-separated: {', '.join(BENCHMARKS)}")
    ap.add_argument("--template", default="r1_zero", choices=["r1_zero", "chat", "plain"])
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--limit", type=int, default=200, help="problems per benchmark")
    ap.add_argument("--temperature", type=float, default=0.6)
    ap.add_argument("--top-p", type=float, default=0.95)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    if a.k < 1:
        raise ValueError(f"--k {a.k} must be at least 1")
    results = evaluate_model(a.model_dir, a.benchmarks.split(","), a.k, a.max_tokens, a.template, None, a.limit,
                             a.temperature, a.top_p, a.seed)
    table = {f"{Path(a.model_dir).name} / {b}": m for b, m in results.items()}
    print(markdown_table(table, a.k), end="")
    if a.out:
        write_report(table, a.out, a.k)
    return results


if __name__ == "__main__":
    from rl.cli import run_cli
    run_cli(main, (ValueError,))
