"""The run's plot (rl/train/report.py): whole steps, legends off the curves, every axis labelled (issue 30)."""
import pytest

from rl.train.report import plot_run, progress_figure


def four_step_run() -> list[dict]:
    train = [{"step": s, "reward/mean": 0.5 + 0.1 * s, "rewards/accuracy/mean": 0.4 + 0.1 * s,
              "rewards/format/mean": 1.0, "completion_len/mean": 20 + s, "check_redo_frac": 0.0,
              "mixed_language_frac": 0.25 * s} for s in (1, 2, 3, 4)]
    return train + [{"step": 0, "eval/accuracy": 0.4, "eval/format": 1.0},
                    {"step": 4, "eval/accuracy": 0.6, "eval/format": 1.0}]


def test_a_four_step_run_has_whole_steps_and_labelled_axes():
    fig = progress_figure(four_step_run(), "run")
    fig.canvas.draw()
    ax1, ax2, ax3, share = fig.axes
    for ax in (ax1, ax2, ax3):
        ticks = [t for t in ax.get_xticks() if ax.get_xlim()[0] <= t <= ax.get_xlim()[1]]
        assert ticks and all(float(t).is_integer() for t in ticks), ticks  # no 0.5 steps
        assert ax.get_xlabel() == "step"
    assert (ax3.get_ylabel(), share.get_ylabel()) == ("tokens", "share of completions")
    renderer = fig.canvas.get_renderer()
    for ax in (ax1, ax2, ax3):  # each legend lies wholly below its panel: it covers no curve
        legend, panel = ax.get_legend().get_window_extent(renderer), ax.get_window_extent(renderer)
        assert legend.y1 <= panel.y0
    assert [t.get_text() for t in ax1.get_legend().get_texts()] == ["reward (weighted total)", "accuracy", "format"]


def test_plot_run_writes_the_png(tmp_path):
    import json
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(m) + "\n" for m in four_step_run()))
    out = plot_run(tmp_path)
    assert out == tmp_path / "progress.png" and out.stat().st_size > 10_000
