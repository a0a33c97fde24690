"""The whole DeepSeek-R1 recipe in miniature, on CPU: base -> R1-Zero -> cold-start SFT -> R1 -> distillation ->
rejection-sampling SFT -> RL for all scenarios -> export -> evaluation, with a results table in the style of the R1
paper.

    python -m rl.pipeline                      # runs/demo/ ; reruns reuse every finished stage
    python -m rl.pipeline --run-dir runs/x --k 4

Stages (recipes in recipes/tiny/, each run with its own entry point, outputs under the run dir):

    r1_zero/      rl/grpo.py  r1_zero.yaml         GRPO straight on the tiny base model
    cold_start/   rl/sft.py   cold_start_sft.yaml  SFT of the base on 1000 careful, strictly formatted traces
    r1/           rl/grpo.py  r1.yaml              GRPO from cold_start/model
    distill/      rl/distill.py distill.yaml       r1 writes traces, rejection sampling, SFT of tiny-student
    rs_sft/       rl/sft.py   r1_rs_sft.yaml       R1 stage 3: the base SFT'd on distill's kept traces + the general
                                                   world's preferred replies (data.mix; rl/pipeline_late.py)
    all_scenarios/ rl/grpo.py r1_all_scenarios.yaml  R1 stage 4 from rs_sft: rules for arithmetic rows, the tiny reward
                                                   model for general rows; its row adds the held-out RM score
    student_grpo/ rl/grpo.py  r1_zero.yaml         R1-Zero's recipe on tiny-student, same steps (R1 Table 6:
                                                   distilling the big model's reasoning beats RL on the small one)
    r1_zero_code/ rl/grpo.py  r1_zero_code.yaml    R1-Zero on the code world (sandboxed tests): the chains grow
                                                   longer as it learns (R1 Fig. 3), unlike arithmetic's
    export/student/  rl/export.py                  the distilled student as a clean HF model dir (checked)
    eval/<model>.json, results.json, results.md, plots/*.png

Each stage starts with "stage k of 13" (the three tiny models' builds count as stages: cached or shipped, they take
a second), its own estimate and the whole rest's, from the usual seconds (PRIOR_S) times the pace this machine has
shown on the stages run so far. A stage is skipped when its `.done` marker exists; a stage stopped half way resumes (GRPO and SFT from their latest
checkpoint, distillation from its last finished chunk). Each model is evaluated on the same 200 procedural test
problems: greedy accuracy, pass@1 (mean over k samples at T=0.6, top_p=0.95), maj@k, strict-format rate, mean length.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import time
from pathlib import Path
from typing import Any, Callable

RECIPES = Path(__file__).resolve().parents[1] / "recipes" / "tiny"


# The stages in the order they run, with rough usual seconds on 2 quiet cores (PRIOR_S: an eighth of what a run on a
# busy machine took, 2026-12-06: 498, 267, 426, 820, 195 s for r1_zero .. student_grpo; the code stage, export and
# evaluation are guesses). Only the first estimate rests on them: Progress paces the rest by the machine. A build stage is
# one of the tiny models, made on first use (rl/tiny/build.py) and cached under $R1_CACHE afterwards.
STAGES = ("build tiny", "r1_zero", "cold_start", "r1", "build tiny-student", "distill", "rs_sft", "all_scenarios",
          "student_grpo", "build tiny-code", "r1_zero_code", "export", "evaluation")
PRIOR_S = {"build tiny": 300, "r1_zero": 60, "cold_start": 35, "r1": 55, "build tiny-student": 180, "distill": 100,
           "rs_sft": 35, "all_scenarios": 45, "student_grpo": 25, "build tiny-code": 200, "r1_zero_code": 90,
           "export": 5, "evaluation": 140}


def about(seconds: float) -> str:
    """A duration for a person: `about(42)` -> 'about 40 s', `about(150)` -> 'about 3 min' (to the half minute
    below 10 min: `about(320)` -> 'about 5.5 min')."""
    if seconds < 90:
        return f"about {max(10, round(seconds, -1)):.0f} s"
    minutes = round(seconds / 30) / 2 if seconds < 600 else round(seconds / 60)
    return f"about {minutes:g} min"


def stage_line(k: int, n: int, name: str, prior_s: float, left_prior_s: float, speed: float) -> str:
    """The line a stage starts with: its number of all, its own estimate and the whole rest of the run's, both the
    usual seconds (PRIOR_S) times `speed`, this machine's pace so far (measured / usual over the stages run):

    >>> stage_line(3, 13, "cold_start", 30, 600, 1.5)
    '[pipeline] stage 3 of 13: cold_start (about 40 s; this and the 10 stages after it: about 15 min)'
    """
    rest = f"this and the {n - k} stage{'s' if n - k != 1 else ''} after it" if n > k else "the last stage"
    return f"[pipeline] stage {k} of {n}: {name} ({about(prior_s * speed)}; {rest}: {about(left_prior_s * speed)})"


class Progress:
    """Numbers the stages (k of N) and estimates what is left. The pace is measured: the seconds the stages run so
    far took over their usual seconds (1.0 until one has run; reused and cached stages do not count)."""

    def __init__(self, log: Callable[[str], None], stages=STAGES, prior_s=PRIOR_S):
        self.log, self.stages, self.prior_s = log, list(stages), dict(prior_s)
        self.ran: list[tuple[float, float]] = []  # (usual, measured) seconds of the stages run here

    @property
    def speed(self) -> float:
        usual = sum(u for u, _ in self.ran)
        return sum(m for _, m in self.ran) / usual if usual else 1.0

    def start(self, name: str) -> None:
        k = self.stages.index(name) + 1
        left = sum(self.prior_s[s] for s in self.stages[k - 1:])
        self.log(stage_line(k, len(self.stages), name, self.prior_s[name], left, self.speed))

    def finished(self, name: str, seconds: float) -> None:
        self.ran.append((self.prior_s[name], seconds))


def stage(run: Path, name: str, fn: Callable[[], dict], log: Callable[[str], None],
          progress: Progress | None = None) -> dict:
    """Run `fn` unless run/name/.done exists; the marker (written atomically) holds fn's JSON-able summary."""
    if progress is not None:
        progress.start(name)
    marker = run / name / ".done"
    if marker.is_file():
        log(f"[pipeline] {name}: done, reusing {run / name}")
        return json.loads(marker.read_text())
    log(f"[pipeline] {name}: running")
    t0 = time.time()
    summary = {**fn(), "seconds": round(time.time() - t0, 1)}
    marker.parent.mkdir(parents=True, exist_ok=True)
    tmp = marker.with_name(".done.tmp")
    tmp.write_text(json.dumps(summary, indent=1, default=str))
    os.replace(tmp, marker)
    if progress is not None:
        progress.finished(name, summary["seconds"])
    log(f"[pipeline] {name}: finished in {summary['seconds']:.0f}s")
    return summary


MODEL_NAMES = ("tiny", "tiny-student", "tiny-code")
QUICK_S = 5  # a build stage whose model is cached or shipped: a copy at most


def model_states() -> dict[str, str]:
    """How each tiny model will be had: `cached`, `shipped` (rl/tiny/shipped/ has its spec; the hashes are checked
    when it is installed) or `build`."""
    from rl.tiny.build import NAMED_SPECS
    from rl.tiny.shipped import read_manifest
    from rl.tiny.sources import is_cached
    shipped = {e.get("key") for e in read_manifest().values()}
    return {n: "cached" if is_cached(n) else "shipped" if NAMED_SPECS[n].key() in shipped else "build"
            for n in MODEL_NAMES}


def build_stage(name: str, progress: Progress, state: str) -> str:
    """The path of tiny model `name`: cached, installed from its shipped copy, or built now (only a build is timed
    into the pace: a copy says nothing about this machine's speed)."""
    from rl.tiny.sources import resolve_model_path
    progress.start(f"build {name}")
    t0 = time.time()
    path = resolve_model_path(name)
    if state == "build" or (state == "shipped" and time.time() - t0 > 60):  # a stale shipped copy: it was built
        progress.finished(f"build {name}", time.time() - t0)
    progress.log(f"[pipeline] build {name}: {'cached' if state == 'cached' else f'{state}, {time.time() - t0:.0f}s'}")
    return path


def same_tokenizer(a: str, b: str) -> bool:
    """Same vocabulary, merges and special tokens (tokenizer.json model section and added tokens)."""
    ta, tb = (json.loads((Path(p) / "tokenizer.json").read_text()) for p in (a, b))
    return ta["model"] == tb["model"] and ta["added_tokens"] == tb["added_tokens"]


def evaluate_one(name: str, path: str, run: Path, k: int, max_tokens: int, log) -> dict[str, Any]:
    """Greedy + sampled metrics on the procedural test set, cached in run/eval/<name>.json."""
    cache = run / "eval" / f"{name}.json"
    if cache.is_file():
        return json.loads(cache.read_text())
    from rl.evaluate import evaluate_model
    t0 = time.time()
    metrics = evaluate_model(path, ["arithmetic"], k=k, max_tokens=max_tokens, limit=200)["arithmetic"]
    metrics["params"] = count_params(path)
    metrics["model_dir"] = path
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_text(json.dumps(metrics, indent=1))
    log(f"[pipeline] eval {name}: pass@1 {metrics['sampled/pass@1']:.3f}, greedy {metrics['eval/accuracy']:.3f} "
        f"({time.time() - t0:.0f}s)")
    return metrics


def count_params(path: str) -> int:
    from safetensors import safe_open

    total = 0
    for shard in Path(path).glob("*.safetensors"):
        with safe_open(str(shard), "pt") as f:
            for key in f.keys():
                total += math.prod(f.get_slice(key).get_shape())
    return total


def run_pipeline(run_dir: str = "runs/demo", k: int = 4, max_tokens: int = 40, log=print) -> dict[str, Any]:
    from rl.train.checkpoint import latest_checkpoint

    run = Path(run_dir)
    run.mkdir(parents=True, exist_ok=True)
    t_start = time.time()
    states = model_states()
    progress = Progress(log, prior_s={**PRIOR_S, **{f"build {n}": QUICK_S for n, st in states.items() if st != "build"}})
    base = build_stage("tiny", progress, states["tiny"])

    def restart(out: Path) -> list[str]:
        """A stage that is not done resumes from its checkpoint; with none (stopped before its first), its partial
        logs are the pipeline's own leftovers and are replaced (the stages refuse to mix runs otherwise)."""
        return [] if latest_checkpoint(out) is not None else ["overwrite=true"]

    def grpo(recipe: str, out: Path, *extra: str) -> dict:
        from rl.grpo import main as grpo_main
        res = grpo_main([str(RECIPES / recipe), f"output_dir={out}", "resume=auto", *restart(out), *extra])
        return {"checkpoint": str(latest_checkpoint(out)), "first_eval": res["first_eval"],
                "last_eval": res["last_eval"]}

    r1_zero = stage(run, "r1_zero", lambda: grpo("r1_zero.yaml", run / "r1_zero"), log, progress)

    def cold_start() -> dict:
        from rl.sft import main as sft_main
        res = sft_main([str(RECIPES / "cold_start_sft.yaml"), f"output_dir={run / 'cold_start'}",
                        *restart(run / "cold_start")])
        return {"model_dir": res["model_dir"], "last_eval": res.get("last_eval")}
    cold = stage(run, "cold_start", cold_start, log, progress)
    r1 = stage(run, "r1", lambda: grpo("r1.yaml", run / "r1", f"model.name_or_path={cold['model_dir']}"), log,
               progress)

    student_base = build_stage("tiny-student", progress, states["tiny-student"])
    if not same_tokenizer(base, student_base):
        raise RuntimeError(f"the student {student_base} does not share the base tokenizer: distillation needs it")

    def distill() -> dict:
        from rl.distill import main as distill_main
        res = distill_main([str(RECIPES / "distill.yaml"), f"output_dir={run / 'distill'}",
                            f"teacher.name_or_path={r1['checkpoint']}", "student.name_or_path=tiny-student"])
        return {"traces": res["traces"], "stats": res["stats"], "student": res["student"]["model_dir"]}
    dist = stage(run, "distill", distill, log, progress)

    # R1's stages 3 and 4 (rl/pipeline_late.py): the base SFT'd on the kept R1 traces + general replies, then RL
    # for all scenarios (rules for arithmetic, the tiny reward model for general prompts)
    from rl import pipeline_late as late
    rs = stage(run, "rs_sft", lambda: late.rs_sft(run, base, dist["traces"]), log, progress)
    alls = stage(run, "all_scenarios", lambda: late.all_scenarios(run, rs["model_dir"], grpo), log, progress)

    student_grpo = stage(run, "student_grpo",
                         lambda: grpo("r1_zero.yaml", run / "student_grpo", f"model.name_or_path={student_base}"), log,
                         progress)

    build_stage("tiny-code", progress, states["tiny-code"])
    r1_zero_code = stage(run, "r1_zero_code", lambda: grpo("r1_zero_code.yaml", run / "r1_zero_code"), log, progress)

    def export_student() -> dict:
        from rl.export import export
        return export(dist["student"], run / "export" / "student", overwrite=True)
    exported = stage(run, "export", export_student, log, progress)
    progress.start("evaluation")
    t_eval = time.time()

    models = {"base (tiny)": base, "R1-Zero": r1_zero["checkpoint"], "cold-start SFT": cold["model_dir"],
              "R1 (cold start + GRPO)": r1["checkpoint"],
              "rejection-sampling SFT (base on R1 traces + general replies)": rs["model_dir"],
              "all-scenario RL (rules + reward model)": alls["checkpoint"], "student before distillation": student_base,
              "student + GRPO (R1-Zero recipe)": student_grpo["checkpoint"],
              "student distilled (export)": exported["out_dir"]}
    results = {name: evaluate_one(name.split(" (")[0].replace(" ", "_"), path, run, k, max_tokens, log)
               for name, path in models.items()}
    rs_row = results["rejection-sampling SFT (base on R1 traces + general replies)"]
    alls_row = results["all-scenario RL (rules + reward model)"]
    rs_row.update(late.general_metrics(alls["general_before"]))  # the all-scenario stage's start is stage 3's model
    alls_row.update(late.general_metrics(alls["general_after"]))
    progress.finished("evaluation", time.time() - t_eval)
    checks = {
        "student_gain_pass@1": results["student distilled (export)"]["sampled/pass@1"]
        - results["student before distillation"]["sampled/pass@1"],
        "r1_minus_r1_zero_pass@1": results["R1 (cold start + GRPO)"]["sampled/pass@1"]
        - results["R1-Zero"]["sampled/pass@1"],
    }
    checks["distilled_minus_student_grpo_pass@1"] = (results["student distilled (export)"]["sampled/pass@1"]
                                                     - results["student + GRPO (R1-Zero recipe)"]["sampled/pass@1"])
    checks["r1_minus_cold_start_pass@1"] = (results["R1 (cold start + GRPO)"]["sampled/pass@1"]
                                            - results["cold-start SFT"]["sampled/pass@1"])
    checks["student_gain_ok"] = checks["student_gain_pass@1"] >= 0.20
    checks["r1_within_5_points_of_r1_zero_ok"] = checks["r1_minus_r1_zero_pass@1"] >= -0.05  # R1: a small cost, if any
    checks["distilled_beats_student_grpo_ok"] = checks["distilled_minus_student_grpo_pass@1"] > 0.0
    checks["r1_zero_mixed_language"] = results["R1-Zero"]["sampled/mixed_language_frac"]
    checks["r1_mixed_language"] = results["R1 (cold start + GRPO)"]["sampled/mixed_language_frac"]
    checks["r1_mixes_under_a_fifth_of_r1_zero_ok"] = checks["r1_mixed_language"] < checks["r1_zero_mixed_language"] / 5
    checks.update(late.late_checks(rs_row, results["R1 (cold start + GRPO)"], alls_row))
    checks["rm_score_up_ok"] = checks["rm_score_gain"] > 0.0
    checks["polite_frac_change"] = alls_row["general/polite_frac"] - rs_row["general/polite_frac"]
    checks["all_scenarios_within_5_points_ok"] = checks["all_scenarios_minus_rs_sft_pass@1"] >= -0.05
    from rl.distill import rejection_summary
    from rl.evaluate import markdown_table, write_report
    findings = findings_lines(results, r1_zero, r1_zero_code, dist["stats"]) + [late.late_finding(rs, alls, rs_row,
                                                                                                  alls_row)]
    write_report(results, run, k, notes="\n".join(findings) + "\n\n" + rejection_summary(dist["stats"]))
    (run / "checks.json").write_text(json.dumps({**checks, "distill": dist["stats"], "export": exported,
                                                 "wall_s": round(time.time() - t_start, 1)}, indent=1, default=str))
    from rl.train.report import plot_run
    (run / "plots").mkdir(exist_ok=True)
    plots = [plot_run(run / name, run / "plots" / f"{name}.png", title)
             for name, title in (("r1_zero", "R1-Zero"), ("r1", "R1"), ("r1_zero_code", "R1-Zero on code"))]
    log("\n" + markdown_table(results, k) + "\n" + "\n".join(findings))
    log(f"[pipeline] distilled student vs before: {100 * checks['student_gain_pass@1']:+.1f} pass@1 points; "
        f"vs the student trained by GRPO: {100 * checks['distilled_minus_student_grpo_pass@1']:+.1f}; "
        f"R1 vs R1-Zero: {100 * checks['r1_minus_r1_zero_pass@1']:+.1f}; R1 vs its cold start: "
        f"{100 * checks['r1_minus_cold_start_pass@1']:+.1f} (figures vary from machine to machine); plots: "
        f"{', '.join(str(p) for p in plots if p)}; {time.time() - t_start:.0f}s")
    return {"results": results, "checks": checks, "run_dir": str(run)}


def rejection_line(stats: dict) -> str:
    """Finding 3's numbers in one line (stdout shows no results.md table):

    >>> rejection_line({"traces": 4000, "kept": 930, "decontaminated_prompts": 0,
    ...                 "dropped": {"wrong_or_unformatted": 1057, "duplicate": 2013}})
    'of 4,000 traces 930 kept; dropped: 1,057 wrong or unformatted, 2,013 duplicate; 0 prompts removed by decontamination (table in results.md).'
    """
    dropped = ", ".join(f"{n:,} {reason.replace('_', ' ')}" for reason, n in stats.get("dropped", {}).items())
    return (f"of {stats['traces']:,} traces {stats['kept']:,} kept; dropped: {dropped or 'none'}; "
            f"{stats.get('decontaminated_prompts', 0):,} prompts removed by decontamination (table in results.md).")


def findings_lines(results: dict, r1_zero: dict, r1_zero_code: dict, stats: dict | None = None) -> list[str]:
    """The R1 paper's findings as they stand in this run, one line each with its numbers (for results.md and
    stdout); `stats`: the distillation's filter counts."""
    def pts(x: float) -> str:
        return f"{100 * x:.1f}"

    a0, a1 = r1_zero["first_eval"], r1_zero["last_eval"]
    c0, c1 = r1_zero_code["first_eval"], r1_zero_code["last_eval"]
    grpo_s, dist_s = results["student + GRPO (R1-Zero recipe)"], results["student distilled (export)"]
    base, zero, r1 = results["base (tiny)"], results["R1-Zero"], results["R1 (cold start + GRPO)"]
    return [
        "## Findings",
        "",
        f"1. R1-Zero thinks longer as it learns (code world, r1_zero_code/): held-out pass rate "
        f"{pts(c0['eval/accuracy'])} -> {pts(c1['eval/accuracy'])}, mean completion length "
        f"{c0['eval/completion_len']:.1f} -> {c1['eval/completion_len']:.1f} tokens "
        f"(x{c1['eval/completion_len'] / max(c0['eval/completion_len'], 1e-9):.2f}), completions that check and redo "
        f"{pts(c0.get('eval/check_redo_frac', 0.0))}% -> {pts(c1.get('eval/check_redo_frac', 0.0))}% "
        f"(plots/r1_zero_code.png). In the arithmetic world, where a longer chain is not more often right, the "
        f"length stays {a0['eval/completion_len']:.1f} -> {a1['eval/completion_len']:.1f}.",
        f"2. R1-Zero mixes languages, the language-consistency reward fixes it: chains with Chinese words "
        f"{pts(zero['sampled/mixed_language_frac'])}% for R1-Zero, {pts(r1['sampled/mixed_language_frac'])}% for R1 "
        f"(cold start + GRPO with language_consistency), at pass@1 {pts(zero['sampled/pass@1'])} vs "
        f"{pts(r1['sampled/pass@1'])}; the base: {pts(base['sampled/mixed_language_frac'])}%.",
        f"3. Rejection sampling keeps only clean, correct traces: {rejection_line(stats)}" if stats else
        "3. Rejection sampling keeps only clean, correct traces (no distillation counts in this run).",
        f"4. Distilling R1 beats RL on the small model: student distilled {pts(dist_s['sampled/pass@1'])} vs student + "
        f"GRPO {pts(grpo_s['sampled/pass@1'])} pass@1.",
    ]


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description="The miniature R1 pipeline on CPU.")
    ap.add_argument("--run-dir", default="runs/demo")
    ap.add_argument("--k", type=int, default=4, help="samples per problem for pass@1 / maj@k")
    ap.add_argument("--max-tokens", type=int, default=40)
    a = ap.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    return run_pipeline(a.run_dir, a.k, a.max_tokens)


if __name__ == "__main__":
    main()
