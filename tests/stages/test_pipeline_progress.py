"""The pipeline's progress lines: "stage k of N", each stage's estimate and the whole rest's (issue 30)."""
import pytest

from rl.pipeline import PRIOR_S, STAGES, Progress, about, stage_line


@pytest.mark.parametrize("seconds, expected", [
    (4, "about 10 s"), (42, "about 40 s"), (89, "about 90 s"),
    (100, "about 1.5 min"),   # 100 / 30 = 3.3 -> 3 half minutes
    (150, "about 2.5 min"), (320, "about 5.5 min"),  # 320 / 30 = 10.7 -> 11 half minutes
    (900, "about 15 min"), (1234, "about 21 min"),   # from 10 min on, whole minutes: 1234 / 60 = 20.6 -> 21
])
def test_about(seconds, expected):
    assert about(seconds) == expected


@pytest.mark.parametrize("k, n, prior, left, speed, expected", [
    (1, 11, 300, 1185, 1.0, "[pipeline] stage 1 of 11: build tiny (about 5 min; this and the 10 stages after it: "
                            "about 20 min)"),  # 1185 s = 19.75 min -> 20
    (10, 11, 5, 125, 2.0, "[pipeline] stage 10 of 11: build tiny (about 10 s; this and the 1 stage after it: "
                          "about 4 min)"),     # 5 x 2 = 10 s; 125 x 2 = 250 s = 8.3 half minutes -> 4 min
    (11, 11, 120, 120, 0.5, "[pipeline] stage 11 of 11: build tiny (about 60 s; the last stage: about 60 s)"),
])
def test_stage_line(k, n, prior, left, speed, expected):
    assert stage_line(k, n, "build tiny", prior, left, speed) == expected


def test_progress_measures_this_machines_pace():
    lines = []
    p = Progress(lines.append, stages=("a", "b", "c"), prior_s={"a": 10, "b": 20, "c": 30})
    p.start("a")                  # nothing run yet: the usual seconds (pace 1.0); 10 + 20 + 30 = 60
    p.finished("a", 20.0)         # twice as slow as usual: pace 2.0
    p.start("b")                  # b: 20 x 2 = 40 s; b + c: 50 x 2 = 100 s = about 1.5 min
    p.finished("b", 20.0)         # pace (20 + 20) / (10 + 20) = 1.33
    p.start("c")                  # 30 x 1.33 = 40 s
    assert lines == ["[pipeline] stage 1 of 3: a (about 10 s; this and the 2 stages after it: about 60 s)",
                     "[pipeline] stage 2 of 3: b (about 40 s; this and the 1 stage after it: about 1.5 min)",
                     "[pipeline] stage 3 of 3: c (about 40 s; the last stage: about 40 s)"]


def test_every_stage_has_an_estimate():
    assert set(STAGES) == set(PRIOR_S) and len(STAGES) == 13


def test_model_states_and_the_build_stages_estimates(tmp_path, monkeypatch):
    """A fresh cache: every shipped model is `shipped` (its build stage is a copy, estimated at QUICK_S seconds and
    left out of the pace); once installed it is `cached`."""
    from rl.pipeline import MODEL_NAMES, QUICK_S, build_stage, model_states
    from rl.tiny.shipped import read_manifest
    monkeypatch.setenv("R1_CACHE", str(tmp_path))
    shipped = set(read_manifest())
    assert model_states() == {n: "shipped" if n in shipped else "build" for n in MODEL_NAMES}
    lines = []
    p = Progress(lines.append, prior_s={**PRIOR_S, "build tiny": QUICK_S})
    path = build_stage("tiny", p, "shipped")
    assert (tmp_path / "tiny").is_dir() and str(path).startswith(str(tmp_path))
    assert p.ran == [] and lines[0].startswith("[pipeline] stage 1 of 13: build tiny (about 10 s;")
    assert lines[1].startswith("[pipeline] build tiny: shipped, ")
    assert model_states()["tiny"] == "cached"


def test_finding_3_states_its_numbers_on_stdout():
    """stdout carries the findings but not results.md's table: finding 3 states the counts itself."""
    from rl.pipeline import findings_lines
    ev = {"eval/accuracy": 0.5, "eval/completion_len": 20.0}
    m = {"sampled/mixed_language_frac": 0.0, "sampled/pass@1": 0.5}
    results = {k: m for k in ("student + GRPO (R1-Zero recipe)", "student distilled (export)", "base (tiny)",
                              "R1-Zero", "R1 (cold start + GRPO)")}
    run = {"first_eval": ev, "last_eval": ev}
    stats = {"traces": 4000, "kept": 930, "decontaminated_prompts": 0,
             "dropped": {"wrong_or_unformatted": 1057, "duplicate": 2013}}
    line = findings_lines(results, run, run, stats)[4]
    assert line == ("3. Rejection sampling keeps only clean, correct traces: of 4,000 traces 930 kept; dropped: "
                    "1,057 wrong or unformatted, 2,013 duplicate; 0 prompts removed by decontamination (table in "
                    "results.md).")
    assert "table below" not in " ".join(findings_lines(results, run, run, stats))
