"""The pipeline's stages 3 and 4 (rl/pipeline_late.py): stage 3's SFT command line, the two rows' extra columns in the
results table, and their checks. The stages themselves run in `python -m rl.pipeline` (figures in docs/r1_pipeline.md);
the stage-4 learning run is asserted in tests/e2e/test_all_scenarios_run.py."""
from pathlib import Path

from rl.evaluate import markdown_table
from rl.pipeline_late import RECIPES, general_metrics, late_checks, rs_sft_argv


def test_stage_3_fine_tunes_the_base_on_the_traces_mixed_with_the_general_replies(tmp_path):
    argv = rs_sft_argv(tmp_path, "/cache/tiny/base", "run/distill/traces.jsonl")
    assert argv[:4] == [str(RECIPES / "cold_start_sft.yaml"), "model.name_or_path=/cache/tiny/base",
                        "data.train=run/distill/traces.jsonl", f"output_dir={tmp_path / 'rs_sft' / 'student'}"]
    assert "overwrite=true" in argv  # no checkpoint there yet: a leftover is replaced
    # the SFT recipe these make reads the mix: the general replies under their own columns, all 216
    from rl.config.recipe import load_config
    from rl.config.sft import SFTConfig
    cfg = load_config(SFTConfig, argv[0], argv[1:])
    (mix,) = cfg.data.mix
    assert (mix.source, mix.prompt_column, mix.completion_column, mix.count) == (
        "procedural:general_replies", "instruction", "reply", 864)
    assert cfg.data.train == "run/distill/traces.jsonl" and cfg.train.num_epochs == 3


def test_the_results_table_shows_the_reward_model_columns_only_when_a_row_has_them():
    arith = {"eval/accuracy": 0.845, "sampled/pass@1": 0.8}
    plain = markdown_table({"R1": arith}, k=4)
    assert "RM score" not in plain
    table = markdown_table({"R1": arith, "all-scenario RL": {**arith, **general_metrics(
        {"rm_score": 4.9, "polite_frac": 0.86, "completion_len": 12.0})}}, k=4)
    head, _, r1, alls = table.splitlines()
    assert head.endswith("| mixed lang. | RM score (general) | polite (general) |")
    assert r1.endswith("| - | - |")              # R1 has no general score: a dash
    assert alls.endswith("| +4.90 | 86.0 |")      # the score raw and signed; polite as a percentage
    assert alls.startswith("| all-scenario RL | 84.5 | 80.0 |")


def test_late_checks_by_hand():
    rs = {"sampled/pass@1": 0.80, "general/rm_score": -2.0}
    alls = {"sampled/pass@1": 0.77, "general/rm_score": 3.5}
    c = late_checks(rs, {"sampled/pass@1": 0.85}, alls)
    # 0.80 - 0.85 = -0.05; 0.77 - 0.80 = -0.03; 3.5 - (-2.0) = 5.5
    assert abs(c["rs_sft_minus_r1_pass@1"] + 0.05) < 1e-9 and abs(c["all_scenarios_minus_rs_sft_pass@1"] + 0.03) < 1e-9
    assert c["rm_score_gain"] == 5.5
    assert Path(RECIPES / "r1_rs_sft.yaml").is_file()


def test_finding_5_names_reward_hacking_only_when_the_score_rises_as_politeness_falls():
    from rl.pipeline_late import late_finding
    ev = {"first_eval": {"eval/accuracy": 0.865}, "last_eval": {"eval/accuracy": 0.815}}
    rows = ({"sampled/pass@1": 0.839}, {"sampled/pass@1": 0.804})
    gamed = {**ev, "general_before": {"rm_score": 7.02, "polite_frac": 0.93},
             "general_after": {"rm_score": 7.47, "polite_frac": 0.19}}  # this machine's run: up 0.45, polite -74 pts
    line = late_finding({"trace_rows": 973}, gamed, *rows)
    assert line.startswith("5. Rejection-sampling SFT, then RL for all scenarios: the base fine-tuned on 973 kept R1 "
                           "traces + the general replies reaches pass@1 83.9; all-scenario RL moves the held-out "
                           "reward-model score of its general replies +7.02 -> +7.47 (polite 93% -> 19%) while "
                           "held-out arithmetic greedy accuracy goes 86.5 -> 81.5 (pass@1 80.4).")
    assert "games the reward model" in line
    honest = {**gamed, "general_after": {"rm_score": 7.47, "polite_frac": 0.90}}  # -3 points: within 10
    assert "games" not in late_finding({"trace_rows": 973}, honest, *rows)
    fell = {**gamed, "general_after": {"rm_score": 6.0, "polite_frac": 0.19}}  # the score fell: no gaming claim
    assert "games" not in late_finding({"trace_rows": 973}, fell, *rows)
