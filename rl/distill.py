"""Distillation data by rejection sampling: a teacher writes n traces per prompt, the rewards keep the good ones.

    python rl/distill.py recipes/tiny/distill.yaml
    python rl/distill.py recipes/distill.yaml rollout.engine=vllm student.name_or_path=null   # traces only

For every prompt of `data.train`: the teacher (any HF checkpoint or run dir, through the rollout engines: hf or vllm)
samples `rollout.group_size` traces; the `filter.keep_if` rewards score them; a trace is kept when it passes them all
(default: correct AND strict format), ended with EOS, fits the length bounds, and is not a duplicate of a kept trace
of the same prompt. Example with n = 4 traces for "What is 3 + 4 * 5?" (gold 23):

    " <think> 4*5=20, 3+20=23 </think> <answer> 23 </answer>"   kept
    " <think> 4*5=20, 3+20=23 </think> <answer> 23 </answer>"   duplicate -> dropped
    " <think> 3+4=7, 7*5=35 </think> <answer> 35 </answer>"     wrong -> dropped
    " 4*5=20, 3+20=23. The answer is 23."                         correct, not in format -> dropped
    -> 1 row, pass_rate 0.5 (2 of 4 traces passed keep_if, before dedup)

Each row carries its provenance: teacher, template, sampling parameters (n, temperature, top_p, top_k, max_tokens,
chunk seed), the pass rate of its prompt, its token count. Output in output_dir:

    parts/chunk-00000.jsonl ...  one file per finished chunk of `chunk_size` prompts, written atomically
    progress.json                the settings the parts were made with (resuming under other settings is refused)
    traces.jsonl | .parquet      all parts concatenated (prompt, completion, answer, provenance, and only the
                                 source columns named in `keep_columns`), streamed, for rl/sft.py
    stats.json                   prompts, traces, kept rows, mean pass rate

Resume: a stopped run restarts at the first chunk without a part file; each chunk's sampling seed depends only on
its index, so the result equals an uninterrupted run's, with no trace lost or duplicated. Other settings, or another
kind of run in output_dir, are refused in one line (`overwrite=true` deletes them and starts over); output_dir is
locked while the run lives (rl/train/rundir.py).
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

from rl.train.tracking import write_atomic

if __name__ == "__main__" and not __package__:  # `python rl/distill.py`: import from the repo root, not from rl/
    sys.path[0] = str(Path(__file__).resolve().parents[1])


def passes(rewards: dict[str, float | None], keep_if: dict[str, float]) -> bool:
    """Every reward in keep_if at least its threshold; a missing or None score fails."""
    return all(rewards.get(name) is not None and rewards[name] >= t for name, t in keep_if.items())


DROP_REASONS = ("failed_keep_if", "truncated", "length", "code_block", "long_paragraph", "duplicate",
                "near_duplicate", "over_max_per_prompt")


def select_traces(candidates: list[dict[str, Any]], f) -> tuple[list[dict[str, Any]], float, dict[str, int]]:
    """Rejection filter for one prompt. `candidates`: dicts with text, num_tokens, finish_reason, rewards.
    Returns (kept candidates in order, pass rate = fraction passing keep_if before the other filters, drop counts
    by the first filter that rejected each trace, DROP_REASONS order)."""
    from data.trace_filters import has_code_block, jaccard, longest_paragraph, ngrams

    ok = [passes(c["rewards"], f.keep_if) for c in candidates]
    drops = dict.fromkeys(DROP_REASONS, 0)
    kept, seen, kept_grams = [], set(), []
    for c, good in zip(candidates, ok):
        text = c["text"]
        if not good:
            reason = "failed_keep_if"
        elif c["finish_reason"] != "stop" and not f.allow_truncated:
            reason = "truncated"
        elif c["num_tokens"] < f.min_tokens or (f.max_tokens is not None and c["num_tokens"] > f.max_tokens):
            reason = "length"
        elif f.drop_code_blocks and has_code_block(text):
            reason = "code_block"
        elif f.max_paragraph_chars is not None and longest_paragraph(text) > f.max_paragraph_chars:
            reason = "long_paragraph"
        elif f.dedup and " ".join(text.split()) in seen:
            reason = "duplicate"
        elif f.near_dedup_threshold is not None and any(
                jaccard(ngrams(text, 5), g) >= f.near_dedup_threshold for g in kept_grams):
            reason = "near_duplicate"
        elif f.max_per_prompt is not None and len(kept) >= f.max_per_prompt:
            reason = "over_max_per_prompt"
        else:
            seen.add(" ".join(text.split()))
            kept_grams.append(ngrams(text, 5) if f.near_dedup_threshold is not None else set())
            kept.append(c)
            continue
        drops[reason] += 1
    return kept, sum(ok) / len(candidates) if candidates else 0.0, drops


def rejection_summary(stats: dict) -> str:
    """The distillation stage's filter counts as a markdown table (for results.md)."""
    lines = ["| rejection sampling | traces |", "|---|---|", f"| generated | {stats['traces']} |"]
    lines += [f"| dropped: {reason.replace('_', ' ')} | {count} |" for reason, count in stats["dropped"].items()]
    lines += [f"| of the generated, failing keep_if {name.replace('_', ' ')} | {count} |"
              for name, count in stats.get("failed_keep_if_by_reward", {}).items()]  # (a trace may fail several)
    lines += [f"| kept | {stats['kept']} |",
              f"| prompts removed by decontamination (before generation) | {stats['decontaminated_prompts']} |"]
    return "\n".join(lines) + "\n"


def decontaminate(examples: list[dict], against: list[str], n: int, load) -> tuple[list[dict], int]:
    """Drop the examples whose prompt shares a word n-gram with a test prompt of any source in `against`
    (`load(source)` returns its test rows). Returns (the clean examples, how many were dropped)."""
    from data.trace_filters import NgramIndex

    if not against:
        return examples, 0
    index = NgramIndex([str(row["prompt"]) for source in against for row in load(source)], n)
    clean = [ex for ex in examples if not index.overlaps(str(ex["prompt"]))]
    return clean, len(examples) - len(clean)


class NothingKept(RuntimeError):
    """The first chunk kept no trace: the filter and the teacher's output do not match."""


def first_chunk_message(cfg, traces: int, per_reward: dict[str, list], drops: dict[str, int]) -> str:
    """One line: how many of the first chunk's traces passed each keep_if reward, and the likely fix."""
    passed = ", ".join(f"{name} >= {t}: {sum(v is not None and v >= t for v in per_reward[name])}"
                       for name, t in cfg.filter.keep_if.items())
    others = ", ".join(f"{k} {v}" for k, v in drops.items()
                       if v and k != "failed_keep_if" and not k.startswith("keep_if:"))  # (counted in `passed`)
    return (f"the first chunk kept none of its {traces} traces (passed {passed or 'no keep_if'}"
            f"{'; then dropped: ' + others if others else ''}); stopping before the rest is generated. R1-style "
            f"teachers write </think> then \\boxed{{}}, without <answer> tags: use boxed_format in filter.keep_if")


def write_chunk(path: Path, rows: list[dict[str, Any]], drops: dict[str, int]) -> None:
    """One finished chunk, all or nothing: its drop counts first (chunk-N.drops.json), then the rows, whose file's
    existence is the progress marker."""
    write_atomic(path.with_suffix(".drops.json"), json.dumps(drops))
    write_atomic(path, "".join(json.dumps(r) + "\n" for r in rows))


def chunk_rows(cfg, index0: int, examples: list[dict], groups, per_reward: dict[str, list], seed: int,
               teacher_path: str) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """Rows kept from one chunk, and its drop counts: `groups[i]` are the n completions of examples[i]; per_reward is
    flat (i * n + j)."""
    r, n = cfg.rollout, cfg.rollout.group_size
    rows, drops = [], dict.fromkeys(DROP_REASONS, 0)
    for i, (ex, group) in enumerate(zip(examples, groups)):
        candidates = [{"text": c.text, "num_tokens": len(c.completion_ids), "finish_reason": c.finish_reason,
                       "rewards": {name: values[i * n + j] for name, values in per_reward.items()}}
                      for j, c in enumerate(group)]
        kept, pass_rate, prompt_drops = select_traces(candidates, cfg.filter)
        for reason, count in prompt_drops.items():
            drops[reason] += count
        for c in candidates:  # which keep_if reward each trace fails (a trace may fail several): "keep_if:<name>"
            for name, t in cfg.filter.keep_if.items():
                if c["rewards"].get(name) is None or c["rewards"][name] < t:
                    drops[f"keep_if:{name}"] = drops.get(f"keep_if:{name}", 0) + 1
        extra = {k: ex[k] for k in cfg.keep_columns if k in ex}  # only the source columns asked for
        for c in kept:
            rows.append({**extra, "prompt": ex["prompt"], "completion": c["text"], "answer": ex["answer"],
                         "prompt_index": index0 + i, "teacher": cfg.teacher.name_or_path, "teacher_path": teacher_path,
                         "template": cfg.data.template, "n": n, "temperature": r.temperature, "top_p": r.top_p,
                         "top_k": r.top_k, "max_tokens": r.max_completion_length, "seed": seed,
                         "pass_rate": pass_rate, "num_tokens": c["num_tokens"], "rewards": c["rewards"]})
    return rows, drops


def score_and_write(cfg, scorer, k: int, start: int, chunk: list[dict], groups, seed: int, part: Path,
                    teacher_path: str) -> None:
    """Score one generated chunk, filter it, write its part file (chunk 0 keeping nothing raises NothingKept)."""
    from rl.rollout.episodes.collect import reward_columns

    n = cfg.rollout.group_size
    flat_ex = [ex for ex in chunk for _ in range(n)]
    flat = [c for g in groups for c in g]
    result = scorer.score([c.text for c in flat], reward_columns(flat_ex, [len(c.completion_ids) for c in flat]))
    rows, drops = chunk_rows(cfg, start, chunk, groups, result.per_reward, seed, teacher_path)
    if k == 0 and not rows:  # stop before hours of generation that would all be thrown away
        raise NothingKept(first_chunk_message(cfg, len(flat), result.per_reward, drops))
    write_chunk(part, rows, drops)


def generate_traces(cfg, engine, encoder, scorer, examples: list[dict], out: Path, teacher_path: str) -> dict:
    """Chunks of prompts -> parts/chunk-NNNNN.jsonl (skipping finished ones) -> stats.

    Scoring overlaps generation: chunk k is scored and written by a background thread (the scorer's worker
    processes do the parsing) while the engine generates chunk k+1, so the GPU does not wait for the rewards.
    Chunk 0 is scored before chunk 1 starts, so a zero keep rate stops the run after one chunk. Parts are still
    written one at a time in chunk order, so resume is unchanged: a stop loses at most the chunk being scored.
    The overlap needs every reward that could run long to run in the scorer's worker processes (their deadlines are
    enforced there): per-item deadlines inside this process are SIGALRM timers, main thread only. With a reward
    scored in-process that is not `cheap` (a batched reward, or no workers), chunks are scored in turn as before."""
    from concurrent.futures import ThreadPoolExecutor

    from rl.core.episode import SamplingParams

    parts = out / "parts"
    parts.mkdir(parents=True, exist_ok=True)
    r, cs = cfg.rollout, cfg.chunk_size
    starts = list(range(0, len(examples), cs))
    progress = None
    if cfg.progress_bar:
        from tqdm.auto import tqdm
        progress = tqdm(total=len(examples), desc="distill", unit="prompt", dynamic_ncols=True)
    done, scoring = 0, None  # scoring: the Future of the previous chunk's score_and_write
    overlap = all(scorer.rewards[n].cheap or n in scorer.worker_names for n in scorer.names)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="distill-score") as pool:
        for k, start in enumerate(starts):
            part = parts / f"chunk-{k:05d}.jsonl"
            chunk = examples[start:start + cs]
            if not part.is_file():
                seed = cfg.seed * 1_000_003 + k
                params = SamplingParams(n=r.group_size, temperature=r.temperature, top_p=r.top_p, top_k=r.top_k,
                                        max_tokens=r.max_completion_length, seed=seed)
                groups = engine.generate([encoder(start + i, ex) for i, ex in enumerate(chunk)], params)
                if scoring is not None:
                    scoring.result()  # the previous chunk is written (or its error raised) before this one is queued
                job = (cfg, scorer, k, start, chunk, groups, seed, part, teacher_path)
                if k == 0 or not overlap:
                    score_and_write(*job)
                else:
                    scoring = pool.submit(score_and_write, *job)
            done += 1
            if progress is not None:
                progress.update(len(chunk))
        if scoring is not None:
            scoring.result()
    if progress is not None:
        progress.close()
    return {"chunks": done}


def combine(out: Path, fmt: str, num_chunks: int) -> tuple[Path, dict[str, Any], dict[str, int]]:
    """All parts, in chunk order, into traces.<fmt> (atomically), streamed: one part in memory at a time (parquet:
    through `datasets`' memory-mapped Arrow). Returns (path, counts: kept rows, pass rate per kept prompt, tokens;
    summed drop counts)."""
    parts = [out / "parts" / f"chunk-{k:05d}.jsonl" for k in range(num_chunks)]
    counts: dict[str, Any] = {"kept": 0, "pass_rate_by_prompt": {}, "tokens": 0}
    drops = dict.fromkeys(DROP_REASONS, 0)
    path = out / f"traces.{fmt}"
    tmp = path.with_name(f".tmp-{path.name}")
    with open(tmp, "w") if fmt == "jsonl" else open(os.devnull, "w") as sink:
        for part in parts:
            text = part.read_text()
            for line in text.splitlines():
                if line.strip():
                    row = json.loads(line)
                    counts["kept"] += 1
                    counts["tokens"] += row["num_tokens"]
                    counts["pass_rate_by_prompt"][row["prompt_index"]] = row["pass_rate"]
            sink.write(text)
            for reason, count in json.loads(part.with_suffix(".drops.json").read_text()).items():
                drops[reason] = drops.get(reason, 0) + count  # (+ the "keep_if:<name>" failure counts)
    if fmt == "parquet":
        import datasets
        nonempty = [str(p) for p in parts if p.stat().st_size]
        table = (datasets.load_dataset("json", data_files=nonempty, split="train") if nonempty
                 else datasets.Dataset.from_list([]))
        table.to_parquet(str(tmp))
    os.replace(tmp, path)
    return path, counts, drops


def check_progress(out: Path, key: dict) -> None:
    """Refuse to resume parts made under other settings (one line naming the difference)."""
    from rl.config.recipe import ConfigError

    marker = out / "progress.json"
    if marker.is_file():
        old = json.loads(marker.read_text())
        diff = sorted(k for k in set(old) | set(key) if old.get(k) != key.get(k))
        if diff:
            raise ConfigError(f"{out} holds traces made with other settings ({', '.join(diff)}); "
                              f"pass overwrite=true to delete them and start over, or use another output_dir")
    else:
        out.mkdir(parents=True, exist_ok=True)
        write_atomic(marker, json.dumps(key, indent=1))


def student_argv(cfg, traces: Path) -> list[str]:
    """The student's SFT command line; a student dir left without a checkpoint (stopped early, or traces that
    changed) is this run's own leftover, replaced with overwrite=true; with a checkpoint it resumes."""
    from rl.train.checkpoint import latest_checkpoint
    s = cfg.student
    out = Path(cfg.output_dir) / "student"
    return [s.sft_recipe, f"model.name_or_path={s.name_or_path}", f"data.train={traces}", f"output_dir={out}",
            *([] if latest_checkpoint(out) is not None else ["overwrite=true"]), *s.overrides]


def load_prompts(cfg) -> tuple[list[dict], int]:
    """The prompts the teacher answers, decontaminated: (rows, how many were dropped as contaminated). The gold column
    actually read (`solution` when the data have no `answer`) is written back to cfg for config.yaml."""
    from data.loading import load_examples, load_examples_and_gold
    d = cfg.data
    examples, d.answer_column = load_examples_and_gold(
        d.train, d.train_split, prompt_column=d.prompt_column, answer_column=d.answer_column, limit=cfg.num_prompts,
        num_train=d.num_train, num_test=d.num_test, seed=d.seed)
    f = cfg.filter
    return decontaminate(examples, f.decontaminate_against, f.decontaminate_ngram,
                         lambda source: load_examples(source, "test", num_train=d.num_train, num_test=d.num_test,
                                                      seed=d.seed))


def main(argv: list[str] | None = None) -> dict:
    from rl.config.recipe import ConfigError, dump_yaml, load_config, split_argv
    from rl.config.distill import DistillConfig

    # 1. Recipe, prompts and the resume marker, all checked before the teacher is loaded.
    cfg = load_config(DistillConfig, *split_argv(sys.argv[1:] if argv is None else argv))
    examples, contaminated = load_prompts(cfg)
    if cfg.student.sft_recipe and not Path(cfg.student.sft_recipe).is_file():
        raise ConfigError(f"student.sft_recipe file not found: {cfg.student.sft_recipe}")
    from rl.tiny.sources import check_model_source
    check_model_source(cfg.teacher.name_or_path, "teacher.name_or_path")
    if cfg.student.name_or_path:
        check_model_source(cfg.student.name_or_path, "student.name_or_path")
    from rl.train.models import check_context_length
    from rl.tiny.sources import resolve_model_path
    teacher_path = resolve_model_path(cfg.teacher.name_or_path)
    r = cfg.rollout
    check_context_length(teacher_path, r.max_prompt_length, r.max_completion_length)  # config only, before weights
    out = Path(cfg.output_dir)
    # the directory locked; a previous distillation (progress.json) resumes, any other run there is refused
    from rl.train.rundir import claim_output_dir
    with claim_output_dir(out, "distill", resuming=(out / "progress.json").is_file() and not cfg.overwrite,
                          overwrite=cfg.overwrite):
        from rl.train.models import weights_fingerprint
        check_progress(out, cfg.provenance_key(teacher_path, weights_fingerprint(teacher_path)))
        (out / "config.yaml").write_text(dump_yaml(cfg))
        return distill(cfg, examples, contaminated, teacher_path, out)


def distill(cfg, examples: list[dict], contaminated: int, teacher_path: str, out: Path) -> dict:
    """Teacher traces chunk by chunk, the filtered dataset and its stats, then the optional student SFT (2-4).
    `contaminated`: prompts already removed by decontamination (for the stats)."""
    from rl.config.recipe import ConfigError
    d, r = cfg.data, cfg.rollout

    # 2. Teacher and rewards.
    from rewards import RewardScorer
    from rl.rollout.engines import make_engine
    from rl.rollout.episodes.collect import PromptEncoder
    from rl.train.models import load_causal_lm, load_tokenizer
    tokenizer = load_tokenizer(teacher_path)
    model = load_causal_lm(teacher_path, cfg.teacher.dtype) if r.engine == "hf" else None
    engine = make_engine(r, model, tokenizer, teacher_path, seed=cfg.seed,
                         max_model_len=r.max_prompt_length + r.max_completion_length, dtype=cfg.teacher.dtype)
    encoder = PromptEncoder(tokenizer, d.template, d.system_prompt, r.max_prompt_length)
    scorer = RewardScorer({name: 1.0 for name in cfg.filter.keep_if} or {"format": 1.0},
                          num_workers=min(2, os.cpu_count() or 1))
    print(f"[distill] teacher {teacher_path}: {len(examples)} prompts x {r.group_size} traces", flush=True)

    # 3. Traces, chunk by chunk (resumable), then the dataset and its stats.
    try:
        info = generate_traces(cfg, engine, encoder, scorer, examples, out, teacher_path)
    finally:
        scorer.close()
        engine.close()
    path, counts, drops = combine(out, cfg.format, info["chunks"])
    failed_by = {k.split(":", 1)[1]: drops.pop(k) for k in [k for k in drops if k.startswith("keep_if:")]}
    by_prompt = counts["pass_rate_by_prompt"]
    stats = {"prompts": len(examples), "decontaminated_prompts": contaminated, "traces": len(examples) * r.group_size,
             "kept": counts["kept"], "dropped": drops, "failed_keep_if_by_reward": failed_by,
             "prompts_with_kept": len(by_prompt),
             "mean_pass_rate_of_kept_prompts": sum(by_prompt.values()) / max(len(by_prompt), 1),
             "mean_tokens": counts["tokens"] / max(counts["kept"], 1), "dataset": str(path)}
    write_atomic(out / "stats.json", json.dumps(stats, indent=1))
    print(f"[distill] kept {stats['kept']} of {stats['traces']} traces ({stats['prompts_with_kept']} prompts) "
          f"-> {path}; dropped: {', '.join(f'{k} {v}' for k, v in drops.items() if v) or 'none'}; "
          f"{contaminated} prompts removed by decontamination", flush=True)
    del model
    # 4. Optional student SFT on the kept traces.
    student = None
    if not cfg.student.name_or_path:
        print(f"[distill] to train a student: python rl/sft.py {cfg.student.sft_recipe or 'recipes/cold_start_sft.yaml'} "
              f"model.name_or_path=STUDENT data.train={path} output_dir={out / 'student'}", flush=True)
    else:
        if not counts["kept"]:
            raise ConfigError("no trace passed the filter: nothing to train the student on")
        argv_sft = student_argv(cfg, path)
        print(f"[distill] student: python rl/sft.py {' '.join(argv_sft)}", flush=True)
        from rl.sft import main as sft_main
        student = sft_main(argv_sft)
    return {"traces": str(path), "stats": stats, "student": student, "output_dir": str(out)}


if __name__ == "__main__":
    from rewards import RewardError
    from rl.config.cli import recipe_cli
    recipe_cli(main, "rl/distill.py", "distill.yaml", failures=(RewardError, NothingKept))
