"""LoRA vs full fine-tuning in the GRPO learner: peak learner memory and seconds per learner step.

    python -m rl.bench.lora                                       # qwen2-22m and vocab-152k; full, lora-r8
    python -m rl.bench.lora --models qwen2-22m --modes full,lora-r8,lora-r1 --steps 4 --json out.json
    python -m rl.bench.lora --interleave 4                        # s/step only: the modes stepped in turn, 4 rounds

Workload, the same for every mode of one model (rl/bench/models.py presets, float32, CPU): one learner step =
`Learner.step(batch)` (rl/train/learner.py: prepare, micro-batched forward/backward with accumulation, clipping,
AdamW step, zero_grad) on `--rows` sequences of a 128-token prompt + `--length` completion tokens of random ids
(rl/bench/memory.py `make_inputs`, seeded), micro-batches of `--micro-batch`, advantages +1/-1, algorithm from
recipes/tiny/r1_zero.yaml (dapo, beta 0, mu 1). Modes:

- `full`: every parameter trainable (AdamW state for all of them);
- `lora-rN`: `model.lora.enabled=true r=N alpha=16 target_modules=[all-linear]` (every linear layer of every block;
  peft's `all-linear` leaves the LM head out; the tied embedding stays frozen).

Measured, each (model, mode) in a fresh subprocess:
- `weights_bytes`: the model's parameters (and, with LoRA, the adapters), present before the step;
- `step1_peak_bytes`: rl/bench/tracker.py `PeakMemory` over the FIRST learner step, above the weights: activations,
  autograd's saved tensors, logprob temporaries, the new `.grad` tensors and the AdamW moments created by that step
  (allocated CPU tensor bytes, not RSS; exact, independent of load);
- `learner_peak_bytes` = weights + step-1 peak: the learner's peak tensor memory for this workload;
- `optimizer_state_bytes`: AdamW state after the step (what stays between steps, besides the weights);
- `s_per_step`, `s_per_step_min`: median and minimum wall time of steps 2..N (no profiler; step 1 carries the state
  allocation and profiling). On a shared machine the minimum is the better estimate of the cost (other load only
  ever adds time); the loads averages before and after each run are recorded.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import torch

from rl.bench.memory import PROMPT_LEN, RECIPE, make_inputs


def learner_for(path: str, mode: str, rows: int, micro_batch: int, length: int, dtype: str = "float32"):
    """The learner of `mode` on the model at `path`, loaded as rl/grpo.py loads it (models.load_policy_and_reference:
    float32 masters; with LoRA the frozen base in `dtype`), mixed precision `dtype`."""
    from accelerate import Accelerator

    from rl.config.grpo import GRPOConfig
    from rl.config.recipe import load_config
    from rl.train.distributed import MIXED_PRECISION
    from rl.train.learner import Learner
    from rl.train.models import load_policy_and_reference

    overrides = [f"rollout.max_prompt_length={PROMPT_LEN}", f"rollout.max_completion_length={length}",
                 f"model.dtype={dtype}"]
    if mode.startswith("lora-r"):
        overrides += ["model.lora.enabled=true", f"model.lora.r={int(mode.removeprefix('lora-r'))}",
                      "model.lora.alpha=16", "model.lora.target_modules=[all-linear]"]
    elif mode != "full":
        raise ValueError(f"unknown mode {mode!r}: full | lora-r<N>")
    cfg = load_config(GRPOConfig, RECIPE, overrides)
    cfg.train.batch_size, cfg.train.micro_batch_size = rows, micro_batch  # after validation (group size)
    torch.manual_seed(0)
    model, _ = load_policy_and_reference(path, cfg.model, cfg.algorithm.beta)
    accelerator = Accelerator(cpu=True, mixed_precision=MIXED_PRECISION[dtype],
                              gradient_accumulation_steps=rows // micro_batch)
    return Learner(cfg, accelerator, model, None), cfg


def synthetic_batch(inputs: dict, pad_token_id: int, mask_truncated: bool):
    from rl.core.collate import collate
    from rl.core.episode import Completion, Episode

    B, L = inputs["completion_ids"].shape
    episodes = [Episode(group_id=i, example={"prompt": "", "answer": ""}, advantage=float(inputs["advantages"][i]),
                        completion=Completion(prompt_ids=inputs["prompt_ids"][i].tolist(),
                                              completion_ids=inputs["completion_ids"][i].tolist(), text="",
                                              finish_reason="stop", logprobs=[0.0] * L))
                for i in range(B)]
    return collate(episodes, pad_token_id, mask_truncated)


def run_child(model_name: str, mode: str, rows: int, micro_batch: int, length: int, steps: int,
              dtype: str = "float32") -> dict:
    from rl.bench.models import build_bench_model, describe
    from rl.bench.tracker import PeakMemory
    from rl.train.models import load_tokenizer

    path = str(build_bench_model(model_name))
    tokenizer = load_tokenizer(path)
    learner, cfg = learner_for(path, mode, rows, micro_batch, length, dtype)
    batch = synthetic_batch(make_inputs(length, rows, describe(path)["vocab_size"]), tokenizer.pad_token_id,
                            cfg.algorithm.mask_truncated_completions)
    params = list(learner.model.parameters())
    weights = sum(p.numel() * p.element_size() for p in params)
    trainable = sum(p.numel() for p in params if p.requires_grad)
    with PeakMemory() as mem:
        first = learner.step(batch)
    state = sum(t.numel() * t.element_size() for s in learner.optimizer.state.values() for t in s.values()
                if torch.is_tensor(t))
    times = []
    for _ in range(steps - 1):
        t0 = time.perf_counter()
        learner.step(batch)
        times.append(time.perf_counter() - t0)
    return {"model": model_name, "mode": mode, "dtype": dtype, "rows": rows, "micro_batch": micro_batch, "prompt_len": PROMPT_LEN,
            "length": length, "params": sum(p.numel() for p in params), "trainable_params": trainable,
            "weights_bytes": weights, "step1_peak_bytes": mem.peak_bytes,
            "learner_peak_bytes": weights + mem.peak_bytes, "optimizer_state_bytes": state,
            "s_per_step": round(statistics.median(times), 3) if times else None,
            "s_per_step_min": round(min(times), 3) if times else None,
            "step_times": [round(t, 3) for t in times],
            "loss": first["loss"], "torch_threads": torch.get_num_threads()}


def run_interleaved(model_name: str, modes: list[str], rows: int, micro_batch: int, length: int, rounds: int) -> dict:
    """s/step of every mode under the same load: one learner per mode (each on its own copy of the model) in this
    process, stepped in turn, mode after mode, for `rounds` rounds after one warm-up step each. On a shared machine
    this is the fair comparison: a load spike hits neighbouring steps of every mode, and the per-round ratios show it.
    """
    from rl.bench.models import build_bench_model, describe
    from rl.train.models import load_tokenizer

    path = str(build_bench_model(model_name))
    tokenizer = load_tokenizer(path)
    learners, batch = {}, None
    for mode in modes:
        learners[mode], cfg = learner_for(path, mode, rows, micro_batch, length)
        if batch is None:
            batch = synthetic_batch(make_inputs(length, rows, describe(path)["vocab_size"]), tokenizer.pad_token_id,
                                    cfg.algorithm.mask_truncated_completions)
        learners[mode].step(batch)  # warm-up: AdamW state, first-call allocations
    times: dict[str, list[float]] = {m: [] for m in modes}
    for _ in range(rounds):
        for mode in modes:
            t0 = time.perf_counter()
            learners[mode].step(batch)
            times[mode].append(round(time.perf_counter() - t0, 3))
    base = modes[0]
    return {"model": model_name, "rows": rows, "micro_batch": micro_batch, "length": length, "rounds": rounds,
            "times": times, "median": {m: round(statistics.median(t), 3) for m, t in times.items()},
            "min": {m: min(t) for m, t in times.items()},
            f"ratio_to_{base}_per_round": {m: [round(a / b, 2) for a, b in zip(t, times[base])] for m, t in
                                            times.items() if m != base},
            "torch_threads": torch.get_num_threads()}


def table(results: list[dict]) -> str:
    gib = 2 ** 30
    rows = ["| model | mode | trainable params | weights GiB | step-1 peak above weights GiB | learner peak GiB "
            "| AdamW state GiB | s/step median (min), steps 2..N |", "|---|---|---:|---:|---:|---:|---:|---:|"]
    for r in results:
        if "error" in r:
            rows.append(f"| {r['model']} | {r['mode']} | {r['error'][:60]} | | | | | |")
            continue
        rows.append(f"| {r['model']} | {r['mode']} | {r['trainable_params']:,} | {r['weights_bytes'] / gib:.3f} "
                    f"| {r['step1_peak_bytes'] / gib:.3f} | {r['learner_peak_bytes'] / gib:.3f} "
                    f"| {r['optimizer_state_bytes'] / gib:.3f} | {r['s_per_step']} ({r.get('s_per_step_min')}) |")
    return "\n".join(rows)


def main(argv=None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="qwen2-22m,vocab-152k")
    ap.add_argument("--modes", default="full,lora-r8")
    ap.add_argument("--rows", type=int, default=4, help="sequences per learner step")
    ap.add_argument("--micro-batch", type=int, default=2)
    ap.add_argument("--length", type=int, default=256, help="completion tokens per sequence")
    ap.add_argument("--steps", type=int, default=4, help="learner steps per run (s/step: median of 2..N)")
    ap.add_argument("--dtype", default="float32", help="model.dtype: float32 | bfloat16 (mixed precision; with "
                    "LoRA the frozen base is loaded in it)")
    ap.add_argument("--json", default=None)
    ap.add_argument("--interleave", type=int, default=0, metavar="ROUNDS", help="instead: time the modes of each "
                    "model in one process, stepped in turn for ROUNDS rounds (no memory figures)")
    ap.add_argument("--child", nargs=2, metavar=("MODEL", "MODE"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        print(json.dumps(run_child(*args.child, args.rows, args.micro_batch, args.length, args.steps, args.dtype)),
              flush=True)
        return []
    if args.interleave:
        timings = []
        for model_name in args.models.split(","):
            load0 = os.getloadavg()[0]
            timings.append({**run_interleaved(model_name, args.modes.split(","), args.rows, args.micro_batch,
                                              args.length, args.interleave), "loadavg": [load0, os.getloadavg()[0]]})
            print(f"[lora] {json.dumps(timings[-1])}", flush=True)
        if args.json:
            with open(args.json, "w") as f:
                json.dump({"timings": timings, "argv": sys.argv[1:], "date": time.strftime("%Y-%m-%d %H:%M")}, f,
                          indent=1)
        return timings
    from rl.bench.models import build_bench_model
    results = []
    for model_name in args.models.split(","):
        build_bench_model(model_name)  # once, before the children read it
        for mode in args.modes.split(","):
            cmd = [sys.executable, "-m", "rl.bench.lora", "--child", model_name, mode, "--rows", str(args.rows),
                   "--micro-batch", str(args.micro_batch), "--length", str(args.length), "--steps", str(args.steps),
                   "--dtype", args.dtype]
            load0 = os.getloadavg()[0]
            proc = subprocess.run(cmd, capture_output=True, text=True)
            lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
            if proc.returncode != 0 or not lines:
                tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["?"]
                results.append({"model": model_name, "mode": mode, "error": f"exit {proc.returncode}: {tail[0]}"})
            else:
                results.append({**json.loads(lines[-1]), "loadavg": [load0, os.getloadavg()[0]]})
            print(f"[lora] {json.dumps(results[-1])}", flush=True)
    print(table(results))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"results": results, "argv": sys.argv[1:], "date": time.strftime("%Y-%m-%d %H:%M")}, f,
                      indent=1)
    return results


if __name__ == "__main__":
    main()
