"""Run logging: metrics.jsonl (one JSON object per line), sample completions, optional trackers.

Only the main process writes. `report_to`: none | tensorboard | wandb | trackio (imported only when chosen).

Resume: a run killed after its last checkpoint (step s) has logged steps s+1..k that the resumed run logs again.
`RunLogger(..., resume_step=s)` first cuts metrics.jsonl and completions.jsonl back to the rows of steps <= s
(written to a temporary file, then renamed over the original: a crash leaves either the old or the new file), and
TensorBoard purges its events after s, so a killed-and-resumed run's logs equal an uninterrupted run's. wandb and
trackio keep what they already received (their own resume semantics).
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


LOG_FILES = ("metrics.jsonl", "completions.jsonl")


def write_atomic(path: Path, text: str) -> None:
    """Replace `path`'s contents all at once: a temporary file, flushed to disk, renamed over it."""
    tmp = path.with_name(f".tmp-{path.name}-{os.getpid()}")
    with open(tmp, "w") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def rewind_jsonl(path: Path, last_step: int) -> int:
    """Keep the rows of `path` whose step is <= last_step (atomically); returns the number of rows removed."""
    if not path.is_file():
        return 0
    lines = [line for line in path.read_text().splitlines(keepends=True) if line.strip()]
    kept = [line for line in lines if json.loads(line).get("step", 0) <= last_step]
    if len(kept) < len(lines):
        write_atomic(path, "".join(kept))
    return len(lines) - len(kept)


class RunLogger:
    def __init__(self, output_dir: str | Path, report_to: str = "none", config: dict | None = None,
                 enabled: bool = True, resume_step: int | None = None):
        self.dir = Path(output_dir)
        self.enabled = enabled
        self.report_to = report_to
        self._tracker: Any = None
        if not enabled:
            return
        self.dir.mkdir(parents=True, exist_ok=True)
        self.rewound_rows = 0
        if resume_step is not None:
            self.rewound_rows = sum(rewind_jsonl(self.dir / name, resume_step) for name in LOG_FILES)
        if report_to == "tensorboard":
            from torch.utils.tensorboard import SummaryWriter
            self._tracker = SummaryWriter(str(self.dir / "tensorboard"),
                                          purge_step=None if resume_step is None else resume_step + 1)
        elif report_to == "wandb":
            import wandb
            self._tracker = wandb.init(project="r1-grpo", dir=str(self.dir), config=config)
        elif report_to == "trackio":
            import trackio
            self._tracker = trackio.init(project="r1-grpo", config=config)

    def log(self, metrics: dict[str, Any], step: int) -> None:
        if not self.enabled:
            return
        line = {"step": step, **{k: (round(v, 6) if isinstance(v, float) else v) for k, v in metrics.items()}}
        with open(self.dir / "metrics.jsonl", "a") as f:
            f.write(json.dumps(line) + "\n")
        numeric = {k: v for k, v in metrics.items() if isinstance(v, (int, float))}
        if self.report_to == "tensorboard":
            for k, v in numeric.items():
                self._tracker.add_scalar(k, v, step)
        elif self.report_to in ("wandb", "trackio"):
            self._tracker.log(numeric, step=step)

    def log_completions(self, rows: list[dict[str, Any]], step: int) -> None:
        if not self.enabled or not rows:
            return
        with open(self.dir / "completions.jsonl", "a") as f:
            for row in rows:
                f.write(json.dumps({"step": step, **row}) + "\n")

    def close(self) -> None:
        if self._tracker is not None and hasattr(self._tracker, "close"):
            self._tracker.close()
        elif self._tracker is not None and hasattr(self._tracker, "finish"):
            self._tracker.finish()


def read_metrics(output_dir: str | Path) -> list[dict[str, Any]]:
    path = Path(output_dir) / "metrics.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.is_file() else []
