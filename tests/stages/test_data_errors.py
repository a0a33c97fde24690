"""Dataset mistakes end in one DataError line (data/loading.py), in process: fast twins of test_cli_errors.py."""
import json

import pytest

from data.loading import DataError, load_examples


@pytest.mark.parametrize("name, text, message", [
    ("empty.jsonl", "\n\n", r"^dataset file \S+/empty\.jsonl is empty$"),
    ("bad.jsonl", '{"prompt": "a", "answer": "1"}\n\n{"prompt": b}\n',
     r"^dataset file \S+/bad\.jsonl line 3: not valid JSON \(Expecting value\)$"),
    ("nosuffix", '{"prompt": "a", "answer": "1"}\n',
     r"^dataset \S+/nosuffix: a local file without a known suffix; name the file \.jsonl, \.json, \.parquet or "
     r"\.csv$"),
])
def test_bad_files_are_one_line(tmp_path, name, text, message):
    (tmp_path / name).write_text(text)
    with pytest.raises(DataError, match=message):
        load_examples(str(tmp_path / name))


def test_csv_is_read(tmp_path):
    (tmp_path / "rows.csv").write_text("prompt,solution\nWhat is 1 + 2?,3\n")
    assert load_examples(str(tmp_path / "rows.csv")) == [{"prompt": "What is 1 + 2?", "answer": "3"}]


def test_hub_dataset_while_offline_is_one_line(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(DataError, match=r"^dataset 'nobody/no-such-dataset': no such local file .+ while offline "
                                        r"\(HF_HUB_OFFLINE=1\) and not in the local cache$"):
        load_examples("nobody/no-such-dataset")


def test_evaluate_accepts_a_local_file(tmp_path):
    from rl.evaluate import load_benchmark
    (tmp_path / "mine.jsonl").write_text('{"prompt": "What is 2 + 2?", "answer": "4", "level": 1}\n')
    assert load_benchmark(str(tmp_path / "mine.jsonl")) == [{"prompt": "What is 2 + 2?", "answer": "4", "level": 1}]


def test_saved_config_records_the_gold_column_used(tmp_path):
    from rl.config.recipe import dump_yaml
    from rl.grpo import load_recipe_and_data
    (tmp_path / "math.jsonl").write_text('{"prompt": "What is 2 + 2?", "solution": "\\\\boxed{4}"}\n')
    cfg, rows, _ = load_recipe_and_data(["recipes/tiny/r1_zero.yaml", f"data.train={tmp_path / 'math.jsonl'}",
                                         "data.test=null"])
    assert rows == [{"prompt": "What is 2 + 2?", "answer": "\\boxed{4}"}]
    assert cfg.data.answer_column == "solution" and "answer_column: solution" in dump_yaml(cfg)


def test_sft_and_distill_configs_record_the_gold_column_used(tmp_path):
    """As GRPO's: a data file with `solution` and no `answer` is read through `solution`, and config.yaml says so."""
    from rl.config.distill import DistillConfig
    from rl.config.recipe import dump_yaml, load_config
    from rl.distill import load_prompts
    from rl.sft import load_recipe_and_data
    data = tmp_path / "math.jsonl"
    data.write_text('{"prompt": "What is 2 + 2?", "solution": "\\\\boxed{4}", "completion": " 4"}\n')
    cfg, rows, test_rows = load_recipe_and_data(["recipes/tiny/cold_start_sft.yaml", f"data.train={data}",
                                                 f"data.test={data}"])
    assert test_rows == [{"prompt": "What is 2 + 2?", "answer": "\\boxed{4}", "completion": " 4"}]
    assert cfg.data.test_answer_column == "solution" and "test_answer_column: solution" in dump_yaml(cfg)
    cfg = load_config(DistillConfig, "recipes/tiny/distill.yaml", [f"data.train={data}"])
    rows, contaminated = load_prompts(cfg)
    assert [r["answer"] for r in rows] == ["\\boxed{4}"] and contaminated == 0
    assert cfg.data.answer_column == "solution" and "answer_column: solution" in dump_yaml(cfg)


@pytest.mark.parametrize("train, test, rows, expected", [
    ("procedural:arithmetic", "procedural:arithmetic", 200, "evaluation: 200 rows of procedural:arithmetic (test)"),
    ("mine.jsonl", "my_test.jsonl", 50, "evaluation: 50 rows of my_test.jsonl (test)"),
    ("mine.jsonl", None, 0, "evaluation: none (data.test is not set)"),
    ("mine.jsonl", "procedural:arithmetic", 200, "evaluation: 200 rows of procedural:arithmetic (test) -- note: the "
     "recipe's procedural task, while data.train is mine.jsonl: set data.test=YOUR_TEST_FILE (or data.test=null for "
     "none)"),
])
def test_start_up_says_which_set_is_evaluated(train, test, rows, expected):
    from data.loading import evaluation_set_line
    assert evaluation_set_line(train, test, "test", rows) == expected


@pytest.mark.parametrize("train, rows, columns, num_train, drawn, expected", [
    # 40 steps x 8 prompts = 320 drawn; over 2000 rows that is 320 / 2000 = 0.16 passes
    ("procedural:arithmetic", 2000, ("prompt", "answer"), 2000, 320, "training: 2000 rows of procedural:arithmetic "
     "(train; data.num_train=2000); 320 prompts drawn over the run (0.16 passes)"),
    # the case: the recipe's num_train 2000 on a 30-row file; 320 / 30 = 10.67 passes
    ("mine.jsonl", 30, ("problem", "solution"), 2000, 320, "training: 30 rows of mine.jsonl (train; prompt column "
     "'problem', gold column 'solution'; data.num_train=2000 applies to procedural tasks only: a file is used "
     "whole); 320 prompts drawn over the run (10.67 passes)"),
    ("mine.jsonl", 30, ("prompt", "answer"), 30, None, "training: 30 rows of mine.jsonl (train; prompt column "
     "'prompt', gold column 'answer')"),  # num_train equal to the rows: nothing to say about it
])
def test_start_up_says_which_rows_are_trained_on(train, rows, columns, num_train, drawn, expected):
    from data.loading import training_set_line
    assert training_set_line(train, "train", rows, *columns, num_train, drawn) == expected


def test_loading_doctests():
    import doctest
    import data.loading
    assert doctest.testmod(data.loading).failed == 0


def test_data_columns_keeps_only_the_named_columns(tmp_path):
    """OpenR1-style rows: data.columns=[source] keeps `source`, drops the heavy `generations`; an unknown name is
    one line; null keeps everything (TRL's behaviour)."""
    row = {"problem": "What is 2 + 2?", "answer": "4", "source": "amc", "generations": ["<think>" + "x" * 5000]}
    path = tmp_path / "openr1.jsonl"
    path.write_text(json.dumps(row) + "\n")
    kw = dict(prompt_column="problem", answer_column="answer")
    assert load_examples(str(path), keep_columns=["source"], **kw) == [
        {"prompt": "What is 2 + 2?", "answer": "4", "source": "amc"}]
    assert load_examples(str(path), keep_columns=[], **kw) == [{"prompt": "What is 2 + 2?", "answer": "4"}]
    assert set(load_examples(str(path), **kw)[0]) == {"prompt", "answer", "source", "generations"}
    with pytest.raises(DataError, match=r"^dataset .+openr1.jsonl \(train\) has no column 'nums' \(data.columns\); "
                                        r"columns: answer, generations, problem, source$"):
        load_examples(str(path), keep_columns=["nums"], **kw)


def test_a_reward_needing_a_dropped_column_fails_at_start_up(tmp_path):
    from rl.config.recipe import ConfigError
    from rl.grpo import load_recipe_and_data
    path = tmp_path / "cd.jsonl"
    path.write_text(json.dumps({"prompt": "Use 3, 5 to make 8", "answer": "8", "nums": [3, 5], "target": 8}) + "\n")
    args = ["recipes/tiny/r1_zero.yaml", f"data.train={path}", "data.test=null", "rewards={countdown: 1.0}"]
    cfg, rows, _ = load_recipe_and_data(args)  # all columns kept: countdown has nums and target
    assert rows[0]["nums"] == [3, 5]
    with pytest.raises(ConfigError, match=r"^reward 'countdown' needs the column\(s\) 'nums', 'target', which the "
                                          r"training data do not have \(columns kept: answer, prompt; data.columns "
                                          r"selects them\)$"):
        load_recipe_and_data([*args, "data.columns=[]"])


def test_a_local_file_loads_without_progress_bars(tmp_path, capfd):
    import uuid
    import datasets
    path = tmp_path / "rows.jsonl"
    path.write_text(json.dumps({"prompt": f"What is 1 + 1? {uuid.uuid4()}", "answer": "2"}) + "\n")  # never cached
    assert len(load_examples(str(path))) == 1
    out, err = capfd.readouterr()
    assert "Generating train split" not in out + err
    assert datasets.is_progress_bar_enabled()  # left as it was, for hub downloads
