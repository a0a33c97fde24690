"""Run reports from metrics.jsonl: a before/after table and a PNG plot of reward and held-out accuracy over steps.

    python -m rl.train.report runs/tiny_r1_zero        # prints the table, writes runs/tiny_r1_zero/progress.png
"""
from __future__ import annotations

import sys
from pathlib import Path

from rl.train.tracking import read_metrics


def before_after(run_dir: str | Path) -> dict[str, dict[str, float]]:
    """{"before": first eval line, "after": last eval line} (eval/* keys and step)."""
    evals = [m for m in read_metrics(run_dir) if "eval/accuracy" in m]
    if not evals:
        raise ValueError(f"no evaluation lines in {Path(run_dir) / 'metrics.jsonl'}")
    return {"before": evals[0], "after": evals[-1]}


def before_after_table(run_dir: str | Path) -> str:
    """Markdown table:

    | | step | eval/accuracy | eval/format | eval/completion_len |
    |---|---|---|---|---|
    | before | 0 | 0.390 | 0.830 | 24.4 |
    | after | 40 | 0.850 | 1.000 | 25.1 |
    """
    rows = before_after(run_dir)
    keys = ["eval/accuracy", "eval/format", "eval/completion_len"]
    lines = ["| | step | " + " | ".join(keys) + " |", "|---|---|" + "---|" * len(keys)]
    for name, m in rows.items():
        cells = [f"{m.get(k, float('nan')):.3f}" if k != "eval/completion_len" else f"{m.get(k, float('nan')):.1f}"
                 for k in keys]
        lines.append(f"| {name} | {m['step']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot_run(run_dir: str | Path, out_png: str | Path | None = None, title: str | None = None) -> Path:
    """Training reward (mean, and per reward function), held-out greedy accuracy/format, and how the chains change:
    mean completion length (tokens) with the shares of completions that check and redo ("wait, ...") and that mix
    languages in their chain. A run with multi-turn episodes (tools, environments) gets a fourth panel: turns and
    tool calls per episode (training, sampled) and tool calls per held-out episode (greedy)."""
    import matplotlib.pyplot as plt

    out = Path(out_png) if out_png else Path(run_dir) / "progress.png"
    fig = progress_figure(read_metrics(run_dir), title or Path(run_dir).name)
    fig.savefig(out, dpi=110, bbox_inches="tight")  # the legends sit below the panels
    plt.close(fig)
    return out


def progress_figure(metrics: list[dict], title: str):
    """The panels of `plot_run` as a matplotlib figure (three; four when the steps log `tools/turns`): whole steps
    on every x axis (a 4-step run shows 0 1 2 3 4, not 0.5 steps), legends below the panels (never over a curve),
    both y axes of the third panel labelled."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    train = [m for m in metrics if "reward/mean" in m]
    evals = [m for m in metrics if "eval/accuracy" in m]
    tools = any("tools/turns" in m for m in train)
    fig, axes = plt.subplots(1, 4 if tools else 3, figsize=(20 if tools else 15, 3.6))
    ax1, ax2, ax3 = axes[:3]
    steps = [m["step"] for m in train]
    ax1.plot(steps, [m["reward/mean"] for m in train], label="reward (weighted total)", lw=2)
    for key in sorted({k for m in train for k in m if k.startswith("rewards/") and k.endswith("/mean")}):
        ax1.plot(steps, [m.get(key) for m in train], label=key.split("/")[1], alpha=0.7)
    ax1.set_title("training reward")
    ax2.plot([m["step"] for m in evals], [m["eval/accuracy"] for m in evals], "o-", label="accuracy (greedy)")
    ax2.plot([m["step"] for m in evals], [m["eval/format"] for m in evals], "s--", label="strict format")
    ax2.set_ylim(0, 1.02)
    ax2.set_title("held-out evaluation")
    ax3.plot(steps, [m.get("completion_len/mean") for m in train], color="C2", label="completion length (tokens)")
    ax3.set_ylabel("tokens")
    ax3.set_title("chains of thought")
    share = ax3.twinx()
    share.plot(steps, [m.get("check_redo_frac") for m in train], color="C3", ls="--", label="check/redo share")
    share.plot(steps, [m.get("mixed_language_frac") for m in train], color="C4", ls=":", label="mixed-language share")
    share.set_ylim(0, 1.02)
    share.set_ylabel("share of completions")
    panels = [(ax1, ax1.get_lines()), (ax2, ax2.get_lines()), (ax3, ax3.get_lines() + share.get_lines())]
    if tools:
        panels.append((tool_panel(axes[3], train, evals), axes[3].get_lines()))
    for ax, lines in panels:
        ax.set_xlabel("step")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.legend(lines, [ln.get_label() for ln in lines], fontsize=8, loc="upper center",
                  bbox_to_anchor=(0.5, -0.2), ncol=2, frameon=False)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def tool_panel(ax, train: list[dict], evals: list[dict]):
    """Turns and tool calls per episode over the steps (docs/tools.md metrics): sampled training episodes, and the
    greedy held-out ones (`eval/tools/tool_calls`) as markers."""
    steps = [m["step"] for m in train]
    ax.plot(steps, [m.get("tools/turns") for m in train], color="C0", label="turns per episode")
    ax.plot(steps, [m.get("tools/tool_calls") for m in train], color="C1", label="tool calls per episode")
    ax.plot(steps, [m.get("tools/tool_errors") for m in train], color="C3", ls=":", label="tool errors per episode")
    held = [m for m in evals if "eval/tools/tool_calls" in m]
    ax.plot([m["step"] for m in held], [m["eval/tools/tool_calls"] for m in held], "o--", color="C1",
            label="tool calls (held-out, greedy)")
    ax.set_ylim(bottom=0)
    ax.set_ylabel("per episode")
    ax.set_title("tool use")
    return ax


if __name__ == "__main__":
    run = sys.argv[1]
    print(before_after_table(run))
    print(f"plot: {plot_run(run)}")
