"""A user's mistakes, run as a user runs them: every one ends in one line, with its exit code, before output_dir
exists. Each row is (argv, files to create first, expected last line of the output (regex), exit code)."""
import os
import re
import subprocess
import sys

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.slow
TINY = "recipes/tiny/r1_zero.yaml"
FILES = {
    "bad.yaml": "model:\n  name_or_path: tiny\n data: [unclosed\n",
    "mytrain": '{"prompt": "1+1?", "answer": "2"}\n',
    "rows.csv": "question,answer\n1+1?,2\n",
    "empty.jsonl": "",
    "bad_line.jsonl": '{"prompt": "1+1?", "answer": "2"}\n{"prompt": "2+2?", answer: 4}\n',
    "old_run/metrics.jsonl": '{"step": 40}\n',
}
ROWS = [
    ("grpo.py", [TINY, "model.name_or_path=/does/not/exist"], r"error: model\.name_or_path '/does/not/exist': no such directory", 2),
    ("grpo.py", [TINY, "model.name_or_path=nobody/no-such-model"],
     r"error: model\.name_or_path 'nobody/no-such-model': no such directory, and no cached copy of that hub model "
     r"while offline \(HF_HUB_OFFLINE=1\)", 2),
    ("grpo.py", ["{tmp}/bad.yaml"], r"error: recipe \S+/bad\.yaml: invalid YAML at line 3, column 2: .+", 2),
    ("grpo.py", [TINY, "data.train={tmp}/mytrain"],
     r"error: dataset \S+/mytrain: a local file without a known suffix; name the file \.jsonl, \.json, \.parquet "
     r"or \.csv", 2),
    ("grpo.py", [TINY, "data.train=nobody/no-such-dataset"],
     r"error: dataset 'nobody/no-such-dataset': no such local file \(\.jsonl/\.json/\.parquet/\.csv\), and the hub "
     r"dataset could not be loaded while offline \(HF_HUB_OFFLINE=1\) and not in the local cache", 2),
    ("grpo.py", [TINY, "data.train={tmp}/rows.csv"],  # read (not "not found"): its columns are listed
     r"error: dataset \S+/rows\.csv \(train\) has no column 'prompt'; columns: answer, question .+", 2),
    ("grpo.py", [TINY, "data.train={tmp}/empty.jsonl"], r"error: dataset file \S+/empty\.jsonl is empty", 2),
    ("grpo.py", [TINY, "data.train={tmp}/bad_line.jsonl"],
     r"error: dataset file \S+/bad_line\.jsonl line 2: not valid JSON \(Expecting property name enclosed in double "
     r"quotes\)", 2),
    ("grpo.py", [TINY, "output_dir={tmp}/old_run"],
     r"error: output_dir \S+/old_run already holds a run \(metrics\.jsonl\); pass resume=auto to continue it, "
     r"overwrite=true to delete it and start over, or choose another output_dir", 2),
    ("grpo.py", [TINY, "--lr", "3"], r"error: unknown option '--lr': .+", 2),
    ("grpo.py", [], r"error: no recipe given", 2),
    ("grpo.py", ["--help"], r"Multi-process: accelerate launch .+", 0),
    ("sft.py", ["-h"], r"Multi-process: accelerate launch .+", 0),
    ("sft.py", ["recipes/tiny/cold_start_sft.yaml", "model.name_or_path=/does/not/exist"],
     r"error: model\.name_or_path '/does/not/exist': no such directory", 2),
    ("distill.py", ["recipes/tiny/distill.yaml", "teacher.name_or_path=/does/not/exist"],
     r"error: teacher\.name_or_path '/does/not/exist': no such directory", 2),
    ("distill.py", ["recipes/tiny/distill.yaml", "data.filter_overlong_prompts=true"],  # GRPO's key, not a no-op
     r"error: data\.filter_overlong_prompts is a GRPO key: distillation keeps every prompt \(raise "
     r"rollout\.max_prompt_length to fit long ones\)", 2),
    ("evaluate.py", ["/does/not/exist"], r"error: model_dir '/does/not/exist': no such directory", 2),
]


def run(cmd, tmp_path):
    for name, text in FILES.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


def fill(args, tmp_path):
    out = tmp_path / "out"
    args = [a.format(tmp=tmp_path) for a in args]
    if args and args[0].endswith(".yaml") and not any(a.startswith("output_dir=") for a in args):
        args.append(f"output_dir={out}")
    return args, out


@pytest.mark.parametrize("script, args, expected, code", ROWS, ids=[" ".join(r[1])[-50:] or "no args" for r in ROWS])
def test_python_ends_with_one_line(tmp_path, script, args, expected, code):
    args, out = fill(args, tmp_path)
    proc = run([sys.executable, f"rl/{script}", *args], tmp_path)
    stream = proc.stdout if code == 0 else proc.stderr
    lines = stream.strip().splitlines()
    assert proc.returncode == code, proc.stderr[-3000:]
    assert re.fullmatch(expected, lines[-1]), lines[-5:]
    if code:
        assert [line for line in lines if line.startswith(("Traceback", "error:"))] == [lines[-1]]
        assert not out.exists()  # nothing written: no config.yaml, no output_dir


@pytest.mark.parametrize("row", [0, 6, 8])
def test_accelerate_launch_quiet_ends_with_the_same_line(tmp_path, row):
    """`accelerate launch -q` ends with the same line; accelerate's simple launcher exits 1 for any failure (without
    -q it adds a CalledProcessError traceback): that is why the README's single-process line is plain `python`."""
    script, args, expected, _ = ROWS[row]
    args, out = fill(args, tmp_path)
    proc = run([sys.executable, "-m", "accelerate.commands.launch", "-q", "--num_processes", "1", f"rl/{script}",
                *args], tmp_path)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 1
    assert re.fullmatch(expected, lines[-1]), lines[-5:]
    assert not any(line.startswith("Traceback") for line in lines)
