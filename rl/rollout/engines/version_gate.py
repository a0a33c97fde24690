"""Server mode with several learner processes: W rollout workers share one vLLM server, so a weight push is a
moment all of them must agree on (I/O, a TCP key-value store).

Without it, only rank 0's worker pushes (rl/rollout/engines/placement.py) and the others acknowledge a version the server
may not hold yet: rank 1 could start generating the batch labelled version v while rank 0 is still generating with
v - 1 (staleness under-reported), or while the push is half done (a batch from a mixture of two versions).

With the gate, each worker, when the "weights v" command comes up in its queue (its batches before the push are
generated), arrives at the gate; the leader (rank 0's worker) waits until all W have arrived, pushes v to the
server, then opens the gate; the others wait for it to open before their next command. So every batch is generated
by exactly one version, the one reported, on every rank:

    rank 0 worker:  ... G(s+1) | arrive v, wait for W arrivals | push v | open v | G(s+2) ...
    rank 1 worker:  ... G(s+1)    | arrive v, wait until v is open            | G(s+2) ...

The cost is the usual one of a shared engine: the fastest worker waits for the slowest batch. The store is a
`torch.distributed.TCPStore` hosted by rank 0's learner process on a free port (`host_gate`); its address reaches
the other ranks through the learner's process group (`share_address`), and every worker connects as a client.

Deadlines measure silence, as everywhere in the rollout path: each worker's heartbeat adds its engine's progress to a
shared counter in the store (`publish`, from the heartbeat thread, over a connection of its own), and a worker waiting
at the gate starts its `rollout.timeout_s` again whenever the counter moves, and tells its own learner (`on_progress`)
so that the learner's silence deadline holds too: a rank whose batch is long but progressing keeps the others waiting
as long as it takes. Progress relayed that way is not published again (waiting workers would otherwise keep one
another alive forever). A worker that dies or hangs leaves the counter still; the others fail `rollout.timeout_s`
later with one line naming the gate.
"""
from __future__ import annotations

import datetime
import os
import time
from typing import Callable


def host_gate(host: str):
    """The store (kept alive by the caller, rank 0's learner) and its address (host, port)."""
    import torch.distributed as dist
    store = dist.TCPStore(host, 0, is_master=True, wait_for_workers=False,
                          timeout=datetime.timedelta(seconds=60))
    return store, (host, store.port)


def share_address(address, rank: int):
    """Rank 0's (host, port) on every rank (a collective of the learner's process group)."""
    import torch.distributed as dist
    box = [address if rank == 0 else None]
    dist.broadcast_object_list(box, src=0)
    return tuple(box[0])


class VersionGate:
    """A worker's side of the gate. `leader`: the worker that pushes (rank 0's)."""

    def __init__(self, host: str, port: int, workers: int, leader: bool, timeout_s: float, parent_pid: int,
                 on_progress: Callable[[], None] | None = None):
        import torch.distributed as dist
        self.store = dist.TCPStore(host, port, is_master=False, timeout=datetime.timedelta(seconds=timeout_s))
        self.workers, self.leader, self.timeout_s, self.parent_pid = workers, leader, timeout_s, parent_pid
        self.host, self.port = host, port
        self.on_progress = on_progress  # told when another worker's progress moves the shared counter
        self._publisher = None  # the heartbeat thread's own connection

    def publish(self) -> None:
        """This worker's engine made progress (called from its heartbeat thread, at most once per heartbeat)."""
        if self._publisher is None:
            import torch.distributed as dist
            self._publisher = dist.TCPStore(self.host, self.port, is_master=False,
                                            timeout=datetime.timedelta(seconds=self.timeout_s))
        self._publisher.add("progress", 1)

    def cross(self, version: int, push: Callable[[], None]) -> None:
        """Arrive for `version`; the leader waits for everyone, runs `push`, opens; the others wait for the opening."""
        arrived = self.store.add(f"arrived/{version}", 1)
        if self.leader:
            self._wait(lambda: arrived >= self.workers or self.store.add(f"arrived/{version}", 0) >= self.workers,
                       f"all {self.workers} rollout workers to reach weights version {version}")
            push()
            self.store.set(f"open/{version}", "1")
        else:
            self._wait(lambda: self.store.check([f"open/{version}"]),
                       f"rank 0's rollout worker to push weights version {version} to the server")

    def _wait(self, ready: Callable[[], bool], what: str) -> None:
        deadline = time.monotonic() + self.timeout_s
        seen = self.store.add("progress", 0)
        while not ready():
            if os.getppid() != self.parent_pid:
                raise RuntimeError(f"learner process gone while waiting for {what}")
            progress = self.store.add("progress", 0)
            if progress != seen:  # another worker is still generating: the deadline starts again
                seen, deadline = progress, time.monotonic() + self.timeout_s
                if self.on_progress is not None:
                    self.on_progress()
            elif time.monotonic() > deadline:
                raise RuntimeError(f"waited {self.timeout_s:g}s without progress from any rollout worker for {what} "
                                   f"(rollout.timeout_s): a rollout worker of another rank died or is stuck")
            time.sleep(0.01)
