"""Where each rank's asynchronous rollout worker runs (pure: numbers in, a decision out), and the environment its
process starts with.

With `rollout.async_steps > 0` every learner process (rank) starts one rollout worker process (rl/rollout/engines/worker.py)
holding its own engine. On a node of D visible GPUs running L learner processes (local ranks 0..L-1, the learner of
local rank r on GPU r):

    rollout.worker_devices = shared      worker of local rank r on GPU r, beside its learner       needs D >= L
                                         (vLLM: rollout.vllm_gpu_memory_utilization leaves the learner its room)
    rollout.worker_devices = dedicated   worker of local rank r on GPU L + r, a GPU of its own     needs D >= 2 L

    8 GPUs, 8 processes, shared:     learners 0..7, workers 0..7
    8 GPUs, 4 processes, dedicated:  learners 0..3, workers 4..7
    no GPU:                          every worker on "cpu" (shared only: there is nothing to dedicate)

The worker process sees exactly one GPU: its CUDA_VISIBLE_DEVICES names that GPU's id as the parent sees it (the
parent's own CUDA_VISIBLE_DEVICES maps index -> id), so inside the worker it is cuda:0. That is what vLLM's
single-process executor takes (it always uses local device 0), and what the transformers engine moves to. The
launcher's rendezvous variables (RANK, LOCAL_RANK, WORLD_SIZE, MASTER_ADDR, ...) are removed from the worker's
environment: an engine must not mistake itself for one rank of the learner's process group.

Server mode (`rollout.vllm_mode = server`): the engine is the server's, the worker only sends HTTP requests; the
weights are pushed to the server by one designated worker (global rank 0's: `pushes`), the others skip the push, so
one NCCL communicator is opened on one port instead of one per rank on the same port; the workers meet at a gate
around each push so that every rank's batches come from one version (rl/rollout/engines/version_gate.py). `dedicated` has
no meaning there (the server owns its GPUs) and is refused.
"""
from __future__ import annotations

from dataclasses import dataclass

from rl.config.recipe import ConfigError

PLACEMENTS = ("shared", "dedicated")
# set by torchrun / accelerate for the learner's process group; an engine's own torch.distributed must not see them
LAUNCHER_VARIABLES = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "GROUP_RANK", "ROLE_RANK",
                      "ROLE_WORLD_SIZE", "GROUP_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT", "TORCHELASTIC_RUN_ID",
                      "TORCHELASTIC_RESTART_COUNT", "TORCHELASTIC_MAX_RESTARTS", "ACCELERATE_USE_DEEPSPEED",
                      "ACCELERATE_USE_FSDP", "ACCELERATE_DEEPSPEED_ZERO_STAGE")


class PlacementError(ConfigError):
    """A placement that cannot work on this node (one line, naming the keys to change)."""


@dataclass(frozen=True)
class WorkerPlacement:
    device: str  # "cpu" | "cuda:<index among the parent's visible GPUs>"
    pushes: bool  # this rank's worker delivers the weights to its engine (False: a server fed by another rank)

    @property
    def gpu_index(self) -> int | None:
        return None if self.device == "cpu" else int(self.device.split(":")[1])


def place_worker(local_rank: int, local_world: int, num_devices: int, placement: str = "shared", rank: int = 0,
                 server: bool = False) -> WorkerPlacement:
    """The device of local rank `local_rank`'s worker on a node of `num_devices` visible GPUs (0 = CPU) running
    `local_world` learner processes; `rank` is the global rank (server mode: rank 0's worker pushes)."""
    if placement not in PLACEMENTS:
        raise PlacementError(f"rollout.worker_devices={placement!r} is not one of: {', '.join(PLACEMENTS)}")
    if not 0 <= local_rank < local_world:
        raise PlacementError(f"local rank {local_rank} outside a node of {local_world} processes")
    if server and placement == "dedicated":
        raise PlacementError("rollout.worker_devices=dedicated with rollout.vllm_mode=server: the server owns the "
                             "rollout GPUs (use worker_devices=shared)")
    pushes = rank == 0 if server else True
    if num_devices == 0:
        if placement == "dedicated":
            raise PlacementError("rollout.worker_devices=dedicated needs GPUs (none visible): use shared on CPU")
        return WorkerPlacement("cpu", pushes)
    need = local_world * (2 if placement == "dedicated" else 1)
    if num_devices < need:
        raise PlacementError(f"rollout.worker_devices={placement} with {local_world} processes per node needs "
                             f"{need} visible GPUs, {num_devices} are visible"
                             + (" (or use worker_devices=shared)" if placement == "dedicated" else ""))
    index = local_rank + (local_world if placement == "dedicated" else 0)
    return WorkerPlacement(f"cuda:{index}", pushes)


def worker_env(where: WorkerPlacement, parent_env: dict[str, str]) -> dict[str, str]:
    """The environment the worker process starts with: the parent's, without the launcher's rendezvous variables,
    and with CUDA_VISIBLE_DEVICES naming the worker's one GPU ("" on CPU: no GPU at all).

    Example: parent CUDA_VISIBLE_DEVICES="4,5,6,7", device cuda:2 -> the worker's CUDA_VISIBLE_DEVICES="6"."""
    env = {k: v for k, v in parent_env.items() if k not in LAUNCHER_VARIABLES}
    if where.gpu_index is None:
        env["CUDA_VISIBLE_DEVICES"] = ""
        return env
    ids = [s.strip() for s in parent_env.get("CUDA_VISIBLE_DEVICES", "").split(",") if s.strip()]
    if ids and where.gpu_index >= len(ids):
        raise PlacementError(f"worker device {where.device} but CUDA_VISIBLE_DEVICES={parent_env['CUDA_VISIBLE_DEVICES']}"
                             f" lists {len(ids)} GPU(s)")
    env["CUDA_VISIBLE_DEVICES"] = ids[where.gpu_index] if ids else str(where.gpu_index)
    return env


def check_shared_memory(bucket_bytes: int, workers_on_node: int, free_bytes: int) -> None:
    """One-line error unless /dev/shm has room for every worker's push bucket on this node (a write past the end of
    a full /dev/shm is a SIGBUS, not an exception: Docker's default --shm-size is 64 MB).

    Example: 32 MiB buckets, 8 workers, 64 MiB free -> "... needs 256 MiB ... --shm-size=1g ..."."""
    need = bucket_bytes * workers_on_node
    if free_bytes >= need:
        return
    mib = 2 ** 20
    suggest = max(1, -(-2 * need // 2 ** 30))  # twice the need, whole GiB
    raise PlacementError(f"rollout.push_bucket_mb={bucket_bytes // mib} x {workers_on_node} rollout worker(s) need "
                         f"{need // mib} MiB of shared memory, /dev/shm has {free_bytes // mib} MiB free: start the "
                         f"container with --shm-size={suggest}g (or lower rollout.push_bucket_mb)")
