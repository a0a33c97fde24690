"""Atomic checkpoints and resume, under every strategy (single, DDP, DeepSpeed ZeRO-2/3, FSDP2).

    output_dir/checkpoint-40/       config.json, model.safetensors, tokenizer files   consolidated Hugging Face model
                                                                                      (evaluation, export, vLLM)
                                    state/            accelerate `save_state`: model + optimizer as the strategy
                                                      keeps them (ZeRO shards per rank, FSDP sharded state dicts,
                                                      a plain state dict otherwise) and the RNG state of every rank
                                    scheduler.pt      the LR schedule (stepped by the learner, not by accelerate)
                                    trainer_state.json  step, data position, ...

A checkpoint is written into a hidden temporary directory and renamed into place only when complete (os.replace is
atomic on one filesystem), so a crash mid-save leaves the previous checkpoint untouched and no half-written one behind
a valid name; `latest_checkpoint` ignores temporaries. Every rank writes its own part into the temporary directory
(one filesystem shared by the ranks, as accelerate and DeepSpeed assume), then rank 0 renames it. Resume restores
exactly: model, optimizer moments, schedule, accelerate's accumulation counter and every rank's RNG.
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
from pathlib import Path
from typing import Any

import torch

from rl.train.distributed import full_state_dict
from rl.train.rundir import share_file_modes

PATTERN = re.compile(r"^checkpoint-(\d+)$")


def checkpoint_dir(output_dir: str | Path, step: int) -> Path:
    """output_dir/checkpoint-{step}: the Hugging Face Trainer's scheme, so GRPO's and SFT's checkpoints are named
    alike (runs written with the earlier zero-padded checkpoint-000040 still resume: PATTERN reads both)."""
    return Path(output_dir) / f"checkpoint-{step}"


def checkpoints_by_step(output_dir: str | Path) -> list[Path]:
    """The checkpoint-N directories in `output_dir`, oldest first by step NUMBER, not by name: checkpoint-9,
    checkpoint-10, checkpoint-12 (as strings "checkpoint-12" < "checkpoint-9"). Every choice (latest, pruning) goes
    through this order."""
    root = Path(output_dir)
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), p.name, p) for p in root.iterdir() if (m := PATTERN.match(p.name)) and p.is_dir()]
    return [p for _, _, p in sorted(found)]


def latest_checkpoint(output_dir: str | Path) -> Path | None:
    """The complete checkpoint (trainer_state.json written) with the highest step, or None."""
    done = [p for p in checkpoints_by_step(output_dir) if (p / "trainer_state.json").is_file()]
    return done[-1] if done else None


def _fsync_tree(root: Path) -> None:
    for path in root.rglob("*"):
        if path.is_file():
            with open(path, "rb") as fh:
                os.fsync(fh.fileno())


class _TiedHeadNotice(logging.Filter):
    """Drops accelerate's "Removed shared tensor {...lm_head.weight} while saving" when every removed name is an
    lm_head weight: with tie_word_embeddings it shares the embedding's storage, safetensors stores it once and
    load_state re-ties it (the resume tests compare every weight). Any other shared tensor is still reported."""

    def filter(self, record: logging.LogRecord) -> bool:
        msg, head = record.getMessage(), "Removed shared tensor {"  # after accelerate's "[RANK 0] " when distributed
        if head not in msg:
            return True
        start = msg.index(head) + len(head)
        names = [n.strip(" '\"") for n in msg[start:msg.index("}", start)].split(",")]
        return not all(n.endswith("lm_head.weight") for n in names)


@contextlib.contextmanager
def tied_weights_notice_silenced(model):
    """While saving a model that ties its head to its embeddings (accelerate 1.15's utils/other.py
    `clean_state_dict_for_safetensors` warns at every checkpoint otherwise)."""
    config = getattr(model, "config", None)
    if not getattr(config, "tie_word_embeddings", False):
        yield
        return
    target, notice = logging.getLogger("accelerate.utils.other"), _TiedHeadNotice()
    target.addFilter(notice)
    try:
        yield
    finally:
        target.removeFilter(notice)


def save_checkpoint(accelerator, output_dir: str | Path, step: int, model, tokenizer, scheduler,
                    state: dict[str, Any], total_limit: int | None = None, weights_prefix: str = "",
                    write_weights=None, write_extra=None, gather_weights=None) -> Path:
    """Write checkpoint-{step} atomically; keep at most `total_limit` checkpoints. Collective: call on all ranks.

    `model` is the prepared model (its weights are gathered for the Hugging Face copy; names lose `weights_prefix`,
    and `unwrap_model(model)` — or its `.lm` when the prefix says so — provides config and save_pretrained).
    `write_weights(dir, weights)` replaces that save_pretrained (LoRA: the adapter files, rl/train/lora.py);
    `write_extra(dir)` adds files on the main process (GRPO: the learner's probe, rl/train/probe.py);
    `gather_weights()` (collective) replaces the whole-model gather (LoRA: the adapters alone, from the masters)."""
    final = checkpoint_dir(output_dir, step)
    tmp = final.parent / f".tmp-{final.name}"
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    accelerator.wait_for_everyone()
    with tied_weights_notice_silenced(accelerator.unwrap_model(model)):
        accelerator.save_state(str(tmp / "state"))  # collective
    weights = (full_state_dict(accelerator, model, weights_prefix) if gather_weights is None
               else gather_weights())  # collective
    if accelerator.is_main_process:
        if write_weights is not None:
            write_weights(tmp, weights)
        else:
            hf_model = accelerator.unwrap_model(model)
            if weights_prefix:
                hf_model = getattr(hf_model, weights_prefix.rstrip("."))
            hf_model.save_pretrained(tmp, state_dict=weights, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        if write_extra is not None:
            write_extra(tmp)
        torch.save(scheduler.state_dict(), tmp / "scheduler.pt")
        (tmp / "trainer_state.json").write_text(json.dumps({"step": step, **state}, indent=1))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        share_file_modes(tmp)  # safetensors writes 0600; the weights get the mode of every other file
        _fsync_tree(tmp)  # file contents on disk before the rename makes them visible
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        if total_limit:  # the oldest by step number go (checkpoint-9 before checkpoint-12); the new one stays
            others = [p for p in checkpoints_by_step(output_dir) if p != final]
            for old in others[:max(len(others) - (total_limit - 1), 0)]:
                shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()
    return final


def load_training_state(accelerator, path: Path, scheduler) -> dict[str, Any]:
    """Restore everything `accelerator.prepare` registered (model, optimizer, RNG of this rank, accumulation
    counter) and the LR schedule from `path`; returns trainer_state.json. Collective."""
    path = Path(path)
    if not (path / "state").is_dir():
        raise FileNotFoundError(f"{path} has no accelerate state (state/): not a checkpoint of this trainer")
    accelerator.load_state(str(path / "state"))
    scheduler.load_state_dict(torch.load(path / "scheduler.pt", weights_only=False))
    return json.loads((path / "trainer_state.json").read_text())
