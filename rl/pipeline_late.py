"""R1's last two stages in the miniature pipeline (rl/pipeline.py), after R1's reasoning RL (R1 §2.3.3, §2.3.4):

    rs_sft/student/  rl/sft.py   r1_rs_sft.yaml           rejection-sampling SFT: the kept R1 traces of the distill
                                                          stage (same teacher, same filters) mixed with the general
                                                          world's preferred replies (data.mix), SFT of the *base*
    all_scenarios/   rl/grpo.py  r1_all_scenarios.yaml    RL for all scenarios from rs_sft: rules score arithmetic
                                                          rows, the tiny reward model scores general rows

Both rows of the results table carry, beside the arithmetic metrics, the held-out reward-model score of the greedy
replies to the 72 general test prompts (`general/rm_score`, the tiny reward model on the part after </think>) and
the share of them that are the polite reply (`general/polite_frac`).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

RECIPES = Path(__file__).resolve().parents[1] / "recipes" / "tiny"


def rs_sft_argv(run: Path, base: str, traces: str) -> list[str]:
    """rl/sft.py's command line for stage 3: recipes/tiny/r1_rs_sft.yaml's student (the base, its SFT recipe and
    overrides, data.mix included) on `traces`, into run/rs_sft/student."""
    from rl.config.distill import DistillConfig
    from rl.config.recipe import load_config
    from rl.distill import student_argv
    cfg = load_config(DistillConfig, RECIPES / "r1_rs_sft.yaml",
                      [f"output_dir={run / 'rs_sft'}", f"student.name_or_path={base}",
                       f"student.sft_recipe={RECIPES / 'cold_start_sft.yaml'}"])
    return student_argv(cfg, Path(traces))


def rs_sft(run: Path, base: str, traces: str) -> dict[str, Any]:
    """Stage 3: SFT of the base on the kept traces + the non-reasoning set; {"model_dir", "rows", "last_eval"}."""
    from rl.sft import main as sft_main
    res = sft_main(rs_sft_argv(run, base, traces))
    with open(traces, encoding="utf-8") as fh:
        trace_rows = sum(1 for line in fh if line.strip())
    return {"model_dir": res["model_dir"], "trace_rows": trace_rows, "last_eval": res.get("last_eval")}


# Stage 4's learning rate from stage 3's model. The recipe's 2e-4 is for tiny-chat, whose replies start rude; from a
# model whose replies are already 93% polite it gamed the reward model (score +7.02 -> +7.47, polite 93% -> 19%: "Thank
# you so much!" to every kind of prompt, near misses) and cost 5 arithmetic points; 5e-5 held both (+7.02 -> +6.99,
# polite 92%, arithmetic 86.5 -> 86.0). Measured here, seed 0 (docs/r1_pipeline.md).
ALL_SCENARIOS_LR = 5e-5


def all_scenarios(run: Path, policy: str, grpo: Callable[..., dict]) -> dict[str, Any]:
    """Stage 4: recipes/tiny/r1_all_scenarios.yaml from `policy` (the stage-3 model) at ALL_SCENARIOS_LR; the
    held-out general scores before and after. `grpo(recipe, out, *overrides)` is the pipeline's GRPO runner."""
    from rl.tiny.chat import held_out_general
    from rl.tiny.reward_model import build_tiny_reward_model
    rm = str(build_tiny_reward_model())
    res = grpo("r1_all_scenarios.yaml", run / "all_scenarios", f"model.name_or_path={policy}",
               f"train.learning_rate={ALL_SCENARIOS_LR}")
    return {**res, "reward_model": rm, "general_before": held_out_general(policy, rm),
            "general_after": held_out_general(res["checkpoint"], rm)}


def general_metrics(general: dict[str, float]) -> dict[str, float]:
    """held_out_general's figures as results-table metrics:

    >>> general_metrics({"rm_score": 4.9, "polite_frac": 0.86, "completion_len": 12.0})
    {'general/rm_score': 4.9, 'general/polite_frac': 0.86}
    """
    return {"general/rm_score": general["rm_score"], "general/polite_frac": general["polite_frac"]}


def late_checks(rs: dict, r1: dict, alls: dict) -> dict[str, Any]:
    """The two stages' numbers for checks.json from results-table rows (`rs`: rejection-sampling SFT, `r1`: R1,
    `alls`: all-scenario RL); pass@1 differences as fractions (0.05 = 5 points), the reward-model score's in its units.

    >>> c = late_checks({"sampled/pass@1": 0.5, "general/rm_score": 1.0}, {"sampled/pass@1": 0.6},
    ...                 {"sampled/pass@1": 0.48, "eval/accuracy": 0.5, "general/rm_score": 3.0})
    >>> round(c["rs_sft_minus_r1_pass@1"], 2), round(c["all_scenarios_minus_rs_sft_pass@1"], 2), c["rm_score_gain"]
    (-0.1, -0.02, 2.0)
    """
    return {"rs_sft_minus_r1_pass@1": rs["sampled/pass@1"] - r1["sampled/pass@1"],
            "all_scenarios_minus_rs_sft_pass@1": alls["sampled/pass@1"] - rs["sampled/pass@1"],
            "rm_score_gain": alls["general/rm_score"] - rs["general/rm_score"]}


def late_finding(rs_stage: dict, alls_stage: dict, rs: dict, alls: dict) -> str:
    """Finding 5 of results.md: what the two stages did, with their numbers; when the reward-model score rises while
    the share of polite replies falls by more than 10 points, it says the reward model is being gamed (R1 §2.3.4
    and docs/rewards.md: a learned reward invites hacking; watch more than its score)."""
    b, a = alls_stage["general_before"], alls_stage["general_after"]
    f, la = alls_stage["first_eval"], alls_stage["last_eval"]
    line = (f"5. Rejection-sampling SFT, then RL for all scenarios: the base fine-tuned on {rs_stage['trace_rows']:,} "
            f"kept R1 traces + the general replies reaches pass@1 {100 * rs['sampled/pass@1']:.1f}; all-scenario RL "
            f"moves the held-out reward-model score of its general replies {b['rm_score']:+.2f} -> "
            f"{a['rm_score']:+.2f} (polite {100 * b['polite_frac']:.0f}% -> {100 * a['polite_frac']:.0f}%) while "
            f"held-out arithmetic greedy accuracy goes {100 * f['eval/accuracy']:.1f} -> "
            f"{100 * la['eval/accuracy']:.1f} (pass@1 {100 * alls['sampled/pass@1']:.1f}).")
    if a["rm_score"] > b["rm_score"] and a["polite_frac"] < b["polite_frac"] - 0.10:
        line += (" The score rose while fewer replies are the polite one: the policy games the reward model "
                 "(near misses, one reply for every kind of prompt), as R1 warns of learned rewards.")
    return line
