"""Throughput, side by side: this project's GRPO loop vs trl.GRPOTrainer on identical work (CPU, transformers
generation on both sides, no vLLM).

    python -m rl.bench.trl_side_by_side                                   # all workloads, 10 steps, 3 rounds
    python -m rl.bench.trl_side_by_side --workload tiny --steps 4 --rounds 2 --json out.json
    python -m rl.bench.trl_side_by_side --workload tiny --steps 4 --rounds 1 --profile   # + cProfile of ours
    python -m rl.bench.trl_side_by_side --workload tiny --ours-override train.max_tokens_per_micro_batch=4096
        # + a row "ours (train.max_tokens_per_micro_batch=4096)": ours with recipe overrides a user would set,
        # run in every round next to the default ours (ours, ours+overrides, TRL) and compared to the same TRL runs
    python -m rl.bench.trl_side_by_side --threads 1    # both sides on 1 torch thread (OMP_NUM_THREADS=1): on a
        # shared, oversubscribed machine 2-thread ops wait on a descheduled thread and steps vary 30x; 1 thread doesn't

Work per optimizer step, both sides: 8 prompts x G=8 = 64 completions, at most 40 new tokens, temperature 1,
top_p 1, no top_k; rewards accuracy (1.0) + format (0.5); group-scaled advantages; loss from the recipe
(recipes/tiny/r1_zero.yaml: dapo, beta 0, mu 1, epsilon 0.2/0.28); AdamW lr 2e-4, betas (0.9, 0.99), no weight decay,
clip 1.0; micro-batches of 32 with 2 accumulation steps; float32. Prompts are the same rows in the same order: the
r1_zero-rendered procedural arithmetic prompts that our `PromptSampler` draws for steps 1..N, given to TRL as an
unshuffled dataset (its RepeatSampler then yields them 8 times each, in order). Same weights (one model dir).
Workloads: `tiny` (the project's tiny base model, 0.55M parameters, Llama) and `qwen2-22m` (rl/bench/models.py).

Sides run ALTERNATELY, each in a fresh subprocess (ours, TRL, ours, TRL, ... for --rounds rounds):
- ours: `rl.grpo.main([recipe, output_dir=..., train.max_steps=N, data.test=null (no evaluation), ...])`;
  s/step = `time/step_s` of metrics.jsonl (rollout + scoring + learner step + weight push), with the
  `time/generate_s`, `time/score_s`, `time/train_s` split.
- TRL: `GRPOTrainer.train()` with a TrainerCallback timing on_step_begin -> on_step_end of each optimizer step
  (generation + scoring + 2 micro-batch forward/backward + clip + optimizer step); `_generate_and_score_completions`
  and `_generate` are wrapped to time generation and to record how many completions each generation produced
  (checked: 64 per optimizer step, one generation per step).
Reported per workload: each round's median s/step over steps 2..N (step 1 carries warm-up), the median and spread
(max - min) over rounds, TRL/ours (ratio of the medians, and per round: TRL's run over the ours run just before
it), the time split (TRL: generate = `_generate`, score = the rest of `_generate_and_score_completions`, train = the
rest of the step), mean completion lengths (sampling differs between the sides, so lengths - i.e. work - may
differ a little; read them next to the times) and the load average around each run.

Mismatches that remain (TRL cannot express ours exactly, or does more):
- warm-up: ours multiplies lr by (step+1)/(warmup+1) (1/3, 2/3, 1, ...); TRL's constant_with_warmup by
  step/warmup (0, 1/2, 1, ...);
- TRL computes per-token entropy in every training forward (its fused LM head, for its metrics) and, on CPU,
  scores every position (prompt too) through that head; ours computes only completion logprobs;
- ours asks `generate` for the logits of every step (sampling logprobs, for the engine/learner mismatch metric);
  TRL's transformers path does not;
- rewards: ours scores accuracy in 2 worker processes (RewardScorer), TRL calls the functions in-process;
- random streams differ (ours seeds each step's sampling; TRL seeds once), so completions differ.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RECIPE = "recipes/tiny/r1_zero.yaml"
WORKLOADS = ("tiny", "qwen2-22m")


def model_path(workload: str) -> str:
    if workload == "tiny":
        from rl.tiny.sources import resolve_model_path
        return resolve_model_path("tiny")
    from rl.bench.models import build_bench_model
    return str(build_bench_model(workload))


def recipe_config(path: str, steps: int, output_dir: str):
    from rl.config.recipe import load_config
    from rl.config.grpo import GRPOConfig
    return load_config(GRPOConfig, RECIPE, our_overrides(path, steps, output_dir))


def our_overrides(path: str, steps: int, output_dir: str) -> list[str]:
    return [f"output_dir={output_dir}", f"train.max_steps={steps}", f"model.name_or_path={path}", "resume=never",
            "data.test=null", "logging.eval_every=0", "logging.save_every=0", "logging.progress_bar=false"]


def step_prompts(cfg, steps: int) -> list[dict]:
    """The examples our loop draws for steps 1..steps, in order (what TRL gets as its unshuffled dataset)."""
    from data.loading import load_examples
    from rl.rollout.episodes.collect import PromptSampler
    d = cfg.data
    rows = load_examples(d.train, d.train_split, prompt_column=d.prompt_column, answer_column=d.answer_column,
                         num_train=d.num_train, num_test=d.num_test, seed=d.seed)
    sampler = PromptSampler(rows, seed=cfg.train.seed)
    return [ex for _ in range(steps) for _, ex in sampler.take(cfg.prompts_per_step)]


def check_user_overrides(overrides: list[str]) -> None:
    """Fail in one line, before any run, on an override that is not KEY=VALUE or that the recipe rejects; the
    bench's own keys (output_dir, max_steps, the model, ...) are not the user's to change."""
    fixed = {o.split("=", 1)[0] for o in our_overrides("m", 2, "o")}
    for o in overrides:
        if "=" not in o or o.split("=", 1)[0] in fixed:
            raise SystemExit(f"--ours-override {o!r}: expected KEY=VALUE with KEY not one of {sorted(fixed)}")
    from rl.config.recipe import load_config
    from rl.config.grpo import GRPOConfig
    try:
        load_config(GRPOConfig, RECIPE, overrides)
    except Exception as e:  # noqa: BLE001 - the config's own message names the problem
        raise SystemExit(f"--ours-override {' '.join(overrides)}: {e}") from None


def run_ours(workload: str, steps: int, cprofile: str | None = None, overrides: list[str] | None = None) -> dict:
    from rl.grpo import main
    path = model_path(workload)
    overrides = list(overrides or [])
    batch_size = recipe_config(path, steps, "unused").train.batch_size
    with tempfile.TemporaryDirectory(prefix="bench_ours_") as out:
        argv = [RECIPE, *our_overrides(path, steps, out), *overrides]
        if cprofile:
            _profile_steps(main, argv, steps, cprofile)
        else:
            main(argv)
        lines = [json.loads(ln) for ln in (Path(out) / "metrics.jsonl").read_text().splitlines()]
    rows = [m for m in lines if "time/step_s" in m]
    return {"side": "ours+" if overrides else "ours", "overrides": overrides, "workload": workload, "model": path,
            "step_s": [m["time/step_s"] for m in rows], "generate_s": [m["time/generate_s"] for m in rows],
            "score_s": [m["time/score_s"] for m in rows], "train_s": [m["time/train_s"] for m in rows],
            "completion_len": [m["completion_len/mean"] for m in rows],
            "completions_per_step": [batch_size] * len(rows),  # fixed by the recipe (no dynamic sampling)
            "torch_threads": _torch_threads()}


def _torch_threads() -> int:
    import torch
    return torch.get_num_threads()


def _profile_steps(main, argv: list[str], steps: int, out: str) -> None:
    """cProfile of steps 2..N only: enabled at the 2nd `collect_episodes`, disabled after the last `Learner.step`."""
    import cProfile

    import rl.rollout.episodes.collect
    import rl.train.learner
    prof, calls = cProfile.Profile(), {"collect": 0, "learn": 0}
    collect, learn = rl.rollout.episodes.collect.collect_episodes, rl.train.learner.Learner.step

    def collect_wrapped(*a, **k):
        calls["collect"] += 1
        if calls["collect"] == 2:
            prof.enable()
        return collect(*a, **k)

    def learn_wrapped(self, *a, **k):
        result = learn(self, *a, **k)
        calls["learn"] += 1
        if calls["learn"] == steps:
            prof.disable()
        return result
    rl.rollout.episodes.collect.collect_episodes, rl.train.learner.Learner.step = collect_wrapped, learn_wrapped
    main(argv)
    prof.dump_stats(out)


def run_trl(workload: str, steps: int) -> dict:
    import torch
    from datasets import Dataset
    from transformers import TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    from data.templates import prompt_token_ids, render_prompt
    from rewards import get_reward
    from rl.train.models import load_causal_lm, load_tokenizer

    path = model_path(workload)
    cfg = recipe_config(path, steps, "unused")
    r, a, t = cfg.rollout, cfg.algorithm, cfg.train
    examples = step_prompts(cfg, steps)
    dataset = Dataset.from_list([{**ex, "prompt": render_prompt(ex["prompt"], cfg.data.template,
                                                                cfg.data.system_prompt)} for ex in examples])
    tokenizer = load_tokenizer(path)
    rewards = [(get_reward(name), float(w)) for name, w in cfg.rewards.items()]
    with tempfile.TemporaryDirectory(prefix="bench_trl_") as out:
        args = GRPOConfig(
            output_dir=out, use_cpu=True, bf16=False, fp16=False, report_to="none", save_strategy="no",
            eval_strategy="no", logging_steps=1, disable_tqdm=True, log_completions=False, seed=t.seed,
            max_steps=steps, per_device_train_batch_size=t.micro_batch_size,
            gradient_accumulation_steps=t.batch_size // t.micro_batch_size,  # steps_per_generation defaults to it
            num_generations=r.group_size, max_completion_length=r.max_completion_length,
            temperature=r.temperature, top_p=r.top_p, top_k=r.top_k, shuffle_dataset=False,
            beta=a.beta, num_iterations=a.num_iterations, loss_type=a.loss, epsilon=a.epsilon,
            epsilon_high=a.epsilon_high, scale_rewards=a.advantage,
            mask_truncated_completions=a.mask_truncated_completions, reward_weights=[w for _, w in rewards],
            learning_rate=t.learning_rate, lr_scheduler_type="constant_with_warmup" if t.lr_scheduler == "constant"
            else t.lr_scheduler, warmup_steps=t.warmup_steps, max_grad_norm=t.max_grad_norm,
            weight_decay=t.weight_decay, adam_beta1=t.adam_beta1, adam_beta2=t.adam_beta2, optim="adamw_torch",
            gradient_checkpointing=False, dataloader_num_workers=0)
        trainer = GRPOTrainer(model=load_causal_lm(path, cfg.model.dtype), processing_class=tokenizer,
                              reward_funcs=[f for f, _ in rewards], args=args, train_dataset=dataset)
        ours_ids = prompt_token_ids(tokenizer, examples[0]["prompt"], cfg.data.template, cfg.data.system_prompt)
        trl_ids = trainer.processing_class(text=[dataset[0]["prompt"]])["input_ids"][0]
        gens: list[dict] = []
        gen_and_score, generate = trainer._generate_and_score_completions, trainer._generate

        def gen_and_score_timed(inputs):
            t0 = time.perf_counter()
            result = gen_and_score(inputs)
            gens.append({"step": trainer.state.global_step + 1, "rows": len(inputs),
                         "prompts": len({x["prompt"] for x in inputs}),
                         "completions": int(result["completion_ids"].shape[0]),
                         "completion_len": float(result["completion_mask"].sum(1).float().mean()),
                         "gen_and_score_s": time.perf_counter() - t0, "generate_s": gens_t.pop()})
            return result

        gens_t: list[float] = []

        def generate_timed(prompts):
            t0 = time.perf_counter()
            result = generate(prompts)
            gens_t.append(time.perf_counter() - t0)
            return result
        trainer._generate_and_score_completions, trainer._generate = gen_and_score_timed, generate_timed

        class StepTimer(TrainerCallback):
            def __init__(self):
                self.times, self.t0 = [], None

            def on_step_begin(self, args, state, control, **kw):
                self.t0 = time.perf_counter()

            def on_step_end(self, args, state, control, **kw):
                self.times.append(time.perf_counter() - self.t0)
        timer = StepTimer()
        trainer.add_callback(timer)
        trainer.train()
    per_step = {g["step"]: g for g in gens}
    if sorted(per_step) != list(range(1, steps + 1)) or len(gens) != steps:
        raise RuntimeError(f"expected one generation per optimizer step, got {[g['step'] for g in gens]}")
    return {"side": "trl", "workload": workload, "model": path, "step_s": timer.times,
            "generate_s": [per_step[s]["generate_s"] for s in range(1, steps + 1)],
            "score_s": [per_step[s]["gen_and_score_s"] - per_step[s]["generate_s"] for s in range(1, steps + 1)],
            "train_s": [st - per_step[s + 1]["gen_and_score_s"] for s, st in enumerate(timer.times)],
            "completion_len": [per_step[s]["completion_len"] for s in range(1, steps + 1)],
            "completions_per_step": [per_step[s]["completions"] for s in range(1, steps + 1)],
            "prompts_per_step": [per_step[s]["prompts"] for s in range(1, steps + 1)],
            "prompt_ids_match": list(ours_ids) == list(trl_ids), "torch_threads": torch.get_num_threads()}


def run_child(side: str, workload: str, steps: int, timeout_s: float, cprofile: str | None = None,
              overrides: list[str] | None = None, threads: int = 0) -> dict:
    cmd = [sys.executable, "-m", "rl.bench.trl_side_by_side", "--child", side, "--workload", workload,
           "--steps", str(steps)] + (["--cprofile", cprofile] if cprofile else [])
    cmd += [f"--ours-override={o}" for o in overrides or []]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)} if threads else None
    load_before, t0 = os.getloadavg()[0], time.time()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, env=env)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith('{"side"')]
    if proc.returncode != 0 or not lines:
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-15:])
        raise RuntimeError(f"{side}/{workload} child failed (exit {proc.returncode}):\n{tail}")
    result = json.loads(lines[-1])
    result.update(wall_s=round(time.time() - t0, 1), load_before=load_before, load_after=os.getloadavg()[0])
    return result


def _med(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


OURS_SIDES = ("ours", "ours+")  # the default recipe; the recipe with the user's --ours-override


def summarize(runs: list[dict]) -> dict:
    """Per workload and side: per-round medians of steps 2..N, their median and spread; TRL over each ours side
    (`trl_over_ours`, `trl_over_ours+`: ratio of the medians; `paired_ratios`, `paired_ratios+`: per round, TRL's run
    over that round's ours run, which cancels slow drifts in load).

    Example: ours rounds 0.2 and 0.3, TRL 0.4 and 0.3 -> medians 0.25 and 0.35, trl_over_ours 1.4, paired 2.0, 1.0.
    """
    out: dict = {}
    for run in runs:
        side = out.setdefault(run["workload"], {}).setdefault(run["side"], {"rounds": [], "generate_s": [],
                                                                            "score_s": [], "train_s": [],
                                                                            "completion_len": []})
        side["overrides"] = run.get("overrides", [])
        side["rounds"].append(_med(run["step_s"][1:]))
        for k in ("generate_s", "score_s", "train_s", "completion_len"):
            side[k].extend(run[k][1:])
    for workload, sides in out.items():
        for s in sides.values():
            s["median"], s["spread"] = _med(s["rounds"]), max(s["rounds"]) - min(s["rounds"])
            for k in ("generate_s", "score_s", "train_s", "completion_len"):
                s[k] = _med(s[k])
        for name in OURS_SIDES:
            if name in sides and "trl" in sides:
                suffix = name[len("ours"):]
                sides["trl_over_ours" + suffix] = sides["trl"]["median"] / sides[name]["median"]
                sides["paired_ratios" + suffix] = [t / o for o, t in zip(sides[name]["rounds"],
                                                                         sides["trl"]["rounds"])]
    return out


def side_label(name: str, side: dict) -> str:
    """'ours', 'TRL', or 'ours (k=v, ...)' for the run with the user's overrides."""
    return {"trl": "TRL", "ours": "ours"}.get(name) or f"ours ({', '.join(side['overrides'])})"


def table(summary: dict, steps: int) -> str:
    rows = [f"| workload | side | s/step per round (median of steps 2..{steps}) | median | spread | generate s "
            "| score s | train s | mean completion tokens |", "|---|---|---|---:|---:|---:|---:|---:|---:|"]
    for workload, sides in summary.items():
        for name in (*OURS_SIDES, "trl"):
            if name not in sides:
                continue
            s = sides[name]
            rounds = ", ".join(f"{x:.2f}" for x in s["rounds"])
            rows.append(f"| {workload} | {side_label(name, s)} | {rounds} | {s['median']:.2f} "
                        f"| {s['spread']:.2f} | {s['generate_s']:.2f} | {s['score_s']:.2f} | {s['train_s']:.2f} "
                        f"| {s['completion_len']:.1f} |")
        for name in OURS_SIDES:
            suffix = name[len("ours"):]
            if "trl_over_ours" + suffix in sides:
                paired = ", ".join(f"{x:.2f}" for x in sides["paired_ratios" + suffix])
                rows.append(f"| {workload} | **TRL / {side_label(name, sides[name])}** | {paired} (per round) "
                            f"| **{sides['trl_over_ours' + suffix]:.2f}x** | | | | | |")
    return "\n".join(rows)


def print_profile(path: str, top: int = 25) -> None:
    import pstats
    for key in ("cumulative", "tottime"):
        print(f"\n[profile] ours, steps 2..N, top {top} by {key}:")
        pstats.Stats(path).sort_stats(key).print_stats(top)


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workload", choices=[*WORKLOADS, "all"], default="all")
    ap.add_argument("--steps", type=int, default=10, help="optimizer steps per run (step 1 is not counted)")
    ap.add_argument("--rounds", type=int, default=3, help="alternating rounds (ours, TRL) per workload")
    ap.add_argument("--timeout", type=float, default=3600, help="seconds per run")
    ap.add_argument("--json", default=None, help="also write every run and the summary to this file")
    ap.add_argument("--profile", action="store_true", help="then one more run of ours under cProfile")
    ap.add_argument("--ours-override", action="append", default=[], metavar="KEY=VALUE",
                    help="a recipe override for an extra ours run in every round, reported as its own row "
                         "(repeatable), e.g. train.max_tokens_per_micro_batch=4096")
    ap.add_argument("--threads", type=int, default=0,
                    help="torch threads of both sides' runs (OMP_NUM_THREADS); 0: the default (one per core)")
    ap.add_argument("--child", choices=["ours", "trl"], help=argparse.SUPPRESS)
    ap.add_argument("--cprofile", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.steps < 2:
        ap.error("--steps must be at least 2 (step 1 is warm-up)")
    workloads = WORKLOADS if args.workload == "all" else (args.workload,)
    if args.ours_override:
        check_user_overrides(args.ours_override)
    if args.child:
        result = (run_ours(workloads[0], args.steps, args.cprofile, args.ours_override) if args.child == "ours"
                  else run_trl(workloads[0], args.steps))
        print(json.dumps(result), flush=True)
        return result
    for w in workloads:
        model_path(w)  # build once, before the timed children
    runs = []
    for w in workloads:
        for rnd in range(1, args.rounds + 1):
            order = [("ours", [])] + ([("ours", args.ours_override)] if args.ours_override else []) + [("trl", [])]
            for side, overrides in order:  # TRL last: both ours runs are paired with the same TRL run
                run = run_child(side, w, args.steps, args.timeout, overrides=overrides, threads=args.threads)
                run["round"] = rnd
                runs.append(run)
                steps_s = ", ".join(f"{x:.2f}" for x in run["step_s"])
                print(f"[bench] {w} round {rnd} {run['side']}: s/step [{steps_s}], completions/step "
                      f"{sorted(set(run['completions_per_step']))}, wall {run['wall_s']}s, "
                      f"load {run['load_before']:.1f}->{run['load_after']:.1f}, torch threads {run['torch_threads']}"
                      + (f", prompt ids match ours: {run['prompt_ids_match']}" if side == "trl" else ""), flush=True)
    summary = summarize(runs)
    print(f"\n{table(summary, args.steps)}\n\nload average (1 min) now: {os.getloadavg()[0]:.1f} on "
          f"{os.cpu_count()} CPUs")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"runs": runs, "summary": summary, "argv": sys.argv[1:],
                       "date": time.strftime("%Y-%m-%d %H:%M")}, f, indent=1)
    if args.profile:
        prof = os.path.join(tempfile.mkdtemp(prefix="bench_prof_"), "ours.pstats")
        run_child("ours", workloads[0], args.steps, args.timeout, cprofile=prof, threads=args.threads)
        print_profile(prof)
    return summary


if __name__ == "__main__":
    main()
