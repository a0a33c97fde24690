"""Where each rank's asynchronous rollout worker runs (rl/rollout/engines/placement.py): one GPU per worker, distinct on a
node; the worker's environment; the one pushing rank of server mode; one-line errors for what cannot work."""
import multiprocessing

import pytest

from rl.rollout.engines.placement import (PlacementError, WorkerPlacement, check_shared_memory, place_worker,
                                  worker_env)

MiB = 2 ** 20


def test_eight_local_ranks_shared_get_eight_distinct_gpus():
    devices = [place_worker(r, 8, 8).device for r in range(8)]
    assert devices == [f"cuda:{r}" for r in range(8)]  # local rank r's worker beside its learner on GPU r
    assert len(set(devices)) == 8


def test_four_ranks_dedicated_take_the_other_four_gpus():
    assert [place_worker(r, 4, 8, "dedicated").device for r in range(4)] == ["cuda:4", "cuda:5", "cuda:6", "cuda:7"]


@pytest.mark.parametrize("local_world,gpus,placement,expected", [
    (2, 2, "shared", ["cuda:0", "cuda:1"]),
    (2, 4, "dedicated", ["cuda:2", "cuda:3"]),
    (2, 0, "shared", ["cpu", "cpu"]),  # CPU: no GPU, every worker on the CPU
    (1, 0, "shared", ["cpu"]),
])
def test_placement_table(local_world, gpus, placement, expected):
    assert [place_worker(r, local_world, gpus, placement).device for r in range(local_world)] == expected


def test_server_mode_has_one_pushing_rank():
    """2 nodes x 8: only global rank 0's worker pushes to the server (one NCCL communicator, one port)."""
    pushes = [place_worker(rank % 8, 8, 8, rank=rank, server=True).pushes for rank in range(16)]
    assert pushes == [True] + [False] * 15
    assert all(place_worker(r, 8, 8, rank=r).pushes for r in range(8))  # colocated engines: each its own


@pytest.mark.parametrize("args,message", [
    ((0, 8, 4, "shared"), "rollout.worker_devices=shared with 8 processes per node needs 8 visible GPUs, 4 are "
                          "visible"),
    ((0, 8, 8, "dedicated"), "rollout.worker_devices=dedicated with 8 processes per node needs 16 visible GPUs, 8 "
                             "are visible (or use worker_devices=shared)"),
    ((0, 2, 0, "dedicated"), "rollout.worker_devices=dedicated needs GPUs (none visible): use shared on CPU"),
    ((0, 2, 2, "colocated"), "rollout.worker_devices='colocated' is not one of: shared, dedicated"),
    ((2, 2, 2, "shared"), "local rank 2 outside a node of 2 processes"),
])
def test_impossible_placements_are_one_line_errors(args, message):
    with pytest.raises(PlacementError) as e:
        place_worker(*args)
    assert str(e.value) == message and "\n" not in str(e.value)


def test_dedicated_server_is_refused():
    with pytest.raises(PlacementError, match=r"^rollout.worker_devices=dedicated with rollout.vllm_mode=server: the "
                                             r"server owns the rollout GPUs \(use worker_devices=shared\)$"):
        place_worker(0, 2, 4, "dedicated", server=True)


def test_worker_env_names_one_gpu_and_drops_the_launcher_variables():
    parent = {"PATH": "/bin", "RANK": "3", "LOCAL_RANK": "3", "WORLD_SIZE": "8", "MASTER_ADDR": "n1",
              "MASTER_PORT": "29500", "LOCAL_WORLD_SIZE": "8", "CUDA_VISIBLE_DEVICES": "4,5,6,7"}
    env = worker_env(WorkerPlacement("cuda:2", True), parent)
    assert env == {"PATH": "/bin", "CUDA_VISIBLE_DEVICES": "6"}  # index 2 of the parent's list
    assert worker_env(WorkerPlacement("cuda:5", True), {"RANK": "5"}) == {"CUDA_VISIBLE_DEVICES": "5"}
    assert worker_env(WorkerPlacement("cpu", True), {"RANK": "1", "HOME": "/h"}) == {"HOME": "/h",
                                                                                    "CUDA_VISIBLE_DEVICES": ""}
    with pytest.raises(PlacementError, match="worker device cuda:2 but CUDA_VISIBLE_DEVICES=0,1 lists 2 GPU"):
        worker_env(WorkerPlacement("cuda:2", True), {"CUDA_VISIBLE_DEVICES": "0,1"})


def _report_env(q):
    import os
    q.put({k: os.environ.get(k) for k in ("CUDA_VISIBLE_DEVICES", "RANK", "MASTER_PORT", "KEEP")})


def test_spawned_worker_process_starts_with_that_environment(monkeypatch):
    """The worker is spawned inside `_environment(env)`: the child sees env, the parent's own is restored."""
    import os

    from rl.rollout.engines.worker import _environment
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("MASTER_PORT", "29500")
    monkeypatch.setenv("KEEP", "yes")
    env = worker_env(WorkerPlacement("cuda:1", True), dict(os.environ))
    ctx = multiprocessing.get_context("spawn")
    q = ctx.Queue()
    p = ctx.Process(target=_report_env, args=(q,))
    with _environment(env):
        p.start()
    assert (os.environ["RANK"], os.environ["MASTER_PORT"]) == ("1", "29500")  # restored in the parent
    seen = q.get(timeout=60)
    p.join(timeout=60)
    assert seen == {"CUDA_VISIBLE_DEVICES": "1", "RANK": None, "MASTER_PORT": None, "KEEP": "yes"}


def test_shared_memory_too_small_is_one_line_naming_size_and_shm_size():
    check_shared_memory(32 * MiB, 2, 64 * MiB)  # exactly enough: 2 x 32 MiB
    with pytest.raises(PlacementError) as e:
        check_shared_memory(32 * MiB, 8, 64 * MiB)  # Docker's default 64 MB, 8 workers x 32 MiB = 256 MiB
    assert str(e.value) == ("rollout.push_bucket_mb=32 x 8 rollout worker(s) need 256 MiB of shared memory, /dev/shm "
                            "has 64 MiB free: start the container with --shm-size=1g (or lower "
                            "rollout.push_bucket_mb)")
    with pytest.raises(PlacementError, match=r"need 1024 MiB .* --shm-size=2g"):
        check_shared_memory(128 * MiB, 8, 512 * MiB)


class Spawned(Exception):
    pass


def _spawn(*args, **kwargs):
    raise Spawned


@pytest.mark.parametrize("overrides,expected", [
    ([], "rollout.push_bucket_mb=32 x 4 rollout worker(s) need 128 MiB of shared memory, /dev/shm has 64 MiB free"),
    (["rollout.push_bucket_mb=16"], None),  # 4 x 16 MiB fit in 64 MiB
    (["rollout.engine=vllm", "rollout.vllm_mode=server"], None),  # one bucket per node: rank 0's worker only
])
def test_start_rollout_worker_checks_dev_shm_before_spawning(monkeypatch, overrides, expected):
    """The check runs before any process starts, for the buckets of this node's workers (4 local ranks here)."""
    import collections
    import shutil

    from rl.config.grpo import GRPOConfig
    from rl.config.recipe import load_config
    from rl.rollout.engines import worker as worker_module
    cfg = load_config(GRPOConfig, "recipes/tiny/r1_zero.yaml", ["rollout.async_steps=1", *overrides])
    usage = collections.namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(64 * MiB, 0, 64 * MiB))
    monkeypatch.setattr(worker_module, "RolloutWorker", _spawn)
    start = dict(seed=0, max_model_len=64, rank=0, local_rank=0, local_world=4)
    if expected is None:
        with pytest.raises(Spawned):
            worker_module.start_rollout_worker(cfg, "unused", **start)
    else:
        with pytest.raises(PlacementError) as e:
            worker_module.start_rollout_worker(cfg, "unused", **start)
        assert str(e.value).startswith(expected)
