"""Server mode with several ranks (rl/rollout/engines/version_gate.py): rank 0's worker pushes only once every worker has
reached the push, and the others wait for the push before generating again; a missing worker is one clear error."""
import os
import time

import pytest
import torch

from rl.core.episode import SamplingParams
from rl.rollout.engines.version_gate import VersionGate, host_gate
from rl.rollout.engines.worker import EngineSpec, RolloutWorker, RolloutWorkerError
from tests.rollout.engines.test_weight_stream import perturbed


def test_push_waits_for_every_worker_and_the_others_wait_for_the_push(micro_model_dir):
    """Two workers on one gate: rank 1's (no push) blocks at version 1 until rank 0's has pushed; rank 0's pushes
    right after rank 1's arrived. Both report version 1 for the next batch; rank 0's engine holds the weights."""
    store, (host, port) = host_gate("127.0.0.1")
    gate = (host, port, 2, 60.0)
    rank0 = RolloutWorker(EngineSpec(engine="hf", model_path=str(micro_model_dir), gate=gate), timeout_s=60)
    rank1 = RolloutWorker(EngineSpec(engine="hf", model_path=str(micro_model_dir), pushes=False, gate=gate),
                          timeout_s=60)
    try:
        model = perturbed(micro_model_dir)
        rank1.push_weights(1, model.named_parameters())
        rank1.timeout_s = 2.0
        with pytest.raises(RolloutWorkerError, match="made no progress for 2s while loading weights version 1"):
            rank1._wait_for_version(1)  # at the gate: rank 0 has not arrived
        assert store.add("arrived/1", 0) == 1 and not store.check(["open/1"])
        rank1.timeout_s = 60.0
        rank0.push_weights(1, model.named_parameters())
        jobs = [(w, w.submit([[5, 6, 7]], SamplingParams(n=1, max_tokens=3, seed=1))) for w in (rank0, rank1)]
        assert [w.result(job)[1] for w, job in jobs] == [1, 1]
        assert store.add("arrived/1", 0) == 2 and store.check(["open/1"])
        held = rank0.engine_weights()
        assert all(torch.equal(held[n], p.detach()) for n, p in model.named_parameters())
    finally:
        rank0.close()
        rank1.close()


def test_a_missing_worker_ends_the_wait_with_one_line():
    store, (host, port) = host_gate("127.0.0.1")
    leader = VersionGate(host, port, workers=2, leader=True, timeout_s=0.5, parent_pid=os.getppid())
    t0 = time.monotonic()
    with pytest.raises(RuntimeError, match=r"^waited 0.5s without progress from any rollout worker for all 2 "
                                           r"rollout workers to reach weights version 3 \(rollout.timeout_s\): a "
                                           r"rollout worker of another rank died or is stuck$"):
        leader.cross(3, lambda: pytest.fail("pushed without the other worker"))
    assert time.monotonic() - t0 < 5


def test_a_slow_but_progressing_worker_is_waited_for_as_long_as_it_takes():
    """timeout_s = 0.5 s; the other worker (a thread standing for its heartbeat) publishes progress every 0.1 s for
    2 s (4x the deadline), then arrives: the leader waits, relays the progress to its own learner (on_progress), and
    pushes once; that progress is not published again by the waiting leader."""
    import threading

    store, (host, port) = host_gate("127.0.0.1")
    relayed, pushed = [], []
    leader = VersionGate(host, port, workers=2, leader=True, timeout_s=0.5, parent_pid=os.getppid(),
                         on_progress=lambda: relayed.append(1))
    other = VersionGate(host, port, workers=2, leader=False, timeout_s=0.5, parent_pid=os.getppid())

    def slow_batch():
        for _ in range(20):
            time.sleep(0.1)
            other.publish()
        store.add("arrived/3", 1)

    thread = threading.Thread(target=slow_batch)
    thread.start()
    leader.cross(3, lambda: pushed.append(1))
    thread.join()
    assert pushed == [1] and len(relayed) >= 5  # ~20 moves of the counter, some coalesced by the 10 ms poll
    assert store.add("progress", 0) == 20  # only the generating worker's own progress


def _gate_rank(rank, init_file, results):
    import torch.distributed as dist

    from rl.rollout.engines.version_gate import share_address
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    store, address = host_gate("127.0.0.1") if rank == 0 else (None, None)
    host, port = share_address(address, rank)
    gate = VersionGate(host, port, workers=2, leader=rank == 0, timeout_s=30, parent_pid=os.getppid())
    pushed = []
    gate.cross(1, lambda: pushed.append(time.monotonic()))
    results.put((rank, port, pushed))
    dist.barrier()  # rank 0's store outlives rank 1's last read
    dist.destroy_process_group()


def test_the_gate_address_reaches_every_rank_of_the_process_group(tmp_path):
    """As start_rollout_worker does it on 2 gloo processes: rank 0 hosts, broadcasts (host, port); both cross."""
    ctx = torch.multiprocessing.get_context("spawn")
    results = ctx.Queue()
    procs = [ctx.Process(target=_gate_rank, args=(r, str(tmp_path / "init"), results)) for r in (0, 1)]
    for p in procs:
        p.start()
    got = sorted(results.get(timeout=60) for _ in procs)
    for p in procs:
        p.join(timeout=60)
    assert [p.exitcode for p in procs] == [0, 0]
    assert got[0][1] == got[1][1]  # the same port on both ranks
    assert len(got[0][2]) == 1 and got[1][2] == []  # rank 0's worker pushed, once; rank 1's did not
