"""Padded vs packed micro-batches in the GRPO learner on a long-tailed batch: learner tokens/s and peak memory,
side by side in one run (issue 31, `train.max_tokens_per_micro_batch`).

    python -m rl.bench.packing                                   # qwen2-22m, 16 rows, lengths 100..2048
    python -m rl.bench.packing --model vocab-152k --max-len 8192 --budget 16384 --json out.json
    python -m rl.bench.packing --model tiny --rows 64 --group-size 8 --prompt 26 --min-len 28 --max-len 90 \
        --median 50 --micro-batch 32 --budget 2048 --modes padded,packed,shared   # GRPO groups sharing a prompt

Workload (the same for every mode): `--rows` sequences whose real lengths (prompt + completion) are drawn, seeded,
from a log-normal clipped to [`--min-len`, `--max-len`] (median `--median`, default max_len / 5: most chains short, a
few near the limit, as R1-style batches are), prompt `--prompt` tokens (default `PROMPT`), random token ids, rows in
groups of `--group-size` with the same prompt ids (default 1: every prompt its own); advantages +1/-1; algorithm from
recipes/tiny/r1_zero.yaml (dapo, beta 0, mu 1); float32, CPU; model from rl/bench/models.py.

- `padded`: `train.micro_batch_size=--micro-batch` rows per micro-batch (rows sorted by length, each micro-batch
  trimmed to its longest row: today's default);
- `packed`: `train.max_tokens_per_micro_batch=--budget`, `train.share_prompts=false`: rows binned under the budget,
  each micro-batch one packed sequence without padding;
- `shared`: the same budget with `train.share_prompts=true`: with `--group-size G` the rows come in groups of G that
  share their prompt (as GRPO's do), and a packed micro-batch holds each group's prompt once (rl/core/packing.py).

All modes in one process, each its own learner on its own copy of the model: `Learner.step` (prepare,
forward/backward, AdamW step) on the same batch, the modes stepped in turn for one warm-up round and `--steps` timed
rounds (load from other processes then falls on both alike): `tokens_per_s` = real tokens of the batch / the
fastest step (other load only ever adds time), and `tokens_per_cpu_s` from this process's CPU time
(time.process_time: on a shared machine less disturbed by other processes than wall time); then, per mode, one more step under rl/bench/tracker.py `PeakMemory` (allocated CPU tensor bytes above the weights and
optimizer state: activations, saved tensors, logits chunks, gradients) = `peak_bytes`. Also reported: micro-batches
per step, the largest micro-batch's tokens as the model saw them (padded: rows x longest row; packed: its real tokens;
shared: with each prompt once) and the padding fraction of the padded mode. `--model tiny` (or another rl/tiny model
name) runs that model instead of a preset.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

import torch

PROMPT = 64
RECIPE = "recipes/tiny/r1_zero.yaml"


def skewed_lengths(rows: int, min_len: int, max_len: int, seed: int = 0, median: float | None = None) -> list[int]:
    """Seeded log-normal lengths (median `median`, default max_len / 5; sigma 0.8), clipped to [min_len, max_len]; the
    longest row is set to max_len so every run has the long tail's worst case."""
    gen = torch.Generator().manual_seed(seed)
    median = median or max_len / 5
    draws = torch.exp(0.8 * torch.randn(rows, generator=gen) + float(torch.log(torch.tensor(median))))
    lengths = [int(min(max(d, min_len), max_len)) for d in draws.tolist()]
    lengths[max(range(rows), key=lambda i: lengths[i])] = max_len
    return lengths


def make_batch(lengths: list[int], vocab_size: int, pad_token_id: int, seed: int = 0, prompt: int = PROMPT,
               group_size: int = 1):
    """Rows of `lengths` real tokens: min(prompt, n - 1) prompt tokens (the same ids within each group of
    `group_size` consecutive rows, cut to the row's length), the rest completion; random ids, advantages +1/-1."""
    from rl.core.collate import collate
    from rl.core.episode import Completion, Episode

    gen = torch.Generator().manual_seed(seed)
    episodes = []
    for i, n in enumerate(lengths):
        ids = torch.randint(2, vocab_size, (n,), generator=gen).tolist()
        if i % group_size == 0:
            group_prompt = ids[:prompt]
        p = min(prompt, n - 1)
        ids[:p] = group_prompt[:p]
        episodes.append(Episode(group_id=i // max(group_size, 2), example={}, advantage=1.0 if i % 2 == 0 else -1.0,
                                completion=Completion(ids[:p], ids[p:], "", "stop", [0.0] * (n - p))))
    return collate(episodes, pad_token_id)


def make_learner(mode: str, path: str, rows: int, max_len: int, micro_batch: int, budget: int, prompt: int = PROMPT):
    from accelerate import Accelerator

    from rl.config.grpo import GRPOConfig
    from rl.config.recipe import load_config
    from rl.train.learner import Learner
    from rl.train.models import load_causal_lm

    cfg = load_config(GRPOConfig, RECIPE, [f"rollout.max_prompt_length={prompt}",
                                           f"rollout.max_completion_length={max_len}", "train.learning_rate=1e-6",
                                           f"train.max_tokens_per_micro_batch={0 if mode == 'padded' else budget}",
                                           f"train.share_prompts={'true' if mode == 'shared' else 'false'}"])
    cfg.train.batch_size, cfg.train.micro_batch_size = rows, micro_batch  # after validation (group size)
    torch.manual_seed(0)
    return Learner(cfg, Accelerator(cpu=True, gradient_accumulation_steps=rows // micro_batch),
                   load_causal_lm(path), None)


def model_path(model_name: str) -> tuple[str, int]:
    """(path, vocab size) of a rl/bench/models.py preset, or of an rl/tiny model (`tiny`, ...)."""
    from rl.bench.models import PRESETS, build_bench_model, describe
    if model_name in PRESETS:
        path = str(build_bench_model(model_name))
        return path, describe(path)["vocab_size"]
    from rl.tiny.sources import resolve_model_path
    from rl.train.models import load_tokenizer
    path = resolve_model_path(model_name)
    return path, len(load_tokenizer(path))


def run(modes: list[str], model_name: str, lengths: list[int], micro_batch: int, budget: int, steps: int,
        prompt: int = PROMPT, group_size: int = 1) -> list[dict]:
    """The learners in this process, stepped in turn (so load from other processes falls on all alike)."""
    from rl.bench.tracker import PeakMemory
    from rl.core.collate import by_length, trim_padding
    from rl.train.models import load_tokenizer

    path, vocab = model_path(model_name)
    rows = len(lengths)
    batch = make_batch(lengths, vocab, load_tokenizer(path).pad_token_id, prompt=prompt, group_size=group_size)
    real = int(batch.attention_mask.sum())
    learners = {m: make_learner(m, path, rows, max(lengths), micro_batch, budget, prompt) for m in modes}
    times: dict[str, list[float]] = {m: [] for m in modes}
    cpu: dict[str, list[float]] = {m: [] for m in modes}
    metrics: dict[str, dict] = {}
    for r in range(steps + 1):  # round 0 warms up
        for m in modes:
            t0, c0 = time.perf_counter(), time.process_time()
            metrics[m] = learners[m].step(batch)
            times[m].append(time.perf_counter() - t0)
            cpu[m].append(time.process_time() - c0)
            print(f"[packing] round {r} {m}: {times[m][-1]:.2f} s wall, {cpu[m][-1]:.2f} s CPU", flush=True)
    out = []
    for m in modes:
        with PeakMemory() as mem:
            learners[m].step(batch)
        if m != "padded":  # shared: each group's prompt once in its micro-batch
            micro, largest = metrics[m]["train/micro_batches"], metrics[m]["train/micro_batch_tokens_max"]
            seen = round(real * (1 - metrics[m]["train/prompt_tokens_shared_frac"]))
        else:
            ordered, _ = by_length(batch)
            shapes = [trim_padding(ordered.slice(s, s + micro_batch)).input_ids.shape for s in range(0, rows,
                                                                                                    micro_batch)]
            micro, largest, seen = len(shapes), max(a * b for a, b in shapes), sum(a * b for a, b in shapes)
        best, best_cpu = min(times[m][1:]), min(cpu[m][1:])
        out.append({"mode": m, "model": model_name, "rows": rows, "real_tokens": real, "tokens_through_model": seen,
                    "padding_frac": round(1 - real / seen, 3) if m == "padded" else 0.0, "micro_batches": micro,
                    "largest_micro_batch_tokens": largest, "s_per_step_min": round(best, 3),
                    "s_per_step": [round(t, 3) for t in times[m][1:]], "tokens_per_s": round(real / best, 1),
                    "cpu_s_per_step_min": round(best_cpu, 3), "cpu_s_per_step": [round(t, 3) for t in cpu[m][1:]],
                    "tokens_per_cpu_s": round(real / best_cpu, 1),
                    "peak_bytes": mem.peak_bytes, "loss": metrics[m]["loss"], "grad_norm": metrics[m]["grad_norm"],
                    "torch_threads": torch.get_num_threads()})
    return out


def table(results: list[dict]) -> str:
    rows = ["| mode | micro-batches | largest micro-batch (tokens) | padding | s/step (min) | tokens/s | "
            "CPU s/step (min) | tokens/CPU s | peak GiB |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in results:
        if "error" in r:
            rows.append(f"| {r['mode']} | {r['error'][:80]} ||||||")
            continue
        rows.append(f"| {r['mode']} | {r['micro_batches']:.0f} | {r['largest_micro_batch_tokens']:,.0f} | "
                    f"{r['padding_frac']:.0%} | {r['s_per_step_min']:.2f} | {r['tokens_per_s']:,.0f} | "
                    f"{r['cpu_s_per_step_min']:.2f} | {r['tokens_per_cpu_s']:,.0f} | "
                    f"{r['peak_bytes'] / 2**30:.3f} |")
    by = {r["mode"]: r for r in results if "error" not in r}
    for a, b in (("packed", "padded"), ("shared", "padded"), ("shared", "packed")):
        if a in by and b in by:
            rows.append(f"\n{a} / {b}: {by[a]['tokens_per_s'] / by[b]['tokens_per_s']:.2f}x tokens/s, "
                        f"{by[a]['tokens_per_cpu_s'] / by[b]['tokens_per_cpu_s']:.2f}x tokens/CPU s, "
                        f"{by[a]['peak_bytes'] / by[b]['peak_bytes']:.2f}x peak memory; tokens through the model "
                        f"{by[a]['tokens_through_model']:,} vs {by[b]['tokens_through_model']:,}")
    return "\n".join(rows)


def main(argv=None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="qwen2-22m", help="rl/bench/models.py preset, or an rl/tiny model (tiny)")
    ap.add_argument("--rows", type=int, default=16)
    ap.add_argument("--min-len", type=int, default=100)
    ap.add_argument("--max-len", type=int, default=2048)
    ap.add_argument("--micro-batch", type=int, default=4, help="rows per micro-batch of the padded mode")
    ap.add_argument("--budget", type=int, default=None, help="tokens per packed micro-batch (default 2 x max-len)")
    ap.add_argument("--steps", type=int, default=2, help="timed steps after one warm-up step")
    ap.add_argument("--modes", default="padded,packed", help="of padded, packed, shared")
    ap.add_argument("--prompt", type=int, default=PROMPT, help="prompt tokens per row")
    ap.add_argument("--group-size", type=int, default=1, help="consecutive rows sharing a prompt")
    ap.add_argument("--median", type=float, default=None, help="median length (default max-len / 5)")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    budget = args.budget or 2 * args.max_len
    lengths = skewed_lengths(args.rows, args.min_len, args.max_len, median=args.median)
    print(f"[packing] {args.model}, {args.rows} rows, lengths {sorted(lengths, reverse=True)} (sum {sum(lengths)}), "
          f"padded: {args.micro_batch} rows per micro-batch, packed: budget {budget} tokens, prompt {args.prompt}, "
          f"groups of {args.group_size}", flush=True)
    t0 = time.time()
    load_before = os.getloadavg()
    results = run(args.modes.split(","), args.model, lengths, args.micro_batch, budget, args.steps, args.prompt,
                  args.group_size)
    for r in results:
        print(f"[packing] {json.dumps(r)}", flush=True)
    print(table(results))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"results": results, "lengths": lengths, "budget": budget, "argv": sys.argv[1:],
                       "wall_s": round(time.time() - t0), "date": time.strftime("%Y-%m-%d %H:%M"),
                       "loadavg_before": load_before, "loadavg_after": os.getloadavg()}, f, indent=1)
    return results


if __name__ == "__main__":
    main()
