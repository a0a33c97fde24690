"""recipes/accelerate/slurm_multinode.sh run under stand-ins for srun/scontrol/curl: what it would start (issue 16,
defect 4: the header promised data parallelism on the vLLM node but the server started one TP=1 engine)."""
from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "recipes" / "accelerate" / "slurm_multinode.sh"
FAKES = {
    "scontrol": "#!/bin/bash\nprintf 'n0\\nn1\\nn2\\n'\n",
    "srun": '#!/bin/bash\necho "$*" >> "$SRUN_LOG"\n',  # one line per srun: its arguments
    "curl": "#!/bin/bash\nexit 0\n",
}


def launch(tmp_path, **env) -> subprocess.CompletedProcess:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    for name, body in FAKES.items():
        (bin_dir / name).write_text(body)
        (bin_dir / name).chmod(stat.S_IRWXU)
    full_env = dict(os.environ, PATH=f"{bin_dir}:{os.environ['PATH']}", SLURM_JOB_NODELIST="n[0-2]",
                    MODEL="/shared/model", SRUN_LOG=str(tmp_path / "srun.log"), **env)
    return subprocess.run(["bash", str(SCRIPT), "run.yaml"], env=full_env, cwd=tmp_path, capture_output=True,
                          text=True, timeout=60)


def server_args(tmp_path) -> list[str]:
    server = (tmp_path / "srun.log").read_text().splitlines()[0]
    assert "-w n2" in server and "vllm.entrypoints.openai.api_server" in server
    return server.split()


@pytest.mark.parametrize("tp, dp", [(None, 8), ("2", 4), ("8", 1)])
def test_the_vllm_node_uses_all_eight_gpus(tmp_path, tp, dp):
    result = launch(tmp_path, **({"VLLM_TP": tp} if tp else {}))
    assert result.returncode == 0, result.stderr
    args = server_args(tmp_path)
    tp_used = int(args[args.index("--tensor-parallel-size") + 1])
    assert (tp_used, int(args[args.index("--data-parallel-size") + 1])) == (int(tp or 1), dp)
    assert "http://n2:8000" in result.stdout


def test_a_split_that_is_not_eight_gpus_stops(tmp_path):
    result = launch(tmp_path, VLLM_TP="3")
    assert result.returncode != 0 and "must be 8" in result.stdout
