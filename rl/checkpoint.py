"""Atomic checkpoints and resume.

    output_dir/checkpoint-000040/   model (safetensors) + tokenizer, optimizer.pt, scheduler.pt,
                                    rng-rank{r}.pt, trainer_state.json (step, data position, ...)

A checkpoint is written into a hidden temporary directory and renamed into place only when complete (os.replace is
atomic on one filesystem), so a crash mid-save leaves the previous checkpoint untouched and no half-written one behind
a valid name. `latest_checkpoint` ignores temporaries. Under several processes every rank writes its RNG state into the
temporary directory, then rank 0 renames it.
"""
from __future__ import annotations

import json
import os
import random
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

PATTERN = re.compile(r"^checkpoint-(\d+)$")


def checkpoint_dir(output_dir: str | Path, step: int) -> Path:
    return Path(output_dir) / f"checkpoint-{step:06d}"


def latest_checkpoint(output_dir: str | Path) -> Path | None:
    root = Path(output_dir)
    if not root.is_dir():
        return None
    found = [(int(m.group(1)), p) for p in root.iterdir() if (m := PATTERN.match(p.name)) and p.is_dir()
             and (p / "trainer_state.json").is_file()]
    return max(found)[1] if found else None


def rng_state() -> dict[str, Any]:
    return {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])


def save_checkpoint(accelerator, output_dir: str | Path, step: int, model, tokenizer, optimizer, scheduler,
                    state: dict[str, Any], total_limit: int | None = None) -> Path:
    """Write checkpoint-{step} atomically; keep at most `total_limit` checkpoints. Collective: call on all ranks."""
    final = checkpoint_dir(output_dir, step)
    tmp = final.parent / f".tmp-{final.name}"
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    accelerator.wait_for_everyone()
    torch.save(rng_state(), tmp / f"rng-rank{accelerator.process_index}.pt")
    if accelerator.is_main_process:
        accelerator.unwrap_model(model).save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
        torch.save(scheduler.state_dict(), tmp / "scheduler.pt")
        (tmp / "trainer_state.json").write_text(json.dumps({"step": step, **state}, indent=1))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        for f in tmp.iterdir():  # flush file contents before the rename makes them visible
            with open(f, "rb") as fh:
                os.fsync(fh.fileno())
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        if total_limit:
            olds = sorted(p for p in Path(output_dir).iterdir() if PATTERN.match(p.name))[:-total_limit]
            for old in olds:
                shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()
    return final


def load_training_state(accelerator, path: Path, model, optimizer, scheduler) -> dict[str, Any]:
    """Restore weights, optimizer, scheduler and this rank's RNG from `path`; returns trainer_state.json."""
    from safetensors.torch import load_file

    weights = {}
    for shard in sorted(path.glob("*.safetensors")):
        weights.update(load_file(shard))
    target = accelerator.unwrap_model(model)
    missing, unexpected = target.load_state_dict(weights, strict=False)
    real_missing = [k for k in missing if not (k == "lm_head.weight" and target.config.tie_word_embeddings)]
    if real_missing or unexpected:
        raise RuntimeError(f"checkpoint {path} does not match the model: missing {real_missing[:3]}, "
                           f"unexpected {unexpected[:3]}")
    optimizer.load_state_dict(torch.load(path / "optimizer.pt", weights_only=False))
    scheduler.load_state_dict(torch.load(path / "scheduler.pt", weights_only=False))
    rng_file = path / f"rng-rank{accelerator.process_index}.pt"
    if rng_file.is_file():
        set_rng_state(torch.load(rng_file, weights_only=False))
    return json.loads((path / "trainer_state.json").read_text())
