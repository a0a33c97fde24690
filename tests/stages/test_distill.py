"""rl/distill.py: the rejection filter keeps exactly the right traces, and a run stopped half way resumes without
losing or duplicating a trace (its output equals an uninterrupted run's)."""
from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import torch

from rl.config.recipe import ConfigError
from rl.distill import select_traces
from rl.config.distill import FilterConfig

GOOD = " <think> 4*5=20, 3+20=23 </think> <answer> 23 </answer>"


def cand(text, acc, fmt, tokens=20, finish="stop"):
    return {"text": text, "num_tokens": tokens, "finish_reason": finish, "rewards": {"accuracy": acc, "format": fmt}}


# (candidates, filter overrides, kept texts, pass rate). Pass rate = passing keep_if / n, before dedup and lengths.
TABLE = [
    # correct+formatted kept; its whitespace-variant duplicate dropped; wrong, unformatted, unscored (None) rejected
    ([cand(GOOD, 1, 1), cand(GOOD.replace(", ", ",  "), 1, 1), cand("<think> 3+4=7, 7*5=35 </think> "
      "<answer> 35 </answer>", 0, 1), cand(" 4*5=20, 3+20=23. The answer is 23.", 1, 0), cand("x", None, 1)],
     {}, [GOOD], 2 / 5),
    # truncated (no EOS) traces are dropped unless allowed
    ([cand(GOOD, 1, 1, finish="length")], {}, [], 1.0),
    ([cand(GOOD, 1, 1, finish="length")], {"allow_truncated": True}, [GOOD], 1.0),
    # length bounds are inclusive
    ([cand("a", 1, 1, tokens=4), cand("b", 1, 1, tokens=5), cand("c", 1, 1, tokens=9), cand("d", 1, 1, tokens=10)],
     {"min_tokens": 5, "max_tokens": 9}, ["b", "c"], 1.0),
    # max_per_prompt keeps the first ones; dedup off keeps duplicates
    ([cand("a", 1, 1), cand("a", 1, 1), cand("b", 1, 1)], {"max_per_prompt": 2}, ["a", "b"], 1.0),
    ([cand("a", 1, 1), cand("a", 1, 1), cand("b", 1, 1)], {"dedup": False, "max_per_prompt": 2}, ["a", "a"], 1.0),
    # a format-only filter keeps wrong answers; an empty keep_if keeps everything (pass rate 1)
    ([cand("a", 0, 1), cand("b", 1, 0)], {"keep_if": {"format": 1.0}}, ["a"], 0.5),
    ([cand("a", 0, 0), cand("b", 0, 0)], {"keep_if": {}}, ["a", "b"], 1.0),
    # thresholds: partial credit 0.5 passes a 0.5 bar, not a 1.0 bar
    ([cand("a", 0.5, 1)], {"keep_if": {"accuracy": 0.5}}, ["a"], 1.0),
    ([cand("a", 0.5, 1)], {}, [], 0.0),
]


@pytest.mark.parametrize("candidates, overrides, kept, pass_rate", TABLE)
def test_rejection_filter(candidates, overrides, kept, pass_rate):
    got, rate, drops = select_traces(candidates, FilterConfig(**overrides))
    assert [c["text"] for c in got] == kept
    assert rate == pytest.approx(pass_rate)
    assert sum(drops.values()) == len(candidates) - len(kept)  # every dropped trace has one reason


LONG = "Step one. " * 30  # 300 characters in one paragraph
# (candidates, filter overrides, kept texts, drop counts by reason). R1's filters (data/trace_filters.py).
R1_FILTERS = [
    # a fenced code block in the chain is dropped only when asked
    ([cand("<think> ```python\nprint(23)\n``` </think> 23", 1, 1), cand(GOOD, 1, 1)],
     {"drop_code_blocks": True}, [GOOD], {"code_block": 1}),
    ([cand("<think> ```x``` </think> 23", 1, 1)], {}, ["<think> ```x``` </think> 23"], {}),
    # a 300-character paragraph fails a 200-character bound; split by a blank line (150 + 150) it passes
    ([cand(LONG, 1, 1), cand(LONG[:150] + "\n\n" + LONG[150:], 1, 1)], {"max_paragraph_chars": 200},
     [LONG[:150] + "\n\n" + LONG[150:]], {"long_paragraph": 1}),
    # near duplicates: 12 words, one changed at the end -> 5-grams: 8 each, 7 shared -> Jaccard 7 / 9 = 0.78
    ([cand("a b c d e f g h i j k l", 1, 1), cand("a b c d e f g h i j k m", 1, 1), cand("z y x w v u", 1, 1)],
     {"near_dedup_threshold": 0.75}, ["a b c d e f g h i j k l", "z y x w v u"], {"near_duplicate": 1}),
    ([cand("a b c d e f g h i j k l", 1, 1), cand("a b c d e f g h i j k m", 1, 1)],
     {"near_dedup_threshold": 0.8}, ["a b c d e f g h i j k l", "a b c d e f g h i j k m"], {}),  # 0.78 < 0.8
    # the first failing filter is the reason: wrong AND truncated counts as failed_keep_if
    ([cand(GOOD, 0, 1, finish="length"), cand(GOOD, 1, 1, finish="length"), cand("a", 1, 1), cand("a", 1, 1),
      cand("b", 1, 1)], {"max_per_prompt": 1},
     ["a"], {"failed_keep_if": 1, "truncated": 1, "duplicate": 1, "over_max_per_prompt": 1}),
]


@pytest.mark.parametrize("candidates, overrides, kept, drops", R1_FILTERS)
def test_r1_rejection_filters(candidates, overrides, kept, drops):
    got, _, counts = select_traces(candidates, FilterConfig(**overrides))
    assert [c["text"] for c in got] == kept
    assert {k: v for k, v in counts.items() if v} == drops


def test_decontamination_drops_prompts_that_share_an_ngram_with_a_test_prompt():
    from rl.distill import decontaminate
    test_rows = {"bench": [{"prompt": "Compute the sum of the first ten positive odd integers please"},
                           {"prompt": "What is 3 + 4 * 5?"}]}
    train = [{"prompt": "compute the sum of the first ten positive odd integers, then double it"},  # 8-gram shared
             {"prompt": "What is 3 + 4 * 5?"},                                               # short: exact match
             {"prompt": "What is 3 + 4 * 6?"},                                               # differs: kept
             {"prompt": "Compute the product of the first ten positive even integers"}]      # no shared 8-gram
    clean, dropped = decontaminate(train, ["bench"], 8, lambda source: test_rows[source])
    assert dropped == 2
    assert [ex["prompt"] for ex in clean] == [train[2]["prompt"], train[3]["prompt"]]
    assert decontaminate(train, [], 8, lambda source: pytest.fail("nothing to load")) == (train, 0)


def argv(micro_model_dir, out, *extra):
    return [f"teacher.name_or_path={micro_model_dir}", f"output_dir={out}", "num_prompts=10", "chunk_size=4",
            "rollout.group_size=3", "rollout.max_completion_length=6", "rollout.max_prompt_length=250",
            "filter.keep_if={}", "filter.allow_truncated=true", "filter.dedup=false", "progress_bar=false", *extra]


def read_rows(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_resume_after_a_crash_loses_and_duplicates_nothing(micro_model_dir, tmp_path, monkeypatch):
    import rl.distill as distill

    full = distill.main(argv(micro_model_dir, tmp_path / "full"))
    rows_full = read_rows(tmp_path / "full" / "traces.jsonl")
    assert full["stats"]["kept"] == len(rows_full) == 10 * 3  # keep-all filter: every trace of 3 chunks (4, 4, 2)

    real_write, calls = distill.write_chunk, []

    def crash_on_second_chunk(path, rows, drops):
        calls.append(path.name)
        if len(calls) == 2:
            raise KeyboardInterrupt("simulated crash while chunk 2 is finishing")
        real_write(path, rows, drops)

    monkeypatch.setattr(distill, "write_chunk", crash_on_second_chunk)
    with pytest.raises(KeyboardInterrupt):
        distill.main(argv(micro_model_dir, tmp_path / "resumed"))
    parts = tmp_path / "resumed" / "parts"
    # only the finished chunk (rows + drop counts), no temp file
    assert sorted(p.name for p in parts.iterdir()) == ["chunk-00000.drops.json", "chunk-00000.jsonl"]
    assert not (tmp_path / "resumed" / "traces.jsonl").exists()

    monkeypatch.setattr(distill, "write_chunk", real_write)
    calls.clear()
    distill.main(argv(micro_model_dir, tmp_path / "resumed"))
    rows_resumed = read_rows(tmp_path / "resumed" / "traces.jsonl")
    strip = [{k: v for k, v in r.items() if k != "teacher_path"} for r in rows_resumed]
    assert strip == [{k: v for k, v in r.items() if k != "teacher_path"} for r in rows_full]
    keys = [(r["prompt_index"], r["completion"], i) for i, r in enumerate(rows_resumed)]
    assert [r["prompt_index"] for r in rows_resumed] == [i for i in range(10) for _ in range(3)]  # each prompt, n times
    assert len(keys) == 30


def test_resume_under_other_settings_is_refused(micro_model_dir, tmp_path):
    import rl.distill as distill
    out = tmp_path / "d"
    distill.main(argv(micro_model_dir, out, "num_prompts=4"))
    with pytest.raises(ConfigError, match=r"other settings \(temperature\)"):
        distill.main(argv(micro_model_dir, out, "num_prompts=4", "rollout.temperature=0.7"))


def test_rows_carry_provenance_and_load_with_datasets(micro_model_dir, tmp_path):
    import datasets

    import rl.distill as distill
    res = distill.main(argv(micro_model_dir, tmp_path / "p", "num_prompts=2", "format=parquet"))
    ds = datasets.load_dataset("parquet", data_files=res["traces"], split="train")
    assert len(ds) == 6
    row = ds[0]
    assert row["teacher"] == str(micro_model_dir) and row["n"] == 3 and row["temperature"] == 1.0
    assert row["pass_rate"] == 1.0 and row["answer"] and row["prompt"].startswith("What is")
    assert {"top_p", "top_k", "max_tokens", "seed", "num_tokens", "template"} <= set(ds.column_names)


@pytest.mark.parametrize("override, message", [
    ("format=csv", "format='csv' is not one of: jsonl, parquet"),
    ("filter.keep_if={bogus: 1}", "filter.keep_if: "),
    ("filter.max_tokens=2", "filter.max_tokens=2 < filter.min_tokens=5"),
    ("student.sft_recipe=null", "student.name_or_path is set but student.sft_recipe is not"),
])
def test_bad_distill_recipe_is_one_line_error(override, message):
    from rl.config.recipe import load_config
    from rl.config.distill import DistillConfig
    with pytest.raises(ConfigError) as e:
        load_config(DistillConfig, "recipes/tiny/distill.yaml", [override])
    assert message in str(e.value) and "\n" not in str(e.value)


def test_trace_filter_docstring_examples():
    import doctest

    import data.trace_filters
    assert doctest.testmod(data.trace_filters).failed == 0


def test_traces_carry_only_the_columns_asked_for_in_both_formats(micro_model_dir, tmp_path):
    """Procedural rows have a `sensitive` column (as OpenR1-Math has `generations`): not copied by default."""
    import datasets

    import rl.distill as distill
    provenance = {"prompt", "completion", "answer", "prompt_index", "teacher", "teacher_path", "template", "n",
                  "temperature", "top_p", "top_k", "max_tokens", "seed", "pass_rate", "num_tokens", "rewards"}
    res = distill.main(argv(micro_model_dir, tmp_path / "plain", "num_prompts=5"))
    rows = read_rows(tmp_path / "plain" / "traces.jsonl")
    assert len(rows) == res["stats"]["kept"] == 15 and set(rows[0]) == provenance
    res = distill.main(argv(micro_model_dir, tmp_path / "pq", "num_prompts=5", "format=parquet",
                            "keep_columns=[sensitive]"))
    table = datasets.load_dataset("parquet", data_files=res["traces"], split="train")
    assert len(table) == 15 and set(table.column_names) == provenance | {"sensitive"}
    assert table["completion"] == [r["completion"] for r in rows]  # same traces, same order, either format


def test_a_first_chunk_that_keeps_nothing_stops_the_run(micro_model_dir, tmp_path):
    """A random teacher never writes the strict format: the run stops after its first chunk with one line naming
    the counts per filter, instead of generating every chunk for nothing."""
    import rl.distill as distill
    out = tmp_path / "none"
    with pytest.raises(distill.NothingKept, match=r"first chunk kept none of its 12 traces \(passed format >= 1.0: 0\)"
                       r".*use boxed_format"):
        distill.main(argv(micro_model_dir, out, "filter.keep_if={format: 1.0}"))
    assert not any((out / "parts").glob("*.jsonl"))  # nothing written, chunks 2 and 3 never generated


def test_context_length_is_checked_before_the_teacher_loads(micro_model_dir, tmp_path):
    import rl.distill as distill
    with pytest.raises(ConfigError, match=r"= 518 exceeds the 256 positions"):  # the micro model: 256 positions
        distill.main(argv(micro_model_dir, tmp_path / "long", "rollout.max_prompt_length=512"))


def test_a_teacher_run_trained_further_is_another_teacher(micro_model_dir, tmp_path):
    """teacher.name_or_path=runs/r1 resolves to its latest checkpoint: after r1 trains on (checkpoint-2 appears),
    the same name is a different teacher, and resuming the traces made by checkpoint-1 is refused."""
    import shutil

    import rl.distill as distill
    from rl.train.models import load_causal_lm
    run = tmp_path / "r1"
    shutil.copytree(micro_model_dir, run / "checkpoint-1")
    (run / "checkpoint-1" / "trainer_state.json").write_text('{"step": 1}')
    out = tmp_path / "d"
    distill.main(argv(run, out, "num_prompts=4"))
    model = load_causal_lm(str(run / "checkpoint-1"))
    with torch.no_grad():
        next(model.parameters()).add_(0.01)  # "trained on"
    shutil.copytree(run / "checkpoint-1", run / "checkpoint-2")
    model.save_pretrained(run / "checkpoint-2")
    with pytest.raises(ConfigError, match=r"other settings \(teacher_path, teacher_weights\)"):
        distill.main(argv(run, out, "num_prompts=4"))


def test_weights_fingerprint_sees_a_changed_tensor_not_a_copy(micro_model_dir, tmp_path):
    import shutil

    from rl.train.models import weights_fingerprint
    copy = tmp_path / "copy"
    shutil.copytree(micro_model_dir, copy)
    assert weights_fingerprint(str(copy)) == weights_fingerprint(str(micro_model_dir))  # a copy: same weights
    weights = copy / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF  # the last byte of the last tensor
    weights.write_bytes(bytes(data))
    assert weights_fingerprint(str(copy)) != weights_fingerprint(str(micro_model_dir))
    assert weights_fingerprint("Qwen/Qwen2.5-Math-7B") == "Qwen/Qwen2.5-Math-7B"  # not a local dir: the name


def test_chunk_k_is_scored_while_chunk_k_plus_1_generates(tmp_path, monkeypatch):
    """Issue 21 defect 9: the scorer works on chunk 1 while the engine generates chunk 2 (chunk 0 is scored first:
    the early stop). Scoring chunk 1 waits for chunk 2's generation to start: scored in turn, it would wait 10 s
    for a generation that only starts after it, and fail. The parts still come out whole and in order."""
    import threading
    from rewards import RewardScorer
    from rl.config.distill import DistillConfig
    from rl.core.episode import Completion
    import rl.distill as distill

    cfg = DistillConfig(chunk_size=2, progress_bar=False)
    cfg.rollout.group_size, cfg.filter.keep_if, cfg.filter.dedup = 2, {"format": 1.0}, False
    examples = [{"prompt": f"p{i}", "answer": str(i)} for i in range(6)]  # chunks 0, 1, 2
    generating = {k: threading.Event() for k in range(3)}
    calls = []

    class Engine:
        def generate(self, prompts, params):
            k = prompts[0][0] // 2  # the encoder below gives prompt i the ids [i]
            generating[k].set()
            calls.append(("generate", k))
            return [[Completion([1], [2], " <think> a </think> <answer> 1 </answer>", "stop", [-1.0])
                     for _ in range(params.n)] for _ in prompts]

    real = distill.score_and_write

    def scoring(cfg, scorer, k, *rest):
        calls.append(("score", k))
        if k == 1:
            assert generating[2].wait(10), "chunk 1 was scored before chunk 2 started generating"
        real(cfg, scorer, k, *rest)

    monkeypatch.setattr(distill, "score_and_write", scoring)
    with RewardScorer({"format": 1.0}, num_workers=0) as scorer:
        info = distill.generate_traces(cfg, Engine(), lambda i, ex: [i], scorer, examples, tmp_path, "teacher")
    assert info == {"chunks": 3}
    assert calls[:2] == [("generate", 0), ("score", 0)]  # the first chunk is judged before anything else runs
    assert sorted(calls[2:]) == [("generate", 1), ("generate", 2), ("score", 1), ("score", 2)]
    rows = [read_rows(tmp_path / "parts" / f"chunk-{k:05d}.jsonl") for k in range(3)]
    assert [[r["prompt_index"] for r in part] for part in rows] == [[0, 0, 1, 1], [2, 2, 3, 3], [4, 4, 5, 5]]


@pytest.mark.parametrize("overrides, message", [
    (["rollout.tensor_parallel_size=2"], "applies to rollout.engine=vllm with vllm_mode=colocate"),
    (["rollout.engine=vllm", "rollout.vllm_mode=server", "rollout.tensor_parallel_size=4"], "--tensor-parallel-size"),
    (["rollout.vllm_max_in_flight=0"], "vllm_max_in_flight=0 must be at least 1"),
])
def test_parallel_settings_are_checked(overrides, message):
    from rl.config.recipe import load_config
    from rl.config.distill import DistillConfig
    with pytest.raises(ConfigError, match=message.replace("-", r"\-")):
        load_config(DistillConfig, "recipes/tiny/distill.yaml", overrides)
    cfg = load_config(DistillConfig, "recipes/tiny/distill.yaml",
                      ["rollout.engine=vllm", "rollout.tensor_parallel_size=2", "rollout.vllm_max_in_flight=1000"])
    assert (cfg.rollout.tensor_parallel_size, cfg.rollout.vllm_max_in_flight) == (2, 1000)


def test_make_engine_passes_tensor_parallel_size_to_vllm(monkeypatch):
    """The colocated engine gets tensor_parallel_size (to vllm.LLM through VLLMEngine's **vllm_kwargs) and the
    in-flight bound; TP > 1 itself needs GPUs and is not run here."""
    import rl.rollout.engines.vllm as vllm_mod
    from rl.config.grpo import RolloutConfig
    from rl.rollout.engines import make_engine
    seen = {}
    monkeypatch.setattr(vllm_mod, "VLLMEngine", lambda path, tok, **kw: seen.update(kw) or "engine")
    r = RolloutConfig(engine="vllm", tensor_parallel_size=4, vllm_max_in_flight=512)
    assert make_engine(r, None, None, "teacher") == "engine"
    assert seen["tensor_parallel_size"] == 4 and seen["max_in_flight"] == 512
    seen.clear()
    make_engine(RolloutConfig(engine="vllm"), None, None, "teacher")
    assert "tensor_parallel_size" not in seen and seen["max_in_flight"] == 256
