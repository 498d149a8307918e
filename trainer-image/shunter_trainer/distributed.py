"""Data parallelism under torchrun, and the trivial single-process case.

torchrun starts one worker per process and gives each RANK, LOCAL_RANK, WORLD_SIZE,
MASTER_ADDR and MASTER_PORT. When all of them are present the trainer joins a
process group (`gloo` on the CPU, `nccl` on GPUs, one GPU per local rank) and wraps
the model in DistributedDataParallel; otherwise it is one process, exactly as before.
The operator's Pod environment alone (MASTER_ADDR, WORLD_SIZE, ... but no RANK or
LOCAL_RANK) does not make a plain `python -m standalone_trainer` distributed.

A loop that sets up its own process group (or a framework that does, like the
Transformers Trainer) gets a `Group` over it from `attach()`: the library never
initializes a second one.

The collectives the loop needs beyond DDP's gradient averaging:
- `agree(flag)`: every rank calls it between steps and gets the MAX over all ranks, so
  a stop requested on any rank (torchrun forwards SIGTERM to its workers one after the
  other, and the nodes of a job get theirs at different times) stops every rank
  before the same step;
- `mean(loss)`: the global loss (each rank computes the loss of its shard);
- `share(state)`: rank 0's checkpoint, broadcast, so every rank resumes from the same
  step and weights without the other nodes needing the checkpoint volume;
- `barrier()`: nobody exits before rank 0's final checkpoint is durable.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

TORCHRUN_VARIABLES = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


@dataclass(frozen=True)
class Topology:
    rank: int
    local_rank: int
    world_size: int


def from_environment(env: dict[str, str] | os._Environ[str]) -> Topology | None:
    """The worker's place under torchrun, or None when not started by it."""
    if not all(env.get(name) for name in TORCHRUN_VARIABLES):
        return None
    return Topology(
        rank=int(env["RANK"]), local_rank=int(env["LOCAL_RANK"]), world_size=int(env["WORLD_SIZE"])
    )


def pick_device(topology: Topology | None) -> torch.device:
    if not torch.cuda.is_available():
        return torch.device("cpu")
    return torch.device("cuda", topology.local_rank if topology else 0)


class Solo:
    """One process: every collective is the identity."""

    rank = 0
    local_rank = 0
    world_size = 1
    backend: str | None = None

    def wrap(self, model: nn.Module) -> nn.Module:
        return model

    def agree(self, flag: bool) -> bool:
        return flag

    def mean(self, value: torch.Tensor) -> float:
        return float(value.detach().cpu())

    def share(self, state: dict[str, Any] | None) -> dict[str, Any] | None:
        return state

    def barrier(self) -> None:
        return None

    def close(self) -> None:
        return None


class Group(Solo):
    """A torchrun worker: DDP over a gloo (CPU) or NCCL (GPU) process group."""

    def __init__(self, topology: Topology, device: torch.device, backend: str) -> None:
        self.rank = topology.rank
        self.local_rank = topology.local_rank
        self.world_size = topology.world_size
        self.device = device
        self.backend = backend

    def wrap(self, model: nn.Module) -> nn.Module:
        ids = [self.device.index] if self.device.type == "cuda" else None
        return DistributedDataParallel(model, device_ids=ids)

    def agree(self, flag: bool) -> bool:
        votes = torch.tensor([1.0 if flag else 0.0], device=self.device)
        dist.all_reduce(votes, op=dist.ReduceOp.MAX)
        return bool(votes.item() > 0)

    def mean(self, value: torch.Tensor) -> float:
        total = value.detach().reshape(1).clone()
        dist.all_reduce(total, op=dist.ReduceOp.SUM)
        return float((total / self.world_size).cpu())

    def share(self, state: dict[str, Any] | None) -> dict[str, Any] | None:
        box = [state if self.rank == 0 else None]
        dist.broadcast_object_list(box, src=0, device=self.device)
        return box[0]

    def barrier(self) -> None:
        if self.backend == "nccl":
            dist.barrier(device_ids=[self.device.index])
        else:
            dist.barrier()

    def close(self) -> None:
        # Peers may already be gone after the final barrier: nothing left to agree on.
        with contextlib.suppress(RuntimeError):
            dist.destroy_process_group()


def join(topology: Topology | None, device: torch.device) -> Solo:
    """Initialize the process group torchrun describes (or stay one process)."""
    if topology is None:
        return Solo()
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(device)
        dist.init_process_group(backend, device_id=device)
    else:
        dist.init_process_group(backend)
    return Group(topology, device, backend)


def attach() -> Solo:
    """A Group over the default process group someone else initialized, else Solo."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return Solo()
    backend = str(dist.get_backend())
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    nccl = backend == "nccl"
    device = torch.device("cuda", torch.cuda.current_device()) if nccl else torch.device("cpu")
    topology = Topology(
        rank=dist.get_rank(), local_rank=local_rank, world_size=dist.get_world_size()
    )
    return Group(topology, device, backend)
