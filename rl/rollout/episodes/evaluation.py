"""Held-out evaluation through a rollout engine: greedy accuracy and strict-format rate, sampled pass@k / maj@k.

    eval/accuracy  fraction of greedy completions whose answer math-verifies against the gold
    eval/format    fraction in strict R1 format (<think>...</think> <answer>...</answer>)
    eval/completion_len  mean completion length in tokens
    eval/check_redo_frac fraction of completions that check and redo ("wait, ..."; rl/core/eval_metrics.py)
    eval/mixed_language_frac  fraction whose chain of thought has words outside English (rewards/form/language.py)

Used by the GRPO and SFT loops (periodic evaluation) and by the `rl/evaluate.py` stage. The metric math is in
rl/core/eval_metrics.py. With several processes (GRPO), the greedy evaluation is sharded: each rank generates and
scores a contiguous share of the problems, the per-problem results are all-gathered in rank order, and the metrics
are computed once on the whole set (`evaluate_greedy`).
"""
from __future__ import annotations

from rl.core.episode import SamplingParams
from rl.core.eval_metrics import check_redo_frac, sampled_metrics


def shard_bounds(n: int, rank: int, world: int) -> tuple[int, int]:
    """The contiguous slice [lo, hi) of n problems that process `rank` of `world` evaluates: the first n % world
    ranks take one more, so the slices tile 0..n in rank order and gathering them in rank order restores the order.

    Example: n = 5, world = 2 -> rank 0 (0, 3), rank 1 (3, 5); n = 1, world = 2 -> rank 0 (0, 1), rank 1 (1, 1).
    """
    if world < 1 or not 0 <= rank < world:
        raise ValueError(f"rank {rank} outside a world of {world} processes")
    base, extra = divmod(n, world)
    lo = rank * base + min(rank, extra)
    return lo, lo + base + (rank < extra)


def evaluate_greedy(engine, encoder, examples: list[dict], max_tokens: int, rewards: dict,
                    rank: int = 0, world: int = 1, gather=None) -> tuple[dict, list]:
    """Greedy decoding on `examples`; `rewards` maps "accuracy"/"format" to reward callables.

    Returns (metrics, rows) where rows hold prompt, completion, answer and scores for inspection, one per example in
    the order of `examples`.

    Several processes (`world` > 1): process `rank` generates and scores its contiguous share (`shard_bounds`), and
    `gather(records) -> every rank's records in rank order` (a collective: rl.train.distributed.gather_objects)
    brings the per-problem results together, so every rank returns the same metrics, computed once on the full set.
    Greedy decoding of a problem does not depend on which process decodes it nor on the others in its batch (up to
    the engine's batch numerics), so the results do not depend on the number of processes.
    """
    lo, hi = shard_bounds(len(examples), rank, world)
    records = greedy_records(engine, encoder, examples[lo:hi], lo, max_tokens, rewards)
    if world > 1:
        if gather is None:
            raise ValueError(f"evaluate_greedy on rank {rank} of {world} needs `gather` (each rank holds a share)")
        records = gather(records)
    if len(records) != len(examples):
        raise RuntimeError(f"evaluation gathered {len(records)} results for {len(examples)} problems")
    rows = [{"prompt": ex["prompt"], "completion": r["completion"], "answer": ex["answer"], "accuracy": r["accuracy"],
             "format": r["format"]} for ex, r in zip(examples, records)]
    metrics = greedy_metrics(records)
    # multi-turn episodes: the tool statistics of this rank's share (tools/turns, tools/calls, ...), not gathered
    metrics.update({f"eval/{k}": v for k, v in getattr(engine, "metrics", {}).items() if k.startswith("tools/")})
    return metrics, rows


def greedy_records(engine, encoder, examples: list[dict], first_index: int, max_tokens: int,
                   rewards: dict) -> list[dict]:
    """One record per example (completion text, token count, truncated, accuracy, format): plain values, so they
    can cross processes. `first_index`: the position of examples[0] in the whole evaluation set (the prompt cache's
    key, so a problem has one key however the set is split)."""
    params = SamplingParams(n=1, greedy=True, max_tokens=max_tokens)
    if hasattr(engine, "episodes"):  # multi-turn episodes (tools, environments): the training loop, greedy
        batch = [(("eval", first_index + i), ex) for i, ex in enumerate(examples)]
        outputs = [[e.completion] for e in engine.episodes(encoder, batch, params, 0)]
    else:
        prompts = [encoder(("eval", first_index + i), ex) for i, ex in enumerate(examples)]
        # called even with no prompts (more ranks than problems): the lock-step transformers engine's collectives
        # need it
        outputs = engine.generate(prompts, params)
    if not examples:
        return []
    texts = [group[0].text for group in outputs]
    answers = [ex["answer"] for ex in examples]
    extra = {k: [ex.get(k) for ex in examples] for k in examples[0] if k not in ("prompt", "answer")}
    acc = rewards["accuracy"](texts, answer=answers, **extra)
    fmt = rewards["format"](texts, answer=answers, **extra)
    return [{"completion": t, "completion_len": len(g[0].completion_ids), "truncated": g[0].finish_reason == "length",
             "accuracy": a, "format": f} for t, g, a, f in zip(texts, outputs, acc, fmt)]


def greedy_metrics(records: list[dict]) -> dict[str, float]:
    """The eval/* metrics of per-problem records (`greedy_records`); a reward's None ("cannot judge") counts 0.

    Example: records with accuracy [1.0, None, 0.0, 1.0], format [1, 1, 0, 0], completion_len [10, 20, 30, 40],
    truncated [F, F, F, T] -> eval/accuracy 2/4 = 0.5, eval/format 0.5, eval/completion_len 25.0,
    eval/truncated_frac 0.25.
    """
    n = len(records)
    texts = [r["completion"] for r in records]
    return {
        "eval/accuracy": sum(r["accuracy"] or 0.0 for r in records) / n,
        "eval/format": sum(r["format"] or 0.0 for r in records) / n,
        "eval/completion_len": sum(r["completion_len"] for r in records) / n,
        "eval/truncated_frac": sum(r["truncated"] for r in records) / n,
        "eval/check_redo_frac": check_redo_frac(texts),
        "eval/mixed_language_frac": mixed_language_frac(texts),
    }


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
    params = SamplingParams(n=n, temperature=temperature, top_p=top_p, max_tokens=max_tokens, seed=seed)
    if hasattr(engine, "episodes"):  # multi-turn episodes (tools, environments): n episodes per problem, row-major
        episodes = engine.episodes(encoder, [(("eval", i), ex) for i, ex in enumerate(examples)], params, 0)
        groups = [[e.completion for e in episodes[i * n:(i + 1) * n]] for i in range(len(examples))]
    else:
        groups = engine.generate([encoder(("eval", i), ex) for i, ex in enumerate(examples)], params)
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
    metrics.update({k: v for k, v in getattr(engine, "metrics", {}).items() if k.startswith("tools/")})
    return {f"sampled/{key}": v for key, v in metrics.items()}, rows
