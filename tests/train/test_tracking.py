import json

from rl.train.tracking import RunLogger, read_metrics


def test_metrics_jsonl_and_tensorboard(tmp_path):
    logger = RunLogger(tmp_path, report_to="tensorboard")
    logger.log({"loss": 0.5, "reward/mean": 1.0 / 3.0}, step=1)
    logger.log({"eval/accuracy": 0.25}, step=2)
    logger.log_completions([{"completion": "<answer> 1 </answer>", "reward": 1.0}], step=2)
    logger.close()
    assert read_metrics(tmp_path) == [{"step": 1, "loss": 0.5, "reward/mean": 0.333333},
                                      {"step": 2, "eval/accuracy": 0.25}]
    assert json.loads((tmp_path / "completions.jsonl").read_text())["reward"] == 1.0
    assert list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))


def test_non_main_process_writes_nothing(tmp_path):
    logger = RunLogger(tmp_path / "r", enabled=False)
    logger.log({"loss": 1.0}, step=1)
    assert not (tmp_path / "r").exists()
