"""Held-out evaluation through a rollout engine: greedy accuracy and strict-format rate, sampled pass@k / maj@k.

    eval/accuracy  fraction of greedy completions whose answer math-verifies against the gold
    eval/format    fraction in strict R1 format (<think>...</think> <answer>...</answer>)
    eval/completion_len  mean completion length in tokens
    eval/check_redo_frac fraction of completions that check and redo ("wait, ..."; rl/core/eval_metrics.py)
    eval/mixed_language_frac  fraction whose chain of thought has words outside English (rewards/form/language.py)

Used by the GRPO and SFT loops (periodic evaluation) and by the `rl/evaluate.py` stage. The metric math is in
rl/core/eval_metrics.py.
"""
from __future__ import annotations

from rl.core.episode import SamplingParams
from rl.core.eval_metrics import check_redo_frac, sampled_metrics


def evaluate_greedy(engine, encoder, examples: list[dict], max_tokens: int, rewards: dict) -> tuple[dict, list]:
    """Greedy decoding on `examples`; `rewards` maps "accuracy"/"format" to reward callables.

    Returns (metrics, rows) where rows hold prompt, completion, answer and scores for inspection.
    """
    params = SamplingParams(n=1, greedy=True, max_tokens=max_tokens)
    if hasattr(engine, "episodes"):  # multi-turn episodes (tools, environments): the training loop, greedy
        batch = [(("eval", i), ex) for i, ex in enumerate(examples)]
        outputs = [[e.completion] for e in engine.episodes(encoder, batch, params, 0)]
    else:
        outputs = engine.generate([encoder(("eval", i), ex) for i, ex in enumerate(examples)], params)
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
        "eval/check_redo_frac": check_redo_frac(texts),
        "eval/mixed_language_frac": mixed_language_frac(texts),
        **{f"eval/{k}": v for k, v in getattr(engine, "metrics", {}).items() if k.startswith("tools/")},
    }
    rows = [{"prompt": ex["prompt"], "completion": t, "answer": ex["answer"], "accuracy": a, "format": f}
            for ex, t, a, f in zip(examples, texts, acc, fmt)]
    return metrics, rows


def chain_metrics(texts: list[str]) -> dict[str, float]:
    """How the chains read, per training step: the check/redo share and the mixed-language share."""
    return {"check_redo_frac": check_redo_frac(texts), "mixed_language_frac": mixed_language_frac(texts)}


def mixed_language_frac(texts: list[str]) -> float:
    """Share of `texts` whose chain of thought mixes in non-English words (R1 §2.3.2; script-based)."""
    from rewards.form.language import mixes_languages
    return sum(mixes_languages(t) for t in texts) / len(texts) if texts else 0.0


def extracted_answer(text: str) -> str | None:
    """The answer a completion commits to (last <answer> block or \\boxed{}), None if it commits to none."""
    from rewards.extract import extract_answer
    answer, source = extract_answer(text)
    return answer if source in ("answer", "boxed") and answer else None


def same_value_by(accuracy):
    """`same(a, b)` for maj@k votes: whether answer b is the value a, judged by the `accuracy` reward (math-verify:
    "\\dfrac{1}{2}", "\\frac12" and "0.5" are one value) with a as the gold."""
    def same(a: str, b: str) -> bool:
        return accuracy([f"<answer> {b} </answer>"], answer=[a])[0] == 1.0
    return same


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
    extra = {k: [ex.get(k) for ex in examples for _ in range(n)] for k in examples[0] if k not in ("prompt", "answer")}
    acc = rewards["accuracy"](texts, answer=answers_gold, **extra)  # extra columns: e.g. the code reward's tests
    fmt = rewards["format"](texts, answer=answers_gold, **extra)
    def per_problem(flat):
        return [list(flat[i * n:(i + 1) * n]) for i in range(len(examples))]
    correct = per_problem([a or 0.0 for a in acc])
    metrics = sampled_metrics(correct, per_problem([extracted_answer(t) for t in texts]),
                              per_problem([f or 0.0 for f in fmt]),
                              per_problem([len(c.completion_ids) for g in groups for c in g]),
                              per_problem([c.finish_reason == "length" for g in groups for c in g]), k,
                              same=same_value_by(rewards["accuracy"]), texts=per_problem(texts))
    rows = [{"prompt": ex["prompt"], "answer": ex["answer"], "completions": [c.text for c in g],
             "correct": cs} for ex, g, cs in zip(examples, groups, correct)]
    metrics["mixed_language_frac"] = mixed_language_frac(texts)
    return {f"sampled/{key}": v for key, v in metrics.items()}, rows
