"""The README's own-data example, run as written: a JSONL with `problem`/`solution` columns, trained on with the
tiny recipe (4 GRPO steps), then evaluated by rl/evaluate.py with the same column keys (issue 30).

The commands are read from the README block under the `own-data example` marker, so the README cannot drift from
what is tested; only `python` (this interpreter) and the repository paths (`rl/`, `recipes/`) are made absolute, and
the data files are written into the test's working directory."""
import json
import os
import re
import shlex
import subprocess
import sys

import pytest

from data.tasks import arithmetic_dataset
from tests.conftest import ROOT

pytestmark = pytest.mark.slow

MARKER = "<!-- own-data example: tests/e2e/test_own_data.py runs these two blocks as written -->"


def readme_reward_file() -> str:
    """The example's reward file (the python block after the marker)."""
    text = (ROOT / "README.md").read_text()
    return text.split(MARKER, 1)[1].split("```python\n", 1)[1].split("```", 1)[0]


def readme_commands() -> list[list[str]]:
    """The example's commands as argv lists: comments dropped, `\\` continuations joined."""
    text = (ROOT / "README.md").read_text()
    block = text.split(MARKER, 1)[1].split("```bash\n", 1)[1].split("```", 1)[0]
    joined = re.sub(r"\\\n\s*", " ", block)
    return [shlex.split(line) for line in joined.splitlines() if line.strip() and not line.startswith("#")]


def test_the_readme_block_is_found():
    cmds = readme_commands()
    assert [c[:2] for c in cmds] == [["python", "rl/grpo.py"], ["python", "rl/evaluate.py"]]
    assert "data.prompt_column=problem" in cmds[0] and "data.prompt_column=problem" in cmds[1]
    assert "rewards.my_rewards.py:short_answer=0.2" in cmds[0]
    assert readme_reward_file().startswith("# my_rewards.py")


def test_own_data_example_end_to_end(tmp_path):
    # 30 + 10 word problems of the tiny world, as a user's file: `problem`, and a GSM8K-style worked `solution`
    train, test = arithmetic_dataset(30, 10, seed=7)
    for name, rows in (("problems.jsonl", train), ("problems_test.jsonl", test)):
        (tmp_path / name).write_text("".join(json.dumps({"problem": r["prompt"], "solution": f"... #### {r['answer']}"})
                                             + "\n" for r in rows))
    (tmp_path / "my_rewards.py").write_text(readme_reward_file())
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    outputs = []
    for cmd in readme_commands():
        argv = [sys.executable] + [str(ROOT / a) if a.startswith(("rl/", "recipes/")) else a for a in cmd[1:]]
        proc = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
        assert proc.returncode == 0, proc.stderr[-3000:]
        outputs.append(proc.stdout)
    train_out, eval_out = outputs
    # what the run says about the rows it used: 4 steps x (64 / 8) prompts = 32 drawn; 32 / 30 = 1.07 passes
    assert ("[grpo] training: 30 rows of problems.jsonl (train; prompt column 'problem', gold column 'solution'; "
            "data.num_train=2000 applies to procedural tasks only: a file is used whole); 32 prompts drawn over the "
            "run (1.07 passes)") in train_out
    assert "[grpo] evaluation: 10 rows of problems_test.jsonl (test)" in train_out
    run = tmp_path / "runs" / "mine"
    assert "answer_column: solution" in (run / "config.yaml").read_text()
    evals = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()
             if "eval/accuracy" in line]
    assert [e["step"] for e in evals] == [0, 4]
    # the reward named by its file's path ran in the scorer's worker processes, every step
    steps = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if '"loss"' in line]
    assert len(steps) == 4 and all(0.0 <= m["rewards/my_rewards.py:short_answer/mean"] <= 1.0 for m in steps)
    # the evaluation read the same file with the same column key: 10 problems, judged against `solution`
    results = json.loads((run / "eval" / "results.json").read_text())
    (row,) = results.values()
    assert row["num_problems"] == 10 and 0.0 <= row["eval/accuracy"] <= 1.0 and row["eval/format"] > 0.5
    assert "[evaluate] problems_test.jsonl: 10 problems" in eval_out
