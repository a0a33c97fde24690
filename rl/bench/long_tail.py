"""Long-tail world: step time and the learner's idle share, synchronous vs k steps ahead vs streamed (issue 29).

    python -m rl.bench.long_tail                       # sync, 1 and 2 steps ahead, streamed k=2; 12 steps each
    python -m rl.bench.long_tail --modes 0,1,s1 --steps 20 --json out.json

What it measures: the pipeline's scheduling, not model compute. The rollout engine runs in the real rollout worker
process (rl/rollout/engines/worker.py, driven by rl/rollout/episodes/async_rollouts.py, weights pushed through the
shared-memory bucket every step) but is *paced*: a batch decodes in steps of `--decode-step-s` seconds and lasts as
long as its longest completion (a batched decoder waits for its slowest row). Each prompt's completions are `--short`
tokens, except that a prompt is long-tailed (`--long-factor` x longer) with probability `--long-frac` (a property of
the prompt, seeded by its id: a long prompt regenerated is long again), so most batches wait for a few 10x chains:
the long tail. The learner's step is a sleep of `--train-s` seconds (a stand-in for forward/backward/optimizer),
then the push. Since both sides sleep, the figures do not depend on how many cores the machine has or on other
load, only on the overlap the schedule allows.

Mode 0 is the synchronous loop (generate, then train, then push: nothing overlaps); k >= 1 generates k batches
ahead; `sk` is stream mode (rl/rollout/engines/stream_worker.py, rl/rollout/episodes/stream_rollouts.py): k batches
of prompts in flight, decoded together with continuous batching in `--slots` rows (default: one step's prompts x
group size, the width of a batch), each group back as soon as it completes, every push applied between two decode
steps (partial rollouts), groups whose oldest token is more than k versions old dropped and regenerated. Per step,
means over the steps after the first k + 1 (which fill the pipeline): `step_s`, `idle_s` = the learner waiting for
rollouts plus for the worker to take the previous weights (`time/learner_idle_s`), `idle_share` = idle_s / step_s,
the generation seconds (a batch's; streamed: the engine's decoding seconds per step), the staleness, dropped groups
(whole run), and streamed only: the engine's idle seconds per step and the share of trained completions whose
tokens span several versions.
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
from rl.core.streaming import admit


class LongTailEngine:
    """Engine for EngineSpec.engine_factory="rl.bench.long_tail:build": a batch decodes max(lengths) steps of
    step_s seconds (ticking the worker's progress per step); completion lengths as in the module docstring, drawn
    per prompt so every mode sees the same world (`short` None: every completion is params.max_tokens long;
    `silent`: no ticks, a hung engine, for the worker's deadline tests). Token t of sample j of prompt p is
    2 + (7 p[0] + 3 j + t) % 50 with logprob -0.5 - 0.01 x (weight pushes applied so far): completions depend on the
    prompt, the sample and the weights, never on the batch around them.

    Streaming (rl/rollout/engines/stream_worker.py): `submit` queues sequences, `step` is one decode step of at most
    `slots` rows (step_s seconds however many rows run; queued rows join as soon as a slot frees: continuous
    batching), each token stamped with `version`, the weights version the worker applied last."""

    def __init__(self, step_s: float, short: int | None, long_factor: int = 1, long_frac: float = 0.0,
                 slots: int = 1 << 30, silent: bool = False):
        self.step_s, self.short, self.long_factor, self.long_frac = step_s, short, long_factor, long_frac
        self.slots, self.silent = slots, silent
        self.on_progress = None
        self.updates = 0  # weight pushes applied
        self.version = 0  # stream mode: set by the worker
        self._queue: list[list] = []  # [key, prompt, length, max_tokens, ids, logprobs, versions]
        self._running: list[list] = []

    def lengths(self, prompts: list[list[int]], max_tokens: int = 1 << 30) -> list[int]:
        """Completion length per prompt, a property of the prompt (a hard prompt is long whenever it is sampled,
        regenerated or not): long when random.Random(prompt[0]).random() < long_frac. Example: short 4, factor 10,
        frac 0.3, prompts [0] .. [7] (first draws 0.844 0.134 0.956 0.238 0.236 0.623 0.793 0.324) ->
        [4, 40, 4, 40, 40, 4, 4, 4]."""
        if self.short is None:
            return [max_tokens] * len(prompts)
        return [self.short * (self.long_factor if random.Random(p[0]).random() < self.long_frac else 1)
                for p in prompts]

    def _tick(self) -> None:
        time.sleep(self.step_s)
        if self.on_progress is not None and not self.silent:
            self.on_progress()

    def _completion(self, prompt, j: int, n: int, max_tokens: int, versions=None) -> Completion:
        ids = [2 + (7 * prompt[0] + 3 * j + t) % 50 for t in range(min(n, max_tokens))]
        lp = -0.5 - 0.01 * self.updates
        return Completion(prompt_ids=list(prompt), completion_ids=ids, text="",
                          finish_reason="length" if n >= max_tokens else "stop", logprobs=[lp] * len(ids),
                          versions=versions)

    def generate(self, prompts, params):
        lengths = self.lengths(prompts, params.max_tokens)
        for _ in range(min(max(lengths), params.max_tokens)):
            self._tick()
        return [[self._completion(p, j, n, params.max_tokens) for j in range(params.n)]
                for p, n in zip(prompts, lengths)]

    def submit(self, job, prompts, params):
        lengths = self.lengths(prompts, params.max_tokens)
        for i, (p, n) in enumerate(zip(prompts, lengths)):
            self._queue.extend([(job, i, j), list(p), min(n, params.max_tokens), params.max_tokens, [], [], []]
                               for j in range(params.n))

    def pending(self) -> int:
        return len(self._queue) + len(self._running)

    def step(self):
        joining = admit(len(self._queue), len(self._running), self.slots)
        self._running += self._queue[:joining]
        del self._queue[:joining]
        self._tick()
        done, lp = [], -0.5 - 0.01 * self.updates
        for row in self._running:
            (job, i, j), prompt, n, max_tokens, ids, lps, versions = row
            ids.append(2 + (7 * prompt[0] + 3 * j + len(ids)) % 50)
            lps.append(lp)
            versions.append(self.version)
            if len(ids) == n:
                done.append(((job, i, j), Completion(prompt_ids=prompt, completion_ids=ids, text="",
                                                     finish_reason="length" if n >= max_tokens else "stop",
                                                     logprobs=lps, versions=versions)))
        self._running = [row for row in self._running if len(row[4]) < row[2]]
        return done

    def update_weights(self, model, weights=None):
        for _ in weights or ():
            pass
        self.updates += 1

    def close(self):
        pass


def build(spec):
    k = spec.engine_kwargs
    short = k.get("short")
    return LongTailEngine(float(k["step_s"]), None if short is None else int(short), int(k.get("long_factor", 1)),
                          float(k.get("long_frac", 0.0)), int(k.get("slots", 1 << 30)),
                          bool(k.get("silent", False))), None


class _Scorer:  # every completion scores 0: the benchmark times the schedule, not rewards
    def score(self, completions, columns):
        zeros = [0.0] * len(completions)
        return SimpleNamespace(totals=zeros, per_reward={"zero": zeros}, metrics={})


class _Encoder:  # prompt = [the example's index]
    def __call__(self, index, example):
        return [index]

    def count_cut(self, batch):
        return 0


def run_mode(mode: str, args) -> dict:
    """`args.steps` steps of one schedule -> figures of the module docstring. mode "0": synchronous; "k": k batches
    ahead; "sk": streamed groups + in-flight weight updates, k batches of prompts in flight, max_staleness k."""
    from rl.rollout.engines.stream_worker import StreamWorker
    from rl.rollout.engines.worker import EngineSpec, RolloutWorker
    from rl.rollout.episodes.async_rollouts import AsyncRollouts
    from rl.rollout.episodes.collect import PromptSampler
    from rl.rollout.episodes.stream_rollouts import StreamedRollouts

    stream, k = mode.startswith("s"), int(mode.lstrip("s"))
    slots = args.slots or args.prompts * args.group_size  # the batch path's width: one step's rows
    spec = EngineSpec(engine="hf", model_path="unused", engine_factory="rl.bench.long_tail:build",
                      engine_kwargs={"step_s": args.decode_step_s, "short": args.short, "slots": slots,
                                     "long_factor": args.long_factor, "long_frac": args.long_frac})
    worker = (StreamWorker if stream else RolloutWorker)(spec, timeout_s=120, start_timeout_s=120)
    weights = {"w": torch.zeros(1024)}  # a push goes through the worker's bucket as a real one does
    sampler = PromptSampler([{"prompt": "", "answer": ""}] * 10_000, seed=0)
    params = lambda step: SamplingParams(n=args.group_size, max_tokens=args.short * args.long_factor,  # noqa: E731
                                         seed=step)
    rollouts = (StreamedRollouts if stream else AsyncRollouts)(
        worker, _Scorer(), sampler, _Encoder(), params, args.prompts, async_steps=k,
        **({"max_staleness": k} if stream else {}))
    rows = []
    try:
        for step in range(1, args.steps + 1):
            t0 = time.time()
            _, metrics = rollouts.episodes_for(step)
            time.sleep(args.train_s)  # the learner's step
            rollouts.push(weights.items(), step)
            rows.append({"step_s": time.time() - t0, "generate_s": metrics["time/generate_s"],
                         "idle_s": metrics["time/rollout_wait_s"] + rollouts.push_wait_s,
                         "staleness": metrics["rollout/staleness_max"],
                         "dropped": metrics["rollout/dropped_groups"],
                         "engine_idle_s": metrics.get("time/engine_idle_s", 0.0),
                         "spanning": metrics.get("rollout/spanning_frac", 0.0)})
    finally:
        rollouts.close()
    steady = rows[k + 1:] or rows
    mean = lambda key: statistics.mean(r[key] for r in steady)  # noqa: E731 - throughput is about means
    step_s, idle_s = mean("step_s"), mean("idle_s")
    return {"mode": f"streamed k={k}" if stream else ("sync" if k == 0 else f"{k} ahead"), "async_steps": k,
            "step_s": round(step_s, 3), "idle_s": round(idle_s, 3), "idle_share": round(idle_s / step_s, 3),
            "generate_s": round(mean("generate_s"), 3), "train_s": args.train_s,
            "staleness_max": max(r["staleness"] for r in rows), "dropped_groups": sum(r["dropped"] for r in rows),
            "engine_idle_s": round(mean("engine_idle_s"), 3) if stream else None,
            "spanning_frac": round(mean("spanning"), 3) if stream else None}


def main(argv: list[str] | None = None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--modes", default="0,1,2,s2", help="comma-separated: 0 = synchronous, k = k batches ahead, "
                                                        "sk = streamed + in-flight updates, max_staleness k")
    p.add_argument("--steps", type=int, default=12)
    p.add_argument("--prompts", type=int, default=8, help="prompts per step")
    p.add_argument("--group-size", type=int, default=4)
    p.add_argument("--short", type=int, default=4, help="decode steps of a short completion")
    p.add_argument("--long-factor", type=int, default=10)
    p.add_argument("--long-frac", type=float, default=0.1, help="probability that a prompt's chains are long")
    p.add_argument("--decode-step-s", type=float, default=0.01)
    p.add_argument("--slots", type=int, default=0, help="rows one decode step runs (0: prompts x group size)")
    p.add_argument("--train-s", type=float, default=0.3)
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    results = []
    for mode in args.modes.split(","):
        results.append(run_mode(mode.strip(), args))
        print(json.dumps(results[-1]), flush=True)
    base = results[0]["step_s"] if results[0]["mode"] == "sync" else None
    print("| schedule | s/step | learner idle s | idle share | generate s | train s | staleness max | dropped | "
          "vs sync |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in results:
        rel = f"{r['step_s'] / base:.2f}" if base else "-"
        print(f"| {r['mode']} | {r['step_s']:.3f} | {r['idle_s']:.3f} | {r['idle_share']:.2f} | "
              f"{r['generate_s']:.3f} | {r['train_s']:.3f} | {r['staleness_max']:g} | {r['dropped_groups']:g} | "
              f"{rel} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    return results


if __name__ == "__main__":
    main(sys.argv[1:])
