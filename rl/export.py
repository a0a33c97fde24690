"""Export any GRPO or SFT checkpoint as a clean Hugging Face model directory that loads anywhere.

    python rl/export.py runs/tiny_r1/checkpoint-40 exports/tiny-r1 --dtype bfloat16
    python rl/export.py runs/tiny_cold_start exports/tiny-sft          # a run dir: its model/ or latest checkpoint
    python rl/export.py runs/lora_sft/checkpoint-50 exports/merged --push-to-hub me/tiny-r1

What is written (atomically: a temporary directory renamed into place after the checks pass):

    model.safetensors, config.json         weights in --dtype (float32 | bfloat16 | float16), LoRA adapters merged
    tokenizer files + chat template        from the checkpoint
    generation_config.json                 eos/pad ids and the recommended sampling (--temperature 0.6, --top-p 0.95,
                                           the R1 paper's evaluation setting)
    README.md                              model card: base model, recipe (the run's config.yaml), data, evaluation
                                           (--eval-json, else the run's last eval/* metrics)

Before declaring success the export is reloaded with AutoModelForCausalLM and its logits on a probe prompt are
compared with the checkpoint's loaded in the same dtype: they must be equal (max |diff| <= 1e-5; it is 0 in float32
and in bfloat16, as the same rounding of the same weights is reloaded). That checks the writing, not the merge (both
sides are the merged model); so a GRPO checkpoint also carries the training learner's logprobs of a fixed probe
(learner_probe.safetensors, rl/train/probe.py), and the reloaded export must reproduce them (float32 both sides: max
|dlogp| <= 1e-3; else mean <= 0.01): a LoRA adapter merged onto the wrong base or with a wrong scale fails here.
Checkpoints without a probe (SFT, GRPO before it existed) get the first check only. Optimizer state, RNG files and
trainer state are not copied.

Memory: the checkpoint is loaded directly in --dtype (bfloat16: 2 bytes a parameter, never a float32 copy first),
and it is released before the export is reloaded for the check, so at most one copy of the model is in host memory
at a time: ~2 bytes/parameter at bfloat16 (~15 GB at 7B) where loading in float32, casting, then reloading took ~6
(~42 GB). Measured on the random-init 152k-vocabulary bench model (rl/bench/models.py `vocab-152k`, 40.9M
parameters: 156 MiB in float32, a float32 checkpoint), --dtype bfloat16, CPU, memory the export adds over the imports
(sampled every 2 ms): anonymous memory +278 MiB before (float32 load, cast, reload) -> +168 MiB now (ratio 0.60;
the rest is the bf16 weights, 78 MiB, the probe's [1, T, 151936] logits and the writer's buffers), resident incl.
the mmapped checkpoint +381 -> +271 MiB (0.71).
A LoRA checkpoint's base is loaded in --dtype too and the adapters (float32) merged into it: each merged weight is
rounded once more than a float32 merge then cast would round it (at bfloat16: within one bf16 step).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any

if __name__ == "__main__" and not __package__:  # `python rl/export.py`: import from the repo root, not from rl/
    sys.path[0] = str(Path(__file__).resolve().parents[1])

PROBE = "A conversation between User and Assistant. User: What is 3 + 4 * 5?. Assistant: <think> 4*5=20"
DTYPE_NAMES = ("float32", "bfloat16", "float16")


class ExportError(ValueError):
    """A bad checkpoint or option, in one line."""


def find_checkpoint(path: str | Path) -> Path:
    """A model dir (config.json or adapter_config.json), or a run dir -> its model/ or latest checkpoint."""
    from rl.train.checkpoint import latest_checkpoint

    p = Path(path)
    if not p.is_dir():
        raise ExportError(f"checkpoint not found: {p}")
    if (p / "config.json").is_file() or (p / "adapter_config.json").is_file():
        return p
    if (p / "model" / "config.json").is_file():
        return p / "model"
    latest = latest_checkpoint(p)
    if latest is None:
        raise ExportError(f"{p} is neither a model directory (config.json) nor a run directory with checkpoints")
    return latest


def load_merged(ckpt: Path, dtype: str = "float32"):
    """(model in `dtype`, tokenizer, base model id). LoRA checkpoints are loaded on their base (in `dtype`) and
    merged. Loading in the target dtype is what keeps a bf16 export at ~2 bytes/parameter (module docstring)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(ckpt)
    if (ckpt / "adapter_config.json").is_file():
        from peft import PeftModel
        base = json.loads((ckpt / "adapter_config.json").read_text())["base_model_name_or_path"]
        model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base, dtype=dtype), ckpt)
        return model.merge_and_unload().eval(), tokenizer, base  # merged in place: the base's `dtype`
    model = AutoModelForCausalLM.from_pretrained(ckpt, dtype=dtype).eval()
    return model, tokenizer, None


def probe_logits(model, tokenizer) -> Any:
    import torch

    ids = tokenizer(PROBE, add_special_tokens=False, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        return model(input_ids=ids.to(next(model.parameters()).device)).logits.float().cpu()


def run_info(ckpt: Path) -> dict[str, Any]:
    """Recipe (config.yaml) and last eval/* metrics of the run the checkpoint belongs to, where found."""
    import yaml

    info: dict[str, Any] = {}
    for run in (ckpt, ckpt.parent):
        if "recipe" not in info and (run / "config.yaml").is_file():
            info["recipe"] = yaml.safe_load((run / "config.yaml").read_text())
            info["run_dir"] = str(run)
        metrics = run / "metrics.jsonl"
        if "eval" not in info and metrics.is_file():
            evals = [json.loads(line) for line in metrics.read_text().splitlines() if '"eval/' in line]
            if evals:
                info["eval"] = {k: v for k, v in evals[-1].items() if k.startswith("eval/") or k == "step"}
    return info


def checkpoint_description(recipe: dict) -> str:
    """What an exported checkpoint is, from its run's recipe (config.yaml), for the model card's first line:

    >>> checkpoint_description({"model": {"name_or_path": "tiny"}, "data": {"train": "procedural:arithmetic"},
    ...     "rollout": {}, "rewards": {"accuracy": 1.0, "format": 0.5}, "train": {"max_steps": 4}})
    'GRPO (rl/grpo.py): 4 steps from `tiny` on `procedural:arithmetic`, rewards accuracy, format.'
    >>> checkpoint_description({})
    'A model exported with rl/export.py (no recipe was found beside the checkpoint).'
    """
    if not recipe:
        return "A model exported with rl/export.py (no recipe was found beside the checkpoint)."
    base = (recipe.get("model") or {}).get("name_or_path", "unknown")
    train, steps = (recipe.get("data") or {}).get("train", "unknown"), (recipe.get("train") or {}).get("max_steps")
    if "rollout" in recipe and "rewards" in recipe:
        return (f"GRPO (rl/grpo.py): {steps} steps from `{base}` on `{train}`, rewards "
                f"{', '.join(recipe['rewards'])}.")
    length = f"{steps} steps" if isinstance(steps, int) and steps > 0 else \
        f"{(recipe.get('train') or {}).get('num_epochs', '?')} epoch(s)"
    return f"Supervised fine-tuning (rl/sft.py): {length} from `{base}` on `{train}`."


def model_card(name: str, ckpt: Path, base: str | None, info: dict, evaluation: dict | None, dtype: str,
               temperature: float, top_p: float) -> str:
    recipe = info.get("recipe") or {}
    model_sec = recipe.get("model") or recipe.get("teacher") or {}
    data = recipe.get("data") or {}
    lines = [f"# {name}", "", checkpoint_description(recipe), "",
             f"- **Checkpoint:** `{ckpt}`", f"- **Base model:** `{base or model_sec.get('name_or_path', 'unknown')}`",
             f"- **Training data:** `{data.get('train', 'unknown')}` (template `{data.get('template', '?')}`)",
             f"- **Weights dtype:** {dtype}",
             f"- **Recommended sampling:** temperature {temperature}, top_p {top_p} (generation_config.json)", ""]
    results = evaluation or info.get("eval")
    if results:
        lines += ["## Evaluation", "", "| metric | value |", "|---|---|"]
        lines += [f"| {k} | {v:.4f} |" if isinstance(v, float) else f"| {k} | {v} |" for k, v in results.items()]
        lines.append("")
    if recipe:
        import yaml
        lines += ["## Recipe", "", "```yaml", yaml.safe_dump(recipe, sort_keys=False).rstrip(), "```", ""]
    lines += ["## Usage", "", "```python", "from transformers import AutoModelForCausalLM, AutoTokenizer",
              f"model = AutoModelForCausalLM.from_pretrained({name!r})",
              f"tokenizer = AutoTokenizer.from_pretrained({name!r})", "```", ""]
    return "\n".join(lines)


MAX_SHARD_SIZE = "5GB"  # safetensors shards of at most this size (the hub's and vLLM's loaders stream them)


def stop_token_ids(generation_config, tokenizer) -> list[int]:
    """The ids that end a reply: the checkpoint's own generation config's (Qwen-Instruct lists two, <|im_end|> and
    <|endoftext|>), then the tokenizer's eos if missing. Example: config [151645, 151643], tokenizer 151643 ->
    [151645, 151643]; no config entry, tokenizer 2 -> [2]."""
    configured = getattr(generation_config, "eos_token_id", None) if generation_config is not None else None
    ids = [configured] if isinstance(configured, int) else list(configured or [])
    if tokenizer.eos_token_id is not None and tokenizer.eos_token_id not in ids:
        ids.append(tokenizer.eos_token_id)
    return ids


def export(checkpoint: str | Path, out_dir: str | Path, dtype: str = "float32", temperature: float = 0.6,
           top_p: float = 0.95, eval_json: str | Path | None = None, overwrite: bool = False,
           push_to_hub: str | None = None, public: bool = False) -> dict[str, Any]:
    """Write the export, verify it, optionally push it (to a private repo unless `public`); returns {"out_dir",
    "max_abs_diff", ...}."""
    if dtype not in DTYPE_NAMES:
        raise ExportError(f"--dtype {dtype!r} is not one of: {', '.join(DTYPE_NAMES)}")
    out = Path(out_dir)
    if out.exists() and not overwrite:
        raise ExportError(f"{out} exists (pass --overwrite to replace it)")
    ckpt = find_checkpoint(checkpoint)
    evaluation = json.loads(Path(eval_json).read_text()) if eval_json else None

    import torch
    from transformers import AutoModelForCausalLM, GenerationConfig

    from rl.train.models import DTYPES
    model, tokenizer, base = load_merged(ckpt, dtype)
    model.config.dtype = DTYPES[dtype]
    reference = probe_logits(model, tokenizer)  # what the export must reproduce exactly
    eos = stop_token_ids(model.generation_config, tokenizer)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos[0]
    model.config.eos_token_id, model.config.pad_token_id = eos[0] if len(eos) == 1 else eos, pad
    model.config.use_cache = True  # training turns it off (gradient checkpointing); generation wants the KV cache
    model.generation_config = GenerationConfig(eos_token_id=eos[0] if len(eos) == 1 else eos, pad_token_id=pad,
                                               do_sample=True, temperature=temperature, top_p=top_p)
    tmp = out.parent / f".tmp-{out.name}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    model.save_pretrained(tmp, safe_serialization=True, max_shard_size=MAX_SHARD_SIZE)
    tokenizer.save_pretrained(tmp)
    from rl.train.rundir import share_file_modes
    share_file_modes(tmp)  # safetensors writes 0600; the weights get the mode of every other file
    info = run_info(ckpt)
    (tmp / "README.md").write_text(model_card(push_to_hub or out.name, ckpt, base, info, evaluation, dtype,
                                              temperature, top_p))
    del model  # one copy of the weights in memory at a time: the reference logits are all the check needs
    import gc
    gc.collect()

    # Verify: reload the export as a stranger would, compare logits, generate a few tokens.
    reloaded = AutoModelForCausalLM.from_pretrained(tmp, dtype=DTYPES[dtype]).eval()
    got = probe_logits(reloaded, tokenizer)
    diff = (got - reference).abs().max().item()
    if got.shape != reference.shape or diff > 1e-5:
        shutil.rmtree(tmp, ignore_errors=True)
        raise RuntimeError(f"export check failed: reloaded logits differ from the checkpoint's by {diff:g}")
    from rl.train.probe import compare
    learner_check = compare(reloaded, ckpt, dtype)  # against the model that was trained (GRPO checkpoints)
    if learner_check is not None and not learner_check["probe_ok"]:
        shutil.rmtree(tmp, ignore_errors=True)
        raise RuntimeError(f"export check failed: on the learner's probe ({ckpt.name}/learner_probe.safetensors) the "
                           f"export's logprobs differ from the training learner's by mean "
                           f"{learner_check['probe_mean_abs_diff']:.3g}, max {learner_check['probe_max_abs_diff']:.3g}"
                           f" (limit: {learner_check['probe_limit']}): wrong base model or adapter merge?")
    ids = tokenizer(PROBE, add_special_tokens=False, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        sample = reloaded.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=8,
                                   do_sample=False, pad_token_id=pad)
    if sample.shape[1] <= ids.shape[1]:
        raise RuntimeError("export check failed: the reloaded model generated nothing")
    if out.exists():
        shutil.rmtree(out)
    os.replace(tmp, out)
    result = {"out_dir": str(out), "checkpoint": str(ckpt), "base_model": base, "dtype": dtype,
              "max_abs_diff": diff,
              "lora_merged": base is not None, "sample": tokenizer.decode(sample[0, ids.shape[1]:]),
              **(learner_check or {})}
    if push_to_hub:
        from huggingface_hub import HfApi
        api = HfApi()
        api.create_repo(push_to_hub, exist_ok=True, private=not public)
        api.upload_folder(folder_path=str(out), repo_id=push_to_hub)
        result["pushed_to"] = push_to_hub
    return result


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("checkpoint", help="checkpoint dir (GRPO, SFT or LoRA SFT) or a run dir")
    ap.add_argument("out_dir")
    ap.add_argument("--dtype", default="float32", help=f"one of {', '.join(DTYPE_NAMES)}")
    ap.add_argument("--temperature", type=float, default=0.6)
    ap.add_argument("--top-p", type=float, default=0.95)
    ap.add_argument("--eval-json", help="evaluation results (JSON) to put in the model card")
    ap.add_argument("--overwrite", action="store_true")
    ap.add_argument("--push-to-hub", metavar="REPO", help="also upload to this hub repo, created private "
                    "(needs a token and network)")
    ap.add_argument("--public", action="store_true", help="create the --push-to-hub repo public")
    a = ap.parse_args(argv)
    result = export(a.checkpoint, a.out_dir, a.dtype, a.temperature, a.top_p, a.eval_json, a.overwrite,
                    a.push_to_hub, a.public)
    probe = (f", learner probe mean |dlogp| {result['probe_mean_abs_diff']:.2g}" if "probe_mean_abs_diff" in result
             else ", no learner probe in the checkpoint")
    print(f"[export] {result['checkpoint']} -> {result['out_dir']} ({result['dtype']}, logits max |diff| "
          f"{result['max_abs_diff']:g}{probe}; sample: {result['sample']!r})", flush=True)
    return result


if __name__ == "__main__":
    from rl.config.cli import run_cli
    run_cli(main, (ExportError,))
