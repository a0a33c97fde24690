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


def test_a_run_with_tools_gets_a_tool_panel():
    """Steps that log tools/turns (multi-turn episodes, issue 27): a fourth panel with turns and tool calls per
    episode, and the greedy held-out tool calls at the evaluations (steps 0 and 4 below)."""
    rows = four_step_run()
    for m in rows:
        if "reward/mean" in m:
            m.update({"tools/turns": 1 + 0.2 * m["step"], "tools/tool_calls": 0.2 * m["step"], "tools/tool_errors": 0.0})
        else:
            m["eval/tools/tool_calls"] = {0: 0.0, 4: 0.9}[m["step"]]
    fig = progress_figure(rows, "run")
    fig.canvas.draw()
    ax1, ax2, ax3, tools, share = fig.axes  # (twinx adds the share axis last)
    assert (tools.get_title(), tools.get_ylabel(), tools.get_xlabel()) == ("tool use", "per episode", "step")
    lines = {ln.get_label(): ln for ln in tools.get_lines()}
    assert list(lines) == ["turns per episode", "tool calls per episode", "tool errors per episode",
                           "tool calls (held-out, greedy)"]
    assert list(lines["turns per episode"].get_ydata()) == pytest.approx([1.2, 1.4, 1.6, 1.8])
    assert list(lines["tool calls (held-out, greedy)"].get_xdata()) == [0, 4]
    assert list(lines["tool calls (held-out, greedy)"].get_ydata()) == [0.0, 0.9]
    assert len(progress_figure(four_step_run(), "run").axes) == 4  # no tools: the three panels (and the twin)
