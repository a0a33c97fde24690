"""2 CPU processes (gloo) with half the batch each == 1 process with the whole batch."""
import os
import subprocess
import sys

import pytest
import torch

from tests.conftest import ROOT

pytestmark = pytest.mark.slow


def run(cmd, **kw):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, **kw)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


MODES = ["grpo", "dapo", "dr_grpo"]


@pytest.fixture(scope="module")
def one_and_two(micro_model_dir, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ddp")
    script = str(ROOT / "tests/e2e/ddp_grads.py")
    run([sys.executable, script, str(micro_model_dir), str(tmp / "one.pt"), ",".join(MODES)])
    run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29531", script,
         str(micro_model_dir), str(tmp / "two.pt"), ",".join(MODES)])
    return torch.load(tmp / "one.pt"), torch.load(tmp / "two.pt")


# bnpo normalises by each process's own token count (as in TRL), so it matches only when processes hold equally
# many tokens; it is left out on purpose.
@pytest.mark.parametrize("mode", MODES)
def test_two_processes_match_one(one_and_two, mode):
    one, two = one_and_two[0][mode], one_and_two[1][mode]
    assert (one["world"], two["world"]) == (1, 2)
    assert one["grads"].abs().max() > 1e-4
    torch.testing.assert_close(two["grads"], one["grads"], rtol=0, atol=1e-5)
    # loss: each process reports its share of its own step; the mean over processes equals the 1-process loss
    assert two["loss"] == pytest.approx(one["loss"], abs=1e-5)
