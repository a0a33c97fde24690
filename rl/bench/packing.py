"""Padded vs packed micro-batches in the GRPO learner on a long-tailed batch: learner tokens/s and peak memory,
side by side in one run (issue 31, `train.max_tokens_per_micro_batch`).

    python -m rl.bench.packing                                   # qwen2-22m, 16 rows, lengths 100..2048
    python -m rl.bench.packing --model vocab-152k --max-len 8192 --budget 16384 --json out.json

Workload (the same for both modes): `--rows` sequences whose real lengths (prompt + completion) are drawn, seeded,
from a log-normal clipped to [`--min-len`, `--max-len`] (median max_len / 5: most chains short, a few near the limit,
as R1-style batches are), prompt `PROMPT` tokens, random token ids; advantages +1/-1; algorithm from
recipes/tiny/r1_zero.yaml (dapo, beta 0, mu 1); float32, CPU; model from rl/bench/models.py.

- `padded`: `train.micro_batch_size=--micro-batch` rows per micro-batch (rows sorted by length, each micro-batch
  trimmed to its longest row: today's default);
- `packed`: `train.max_tokens_per_micro_batch=--budget`: rows binned under the budget, each micro-batch one packed
  sequence without padding.

Both modes in one process, each its own learner on its own copy of the model: `Learner.step` (prepare,
forward/backward, AdamW step) on the same batch, the modes stepped in turn for one warm-up round and `--steps` timed
rounds (load from other processes then falls on both alike): `tokens_per_s` = real tokens of the batch / the
fastest step (other load only ever adds time), and `tokens_per_cpu_s` from this process's CPU time
(time.process_time: on a shared machine less disturbed by other processes than wall time); then, per mode, one more step under rl/bench/tracker.py `PeakMemory` (allocated CPU tensor bytes above the weights and
optimizer state: activations, saved tensors, logits chunks, gradients) = `peak_bytes`. Also reported: micro-batches
per step, the largest micro-batch's tokens as the model saw them (padded: rows x longest row; packed: its real tokens)
and the padding fraction of the padded mode.
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


def skewed_lengths(rows: int, min_len: int, max_len: int, seed: int = 0) -> list[int]:
    """Seeded log-normal lengths (median max_len / 5, sigma 0.8), clipped to [min_len, max_len]; the longest row is
    set to max_len so every run has the long tail's worst case."""
    gen = torch.Generator().manual_seed(seed)
    median = max_len / 5
    draws = torch.exp(0.8 * torch.randn(rows, generator=gen) + float(torch.log(torch.tensor(median))))
    lengths = [int(min(max(d, min_len), max_len)) for d in draws.tolist()]
    lengths[max(range(rows), key=lambda i: lengths[i])] = max_len
    return lengths


def make_batch(lengths: list[int], vocab_size: int, pad_token_id: int, seed: int = 0):
    from rl.core.collate import collate
    from rl.core.episode import Completion, Episode

    gen = torch.Generator().manual_seed(seed)
    episodes = []
    for i, n in enumerate(lengths):
        ids = torch.randint(2, vocab_size, (n,), generator=gen).tolist()
        p = min(PROMPT, n - 1)
        episodes.append(Episode(group_id=i // 2, example={}, advantage=1.0 if i % 2 == 0 else -1.0,
                                completion=Completion(ids[:p], ids[p:], "", "stop", [0.0] * (n - p))))
    return collate(episodes, pad_token_id)


def make_learner(mode: str, path: str, rows: int, max_len: int, micro_batch: int, budget: int):
    from accelerate import Accelerator

    from rl.config.grpo import GRPOConfig
    from rl.config.recipe import load_config
    from rl.train.learner import Learner
    from rl.train.models import load_causal_lm

    cfg = load_config(GRPOConfig, RECIPE, [f"rollout.max_prompt_length={PROMPT}",
                                           f"rollout.max_completion_length={max_len}", "train.learning_rate=1e-6",
                                           f"train.max_tokens_per_micro_batch={budget if mode == 'packed' else 0}"])
    cfg.train.batch_size, cfg.train.micro_batch_size = rows, micro_batch  # after validation (group size)
    torch.manual_seed(0)
    return Learner(cfg, Accelerator(cpu=True, gradient_accumulation_steps=rows // micro_batch),
                   load_causal_lm(path), None)


def run(modes: list[str], model_name: str, lengths: list[int], micro_batch: int, budget: int, steps: int
        ) -> list[dict]:
    """Both learners in this process, stepped in turn (so load from other processes falls on both alike)."""
    from rl.bench.models import build_bench_model, describe
    from rl.bench.tracker import PeakMemory
    from rl.core.collate import by_length, trim_padding
    from rl.train.models import load_tokenizer

    path = str(build_bench_model(model_name))
    rows = len(lengths)
    batch = make_batch(lengths, describe(path)["vocab_size"], load_tokenizer(path).pad_token_id)
    real = int(batch.attention_mask.sum())
    learners = {m: make_learner(m, path, rows, max(lengths), micro_batch, budget) for m in modes}
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
        if m == "packed":
            micro, largest, seen = metrics[m]["train/micro_batches"], metrics[m]["train/micro_batch_tokens_max"], real
        else:
            ordered, _ = by_length(batch)
            shapes = [trim_padding(ordered.slice(s, s + micro_batch)).input_ids.shape for s in range(0, rows,
                                                                                                    micro_batch)]
            micro, largest, seen = len(shapes), max(a * b for a, b in shapes), sum(a * b for a, b in shapes)
        best, best_cpu = min(times[m][1:]), min(cpu[m][1:])
        out.append({"mode": m, "model": model_name, "rows": rows, "real_tokens": real, "tokens_through_model": seen,
                    "padding_frac": round(1 - real / seen, 3), "micro_batches": micro,
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
    if len(by) == 2:
        rows.append(f"\npacked / padded: {by['packed']['tokens_per_s'] / by['padded']['tokens_per_s']:.2f}x tokens/s, "
                    f"{by['packed']['tokens_per_cpu_s'] / by['padded']['tokens_per_cpu_s']:.2f}x tokens/CPU s, "
                    f"{by['packed']['peak_bytes'] / by['padded']['peak_bytes']:.2f}x peak memory")
    return "\n".join(rows)


def main(argv=None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="qwen2-22m", help="rl/bench/models.py preset")
    ap.add_argument("--rows", type=int, default=16)
    ap.add_argument("--min-len", type=int, default=100)
    ap.add_argument("--max-len", type=int, default=2048)
    ap.add_argument("--micro-batch", type=int, default=4, help="rows per micro-batch of the padded mode")
    ap.add_argument("--budget", type=int, default=None, help="tokens per packed micro-batch (default 2 x max-len)")
    ap.add_argument("--steps", type=int, default=2, help="timed steps after one warm-up step")
    ap.add_argument("--modes", default="padded,packed")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    budget = args.budget or 2 * args.max_len
    lengths = skewed_lengths(args.rows, args.min_len, args.max_len)
    print(f"[packing] {args.model}, {args.rows} rows, lengths {sorted(lengths, reverse=True)} (sum {sum(lengths)}), "
          f"padded: {args.micro_batch} rows per micro-batch, packed: budget {budget} tokens", flush=True)
    t0 = time.time()
    load_before = os.getloadavg()
    results = run(args.modes.split(","), args.model, lengths, args.micro_batch, budget, args.steps)
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
