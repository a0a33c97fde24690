"""Long-tail world: step time and the learner's idle share, synchronous vs k steps ahead (issue 29).

    python -m rl.bench.long_tail                                   # sync, 1 and 2 steps ahead, 12 steps each
    python -m rl.bench.long_tail --modes 0,1 --steps 20 --json out.json

What it measures: the pipeline's scheduling, not model compute. The rollout engine runs in the real rollout worker
process (rl/rollout/engines/worker.py, driven by rl/rollout/episodes/async_rollouts.py, weights pushed through the
shared-memory bucket every step) but is *paced*: a batch decodes in steps of `--decode-step-s` seconds and lasts as
long as its longest completion (a batched decoder waits for its slowest row). Each prompt's completions are `--short`
tokens, except that a prompt is long-tailed (`--long-factor` x longer) with probability `--long-frac` (seeded), so
most batches wait for a few 10x chains: the long tail. The learner's step is a sleep of `--train-s` seconds (a
stand-in for forward/backward/optimizer), then the push. Since both sides sleep, the figures do not depend on how
many cores the machine has or on other load, only on the overlap the schedule allows.

Mode k = 0 is the synchronous loop (generate, then train, then push: nothing overlaps); k >= 1 generates k batches
ahead. Per step, means over the steps after the first k + 1 (which fill the pipeline): `step_s`, `idle_s` = the
learner waiting for rollouts plus for the worker to take the previous weights (`time/learner_idle_s`), `idle_share`
= idle_s / step_s, the mean generation seconds of a batch, and the staleness the schedule gives.

Not built here (issue 29): streamed groups (a step starts as soon as it has its rows) and partial rollouts (weights
change between decode steps), which are what shortens the tail itself rather than hiding it behind training.
"""
from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from types import SimpleNamespace

import torch

from rl.core.episode import Completion, SamplingParams


class LongTailEngine:
    """Engine for EngineSpec.engine_factory="rl.bench.long_tail:build": a batch decodes max(lengths) steps of
    step_s seconds (ticking the worker's progress per step); completion lengths as in the module docstring,
    drawn from params.seed so every mode sees the same world."""

    def __init__(self, step_s: float, short: int, long_factor: int, long_frac: float):
        self.step_s, self.short, self.long_factor, self.long_frac = step_s, short, long_factor, long_frac
        self.on_progress = None

    def lengths(self, prompts: int, seed: int) -> list[int]:
        """Completion length per prompt. Example: short 4, factor 10, frac 0.25 -> mostly 4, about 1 in 4 is 40."""
        rng = random.Random(seed)
        return [self.short * (self.long_factor if rng.random() < self.long_frac else 1) for _ in range(prompts)]

    def generate(self, prompts, params):
        lengths = self.lengths(len(prompts), params.seed or 0)
        for _ in range(max(lengths)):
            time.sleep(self.step_s)
            if self.on_progress is not None:
                self.on_progress()
        return [[Completion(prompt_ids=list(p), completion_ids=[1] * n, text="", finish_reason="stop",
                            logprobs=[0.0] * n) for _ in range(params.n)] for p, n in zip(prompts, lengths)]

    def update_weights(self, model, weights=None):
        for _ in weights or ():
            pass

    def close(self):
        pass


def build(spec):
    k = spec.engine_kwargs
    return LongTailEngine(float(k["step_s"]), int(k["short"]), int(k["long_factor"]), float(k["long_frac"])), None


class _Scorer:  # every completion scores 0: the benchmark times the schedule, not rewards
    def score(self, completions, columns):
        zeros = [0.0] * len(completions)
        return SimpleNamespace(totals=zeros, per_reward={"zero": zeros}, metrics={})


class _Encoder:  # prompt = [the example's index]
    def __call__(self, index, example):
        return [5 + index % 100]

    def count_cut(self, batch):
        return 0


def run_mode(k: int, args) -> dict:
    """`args.steps` steps with `k` batches ahead (0: synchronous) -> figures of the module docstring."""
    from rl.rollout.engines.worker import EngineSpec, RolloutWorker
    from rl.rollout.episodes.async_rollouts import AsyncRollouts
    from rl.rollout.episodes.collect import PromptSampler

    spec = EngineSpec(engine="hf", model_path="unused", engine_factory="rl.bench.long_tail:build",
                      engine_kwargs={"step_s": args.decode_step_s, "short": args.short,
                                     "long_factor": args.long_factor, "long_frac": args.long_frac})
    worker = RolloutWorker(spec, timeout_s=120, start_timeout_s=120)
    weights = {"w": torch.zeros(1024)}  # a push goes through the worker's bucket as a real one does
    sampler = PromptSampler([{"prompt": "", "answer": ""}] * 10_000, seed=0)
    rollouts = AsyncRollouts(worker, _Scorer(), sampler, _Encoder(),
                             lambda step: SamplingParams(n=args.group_size, max_tokens=1, seed=step),
                             args.prompts, async_steps=k)
    rows = []
    try:
        for step in range(1, args.steps + 1):
            t0 = time.time()
            _, metrics = rollouts.episodes_for(step)
            time.sleep(args.train_s)  # the learner's step
            rollouts.push(weights.items(), step)
            rows.append({"step_s": time.time() - t0, "generate_s": metrics["time/generate_s"],
                         "idle_s": metrics["time/rollout_wait_s"] + rollouts.push_wait_s,
                         "staleness": metrics["rollout/staleness_max"]})
    finally:
        rollouts.close()
    steady = rows[k + 1:] or rows
    mean = lambda key: statistics.mean(r[key] for r in steady)  # noqa: E731 - throughput is about means
    step_s, idle_s = mean("step_s"), mean("idle_s")
    return {"async_steps": k, "step_s": round(step_s, 3), "idle_s": round(idle_s, 3),
            "idle_share": round(idle_s / step_s, 3), "generate_s": round(mean("generate_s"), 3),
            "train_s": args.train_s, "staleness_max": max(r["staleness"] for r in rows)}


def main(argv: list[str] | None = None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--modes", default="0,1,2", help="async_steps values, comma-separated (0 = synchronous)")
    p.add_argument("--steps", type=int, default=12)
    p.add_argument("--prompts", type=int, default=8, help="prompts per step")
    p.add_argument("--group-size", type=int, default=4)
    p.add_argument("--short", type=int, default=4, help="decode steps of a short completion")
    p.add_argument("--long-factor", type=int, default=10)
    p.add_argument("--long-frac", type=float, default=0.1, help="probability that a prompt's chains are long")
    p.add_argument("--decode-step-s", type=float, default=0.01)
    p.add_argument("--train-s", type=float, default=0.3)
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    results = []
    for k in (int(m) for m in args.modes.split(",")):
        results.append(run_mode(k, args))
        print(json.dumps(results[-1]), flush=True)
    base = results[0]["step_s"] if results[0]["async_steps"] == 0 else None
    print("| async_steps | s/step | learner idle s | idle share | generate s | train s | vs sync |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for r in results:
        rel = f"{r['step_s'] / base:.2f}" if base else "-"
        print(f"| {r['async_steps']} | {r['step_s']:.3f} | {r['idle_s']:.3f} | {r['idle_share']:.2f} | "
              f"{r['generate_s']:.3f} | {r['train_s']:.3f} | {rel} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    return results


if __name__ == "__main__":
    main(sys.argv[1:])
