"""rl/bench/trl_side_by_side.py's bookkeeping (no runs): per-round medians, TRL over each ours row (the default and
the one with the user's --ours-override), the labelled table rows, and the one-line refusal of bad overrides."""
import pytest

from rl.bench.trl_side_by_side import check_user_overrides, summarize, table


def run(side, rnd, step_s, overrides=()):
    """A child's result: step 1 (warm-up) is 9.0 and not counted; every split value 0.1, completions of 20 tokens."""
    n = len(step_s) + 1
    return {"side": side, "workload": "tiny", "round": rnd, "overrides": list(overrides), "step_s": [9.0, *step_s],
            "generate_s": [0.1] * n, "score_s": [0.1] * n, "train_s": [0.1] * n, "completion_len": [20.0] * n}


def test_summary_pairs_each_ours_row_with_the_same_trl_runs():
    """rounds (medians of steps 2..N): ours 0.2, 0.3; ours+ 0.1, 0.2; TRL 0.4, 0.3.
    medians 0.25, 0.15, 0.35 -> TRL/ours 1.4, TRL/ours+ 0.35/0.15 = 2.333; per round 0.4/0.2 = 2.0, 0.3/0.3 = 1.0 and
    0.4/0.1 = 4.0, 0.3/0.2 = 1.5."""
    opt = ["train.max_tokens_per_micro_batch=2048"]
    runs = [run("ours", 1, [0.1, 0.2, 0.3]), run("ours+", 1, [0.1, 0.1, 0.5], opt), run("trl", 1, [0.4, 0.4, 0.4]),
            run("ours", 2, [0.3, 0.3, 0.3]), run("ours+", 2, [0.2, 0.2, 0.2], opt), run("trl", 2, [0.3, 0.2, 0.4])]
    s = summarize(runs)["tiny"]
    assert s["ours"]["rounds"] == [0.2, 0.3] and s["ours+"]["rounds"] == [0.1, 0.2] and s["trl"]["rounds"] == [0.4, 0.3]
    assert s["trl_over_ours"] == pytest.approx(1.4) and s["trl_over_ours+"] == pytest.approx(0.35 / 0.15)
    assert s["paired_ratios"] == pytest.approx([2.0, 1.0]) and s["paired_ratios+"] == pytest.approx([4.0, 1.5])
    assert s["ours"]["spread"] == pytest.approx(0.1) and s["ours+"]["overrides"] == opt
    rows = table(summarize(runs), steps=4).splitlines()
    assert rows[2].startswith("| tiny | ours | 0.20, 0.30 | 0.25 |")
    assert rows[3].startswith("| tiny | ours (train.max_tokens_per_micro_batch=2048) | 0.10, 0.20 | 0.15 |")
    assert rows[4].startswith("| tiny | TRL | 0.40, 0.30 | 0.35 |")
    assert rows[5] == "| tiny | **TRL / ours** | 2.00, 1.00 (per round) | **1.40x** | | | | | |"
    assert rows[6] == ("| tiny | **TRL / ours (train.max_tokens_per_micro_batch=2048)** | 4.00, 1.50 (per round) "
                       "| **2.33x** | | | | | |")


def test_summary_without_overrides_has_no_extra_row():
    s = summarize([run("ours", 1, [0.2]), run("trl", 1, [0.3])])["tiny"]
    assert "ours+" not in s and "trl_over_ours+" not in s and s["trl_over_ours"] == pytest.approx(1.5)


@pytest.mark.parametrize("override, message", [
    ("train.max_tokens_per_micro_batch", "expected KEY=VALUE"),
    ("train.max_steps=3", "expected KEY=VALUE with KEY not one of"),  # the bench sets the step count itself
    ("train.max_tokens_per_micro_batch=abc", "expected int"),
    ("train.no_such_key=1", "no_such_key")])
def test_bad_overrides_stop_in_one_line(override, message):
    with pytest.raises(SystemExit) as e:
        check_user_overrides([override])
    assert message in str(e.value) and "\n" not in str(e.value)
