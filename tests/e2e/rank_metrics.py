"""2 processes (torchrun, gloo) reduce one step's metrics where rank 1's reward reports no counters: rank 0 scores
programs (the `tested` reward below counts tests run and passed, as the `code` reward does), rank 1 plain answers (no
counters, so no `rewards/tested/pass_rate` key). Each rank writes what rl/train/rank_metrics.py's metrics_over_ranks returned to
OUT/rank<r>.json. Used by tests/e2e/test_distributed.py::test_ranks_with_different_metric_keys.

    python -m torch.distributed.run --nproc_per_node 2 tests/e2e/rank_metrics.py OUT
"""
import json
import sys
from pathlib import Path

_counts: dict[str, float] = {}


def tested(completions, **columns):
    """1.0 for a program (a `def`); a program "runs one test", passed when it returns something."""
    out = []
    for text in completions:
        if "def " in text:
            _counts["tests_run"] = _counts.get("tests_run", 0.0) + 1
            _counts["tests_passed"] = _counts.get("tests_passed", 0.0) + ("return" in text)
        out.append(1.0 if "def " in text else 0.0)
    return out


def _drain() -> dict[str, float]:
    got = dict(_counts)
    _counts.clear()
    return got


def _summarize(counts: dict[str, float]) -> dict[str, float]:
    return {"pass_rate": counts["tests_passed"] / counts["tests_run"], "tests_run": counts["tests_run"]}


tested.drain_metrics, tested.summarize = _drain, _summarize


def main(out: Path) -> None:
    import torch

    from rewards import RewardScorer
    from rl.train.rank_metrics import metrics_over_ranks

    torch.distributed.init_process_group("gloo")
    rank = torch.distributed.get_rank()
    completions = [["def f(): return 1", "def g(): pass"], ["7", "8"]][rank]
    with RewardScorer({"tests.e2e.rank_metrics:tested": 1.0}, num_workers=0) as scorer:
        metrics = dict(scorer.score(completions, {"answer": ["7", "7"]}).metrics)
    metrics.pop("time/score_s")
    metrics = {k: v for k, v in metrics.items() if not k.endswith("/time_s")}  # wall times differ by rank
    metrics.update({"loss": 1.0 + 2.0 * rank, "rollout/logprob_diff_max": [0.5, 0.1][rank],
                    "rollout/prompts_truncated": float(rank)})
    keys = sorted(metrics)
    reduced = metrics_over_ranks(metrics, torch.device("cpu"))
    (out / f"rank{rank}.json").write_text(json.dumps({"keys": keys, "reduced": reduced}))
    torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main(Path(sys.argv[1]))
