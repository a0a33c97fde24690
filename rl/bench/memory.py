"""Peak memory of ONE learner micro-step (forward + backward of the GRPO loss on one micro-batch), this project vs
TRL, with Qwen2.5's vocabulary (151,936) where the [tokens, vocab] logits dominate.

    python -m rl.bench.memory                                  # lengths 512,2048,8192, micro-batch 1
    python -m rl.bench.memory --lengths 512,2048 --micro-batch 1 --json out.json

Workload: the random-init `vocab-152k` model (rl/bench/models.py), float32 on CPU; a micro-batch of `--micro-batch`
sequences, each a 128-token prompt + an L-token completion of random token ids (seeded, identical on both sides), all
completion tokens counted in the loss, advantages +1/-1 alternating; algorithm from recipes/tiny/r1_zero.yaml (dapo,
beta 0, num_iterations 1, epsilon 0.2/0.28, temperature 1).

- ours (`ours_micro_step`): `Learner(cfg, Accelerator(cpu=True), model, None)`, a `Batch` from `rl.core.collate.collate`
  of synthetic `Episode`s, micro_batch_size = batch size; the step is `batch, norm = learner.prepare(batch)` +
  `learner.accumulate_gradients(batch, norm)`. Isolated in one function: adapt it there if the learner API moves.
- TRL (`trl_micro_step`): a real `trl.GRPOTrainer` built on the same model (its __init__ runs `add_fused_lm_head(
  model, temperature, outputs=("log_probs", "entropy"))`), then exactly what `Trainer.training_step` does after
  `_prepare_inputs`: `with trainer.compute_loss_context_manager(): loss = trainer.compute_loss(model, inputs)`
  (-> `GRPOTrainer._compute_loss` -> `_get_per_token_logps_and_entropies` -> the fused, chunked LM head), then
  `trainer.accelerator.backward(loss)`. inputs = prompt_ids/mask, completion_ids/mask, advantages, num_items_in_batch
  (as `_generate_and_score_completions` returns them with num_iterations 1: no old logprobs).
  On CPU TRL's fused head takes its non-Triton branch: it scores every position (prompt too) in [4096 tokens x
  32,768 vocab] tiles; on CUDA it scores only the completion positions. Tile size bounds its memory either way.

Measured (rl/bench/tracker.py): allocated CPU tensor bytes from the allocator's event stream, peak above the
baseline at the start of the step. Included: activations, autograd's saved tensors, logits/logprob temporaries
(including op-internal buffers), the new `.grad` tensors (weights' gradients: `retained` after the step is mostly
those) and the step's outputs. Excluded: weights, optimizer state (no optimizer step is taken), inputs built before.
Each (side, length) runs in a fresh subprocess. A length whose peak, extrapolated linearly from the two longest
lengths measured for that side, exceeds `--budget-gb` (default 60% of MemAvailable) is skipped and reported as an
estimate; a child also gets RLIMIT_DATA = its size + budget, so a bad estimate fails with an allocation error rather
than taking the machine's memory.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import torch

PROMPT_LEN = 128
RECIPE = "recipes/tiny/r1_zero.yaml"


def make_inputs(length: int, micro_batch: int, vocab_size: int, prompt_len: int = PROMPT_LEN, seed: int = 0) -> dict:
    """Random prompt/completion ids (no padding) and advantages, the same for both sides."""
    gen = torch.Generator().manual_seed(seed)
    return {"prompt_ids": torch.randint(2, vocab_size, (micro_batch, prompt_len), generator=gen),  # [B, P]
            "completion_ids": torch.randint(2, vocab_size, (micro_batch, length), generator=gen),  # [B, L]
            "advantages": torch.tensor([1.0 if i % 2 == 0 else -1.0 for i in range(micro_batch)])}  # [B]


def ours_micro_step(model, inputs: dict, pad_token_id: int):
    """Set up this project's learner on `model`; return a no-argument function running one micro-step."""
    from accelerate import Accelerator

    from rl.core.collate import collate
    from rl.config.recipe import load_config
    from rl.core.episode import Completion, Episode
    from rl.config.grpo import GRPOConfig
    from rl.train.learner import Learner

    B, P = inputs["prompt_ids"].shape
    L = inputs["completion_ids"].shape[1]
    cfg = load_config(GRPOConfig, RECIPE, [f"rollout.max_prompt_length={P}", f"rollout.max_completion_length={L}"])
    # after validation (which wants batch_size % group_size == 0): the whole batch is one micro-step
    cfg.train.batch_size = cfg.train.micro_batch_size = B
    learner = Learner(cfg, Accelerator(cpu=True), model, None)
    episodes = [Episode(group_id=i, example={"prompt": "", "answer": ""}, advantage=float(inputs["advantages"][i]),
                        completion=Completion(prompt_ids=inputs["prompt_ids"][i].tolist(),
                                              completion_ids=inputs["completion_ids"][i].tolist(), text="",
                                              finish_reason="stop", logprobs=[0.0] * L))
                for i in range(B)]
    batch = collate(episodes, pad_token_id, cfg.algorithm.mask_truncated_completions)

    def step() -> float:
        prepared, norm = learner.prepare(batch)
        return learner.accumulate_gradients(prepared, norm)["loss"]
    return step


def trl_micro_step(model, inputs: dict, tokenizer, output_dir: str):
    """Set up trl.GRPOTrainer on `model` (mirroring the recipe); return a function running one micro-step the way
    `Trainer.training_step` does (compute_loss under compute_loss_context_manager, then accelerator.backward)."""
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    B = inputs["prompt_ids"].shape[0]
    L = inputs["completion_ids"].shape[1]
    args = GRPOConfig(output_dir=output_dir, use_cpu=True, bf16=False, fp16=False, report_to="none",
                      save_strategy="no", per_device_train_batch_size=2, num_generations=2,
                      gradient_accumulation_steps=1, max_completion_length=L, temperature=1.0, beta=0.0,
                      num_iterations=1, loss_type="dapo", epsilon=0.2, epsilon_high=0.28, scale_rewards="group",
                      gradient_checkpointing=False, learning_rate=2e-4, seed=0)
    trainer = GRPOTrainer(model=model, processing_class=tokenizer, args=args,
                          reward_funcs=[lambda completions, **kw: [0.0] * len(completions)],
                          train_dataset=Dataset.from_list([{"prompt": "x"}] * 2))
    trl_inputs = {"prompt_ids": inputs["prompt_ids"], "prompt_mask": torch.ones_like(inputs["prompt_ids"]),
                  "completion_ids": inputs["completion_ids"],
                  "completion_mask": torch.ones_like(inputs["completion_ids"]),
                  "advantages": inputs["advantages"], "num_items_in_batch": torch.tensor(float(B * L))}
    trainer.current_gradient_accumulation_steps = 1  # set by the training loop; one micro-step = the whole batch
    trainer.model.train()

    def step() -> float:
        with trainer.compute_loss_context_manager():
            loss = trainer.compute_loss(trainer.model, trl_inputs)
        trainer.accelerator.backward(loss)
        return loss.item()
    return step


def _proc_bytes(path: str, key: str) -> int:
    """A `key: N kB` line of a /proc file, in bytes (0 when absent)."""
    with open(path) as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    return 0


def run_child(side: str, length: int, micro_batch: int, budget_bytes: int) -> dict:
    """One (side, length) measurement in this process."""
    from rl.bench.models import build_bench_model, describe
    from rl.bench.tracker import PeakMemory
    from rl.train.models import load_causal_lm, load_tokenizer

    path = str(build_bench_model("vocab-152k"))
    tokenizer = load_tokenizer(path)
    model = load_causal_lm(path)
    inputs = make_inputs(length, micro_batch, describe(path)["vocab_size"])
    with tempfile.TemporaryDirectory() as tmp:
        step = (ours_micro_step(model, inputs, tokenizer.pad_token_id) if side == "ours"
                else trl_micro_step(model, inputs, tokenizer, tmp))
        if budget_bytes > 0:
            import resource
            limit = _proc_bytes("/proc/self/status", "VmData") + budget_bytes
            resource.setrlimit(resource.RLIMIT_DATA, (limit, resource.getrlimit(resource.RLIMIT_DATA)[1]))
        t0 = time.perf_counter()
        with PeakMemory() as mem:
            loss = step()
        step_s = time.perf_counter() - t0
    grads = sum(p.grad.numel() * p.grad.element_size() for p in model.parameters() if p.grad is not None)
    return {"side": side, "length": length, "prompt_len": PROMPT_LEN, "micro_batch": micro_batch,
            "peak_bytes": mem.peak_bytes, "retained_bytes": mem.end_bytes, "grad_bytes": grads,
            "largest_allocation": mem.largest_allocation, "num_allocations": mem.num_allocations,
            "step_s_profiled": round(step_s, 2), "loss": loss, "torch_threads": torch.get_num_threads()}




def _estimate(done: list[dict], length: int) -> float | None:
    """Linear extrapolation of peak bytes from the two longest measured lengths of one side."""
    pts = sorted((r["length"], r["peak_bytes"]) for r in done if "peak_bytes" in r)
    if len(pts) < 2:
        return None
    (l1, m1), (l2, m2) = pts[-2:]
    return m2 + (m2 - m1) / (l2 - l1) * (length - l2)


def run_parent(lengths: list[int], micro_batch: int, budget_bytes: int, sides=("ours", "trl")) -> list[dict]:
    from rl.bench.models import build_bench_model
    build_bench_model("vocab-152k")  # once, before the children read it
    results = []
    for length in sorted(lengths):
        for side in sides:
            done = [r for r in results if r["side"] == side]
            est = _estimate(done, length)
            if est is not None and est > budget_bytes:
                results.append({"side": side, "length": length, "micro_batch": micro_batch, "skipped":
                                f"estimated peak {est / 2**30:.1f} GiB > budget {budget_bytes / 2**30:.1f} GiB",
                                "estimated_peak_bytes": int(est)})
                print(f"[memory] {side} L={length}: skipped ({results[-1]['skipped']})", flush=True)
                continue
            cmd = [sys.executable, "-m", "rl.bench.memory", "--child", side, "--lengths", str(length),
                   "--micro-batch", str(micro_batch), "--budget-gb", str(budget_bytes / 2**30)]
            t0 = time.time()
            proc = subprocess.run(cmd, capture_output=True, text=True)
            lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
            if proc.returncode != 0 or not lines:
                tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["?"]
                results.append({"side": side, "length": length, "micro_batch": micro_batch,
                                "error": f"exit {proc.returncode}: {tail[0][:300]}"})
            else:
                results.append(json.loads(lines[-1]))
            results[-1]["wall_s"] = round(time.time() - t0, 1)
            print(f"[memory] {side} L={length}: {json.dumps(results[-1])}", flush=True)
    return results


def _gib(n) -> str:
    return f"{n / 2**30:.3f}"


def table(results: list[dict]) -> str:
    """Markdown: per length, peak GiB for each side, ratio, bytes per completion token; then the per-token slopes."""
    by = {(r["side"], r["length"]): r for r in results}
    lengths = sorted({r["length"] for r in results})

    def cell(side, length):
        r = by.get((side, length), {})
        if "peak_bytes" in r:
            return _gib(r["peak_bytes"])
        if "estimated_peak_bytes" in r:
            return f"~{_gib(r['estimated_peak_bytes'])} (est., skipped)"
        return r.get("error", "-")[:40]

    rows = ["| completion tokens | ours peak GiB | TRL peak GiB | ours / TRL | ours bytes/token | TRL bytes/token "
            "| ours grads GiB |", "|---:|---:|---:|---:|---:|---:|---:|"]
    for length in lengths:
        o, t = by.get(("ours", length), {}), by.get(("trl", length), {})
        n = o.get("micro_batch") or t.get("micro_batch") or 1
        ratio = f"{o['peak_bytes'] / t['peak_bytes']:.1f}x" if "peak_bytes" in o and "peak_bytes" in t else "-"
        per = [f"{r['peak_bytes'] / (n * length):,.0f}" if "peak_bytes" in r else "-" for r in (o, t)]
        grads = _gib(o["grad_bytes"]) if "grad_bytes" in o else "-"
        rows.append(f"| {length:,} | {cell('ours', length)} | {cell('trl', length)} | {ratio} | {per[0]} | {per[1]} "
                    f"| {grads} |")
    for side in ("ours", "trl"):
        pts = sorted((r["length"], r["peak_bytes"], r["micro_batch"]) for r in results
                     if r["side"] == side and "peak_bytes" in r)
        slopes = [f"{l1:,}->{l2:,}: {(m2 - m1) / (n * (l2 - l1)):,.0f} B/token"
                  for (l1, m1, n), (l2, m2, _) in zip(pts, pts[1:])]
        if slopes:
            rows.append(f"\n{side} slope (peak bytes per extra completion token): " + "; ".join(slopes))
    return "\n".join(rows)


def main(argv=None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lengths", default="512,2048,8192", help="completion lengths, comma-separated")
    ap.add_argument("--micro-batch", type=int, default=1)
    ap.add_argument("--budget-gb", type=float, default=None, help="skip/limit above this (default 60%% of "
                    "MemAvailable); 0 = no limit")
    ap.add_argument("--sides", default="ours,trl")
    ap.add_argument("--json", default=None, help="also write the results to this file")
    ap.add_argument("--child", choices=["ours", "trl"], help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    lengths = [int(x) for x in args.lengths.split(",")]
    available = _proc_bytes("/proc/meminfo", "MemAvailable")
    budget = int(0.6 * available if args.budget_gb is None else args.budget_gb * 2**30)
    if args.child:
        print(json.dumps(run_child(args.child, lengths[0], args.micro_batch, budget)), flush=True)
        return []
    print(f"[memory] vocab-152k, micro-batch {args.micro_batch}, prompt {PROMPT_LEN}, lengths {lengths}, "
          f"budget {budget / 2**30:.1f} GiB", flush=True)
    results = run_parent(lengths, args.micro_batch, budget, tuple(args.sides.split(",")))
    print(table(results))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"results": results, "argv": sys.argv[1:], "date": time.strftime("%Y-%m-%d %H:%M"),
                       "loadavg": os.getloadavg()}, f, indent=1)
    return results


if __name__ == "__main__":
    main()
