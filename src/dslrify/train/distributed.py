"""DistributedDataParallel plumbing for ``torchrun``: who am I, set up, check ranks agree, tear down.

Under ``torchrun --nproc_per_node N dslrify train ...`` each process reads RANK/WORLD_SIZE/LOCAL_RANK
from the environment. Backend: NCCL on CUDA, gloo on CPU. Only rank 0 writes files.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from dslrify.errors import DslrifyError


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_env(cls) -> DistInfo:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        return cls(int(os.environ.get("RANK", "0")), world, int(os.environ.get("LOCAL_RANK", "0")))


def init(info: DistInfo, device: torch.device) -> None:
    """Join the process group (no-op for a single process)."""
    if not info.enabled or dist.is_initialized():
        return
    backend = "nccl" if device.type == "cuda" else "gloo"
    dist.init_process_group(backend=backend, rank=info.rank, world_size=info.world)


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


def broadcast_flag(info: DistInfo, value: bool, device: torch.device) -> bool:
    """Rank 0's boolean, on every rank (e.g. 'stop now')."""
    if not info.enabled:
        return value
    t = torch.tensor([1.0 if value else 0.0], device=device)
    dist.broadcast(t, src=0)
    return bool(t.item())


def check_in_sync(info: DistInfo, model: torch.nn.Module, device: torch.device) -> float:
    """Largest difference between ranks of a weight checksum; raises if the ranks drifted apart."""
    if not info.enabled:
        return 0.0
    with torch.no_grad():
        total = torch.stack([p.double().sum() for p in model.parameters()]).sum().to(device).view(1)
    low, high = total.clone(), total.clone()
    dist.all_reduce(low, op=dist.ReduceOp.MIN)
    dist.all_reduce(high, op=dist.ReduceOp.MAX)
    gap = float(high - low)
    if gap > 1e-6 * max(1.0, abs(float(total))):
        raise DslrifyError(f"DDP ranks drifted apart: weight checksums differ by {gap:g}")
    return gap


def shutdown(info: DistInfo) -> None:
    if info.enabled and dist.is_initialized():
        dist.destroy_process_group()
