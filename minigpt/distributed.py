"""Several processes under torchrun: the process group, which rank does what, and agreeing on errors.

    torchrun --nproc_per_node=K -m minigpt.train [flags]

torchrun sets RANK, LOCAL_RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT; without them minigpt-train is
one plain process. A step's micro-batches (--grad-accum of them in all) are shared among the ranks:
rank r of K takes micro-batches r*A/K ... (r+1)*A/K - 1, each keyed as data/loader.py says, so K processes
draw exactly the windows of one process, and DDP's gradient average makes the same update.

Rank 0 alone prints, writes metrics and checkpoints. Decisions that only rank 0 makes (is the run
folder free, what does the checkpoint hold) go through `agree`, so that an error stops every rank
with the same message instead of leaving the others waiting in a collective.
"""

from __future__ import annotations

import gc
import os
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist

from .errors import UserError


def launched() -> bool:
    """True under torchrun (or anything else that sets its environment variables)."""
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def env_rank() -> int:
    return int(os.environ.get("RANK", "0"))


@dataclass
class Dist:
    rank: int = 0
    world_size: int = 1
    enabled: bool = False  # a process group exists (launched by torchrun, even with one process)
    cpu_group: object = None  # gloo, for agreeing on flags and objects without touching the GPU stream

    @property
    def main(self) -> bool:
        return self.rank == 0

    def agree(self, fn):
        """fn() on rank 0; its result, or its UserError, on every rank."""
        result, error = None, None
        if self.main:
            try:
                result = fn()
            except UserError as e:
                error = e
        if self.enabled:
            box = [(result, error)]
            dist.broadcast_object_list(box, src=0, group=self.cpu_group)
            result, error = box[0]
        if error is not None:
            raise error
        return result

    def any(self, flag: bool) -> bool:
        """True on every rank when it is true on any (a stop signal reaching one rank stops all)."""
        if not self.enabled:
            return flag
        t = torch.tensor([int(flag)])
        dist.all_reduce(t, op=dist.ReduceOp.MAX, group=self.cpu_group)
        return bool(t.item())

    def sum(self, t: torch.Tensor) -> torch.Tensor:
        if self.enabled:
            dist.all_reduce(t, op=dist.ReduceOp.SUM)
        return t

    def gather(self, obj) -> list:
        if not self.enabled:
            return [obj]
        out = [None] * self.world_size
        dist.all_gather_object(out, obj, group=self.cpu_group)
        return out

    def close(self, clean: bool) -> None:
        """After a clean finish, all ranks meet first (gloo aborts a process whose peer hangs up during
        teardown); after an error this rank may be alone, so it leaves at once and torchrun stops the rest."""
        if self.enabled and dist.is_initialized():
            if clean:
                gc.collect()  # DDP's reducer holds the group: free it while the peers are still connected
                dist.barrier(group=self.cpu_group)
            dist.destroy_process_group()


def setup(device: torch.device, backend: str, timeout_s: float) -> tuple[Dist, torch.device]:
    """The process group (when launched by torchrun) and this rank's device: cuda:LOCAL_RANK on CUDA."""
    if backend not in ("auto", "nccl", "gloo"):
        raise UserError(f"--backend {backend}: choose auto, nccl or gloo")
    if not launched():
        return Dist(), device
    rank, local_rank, world = env_rank(), int(os.environ.get("LOCAL_RANK", "0")), int(os.environ["WORLD_SIZE"])
    if backend == "auto":
        backend = "nccl" if device.type == "cuda" else "gloo"
    if backend == "nccl" and device.type != "cuda":
        raise UserError(
            f"--backend nccl needs CUDA, but this process trains on {device.type}",
            "use --backend gloo (or auto) on CPUs, or --device cuda on a machine with GPUs",
        )
    if device.type == "cuda":
        if local_rank >= torch.cuda.device_count():
            raise UserError(
                f"local rank {local_rank} has no GPU: this machine has {torch.cuda.device_count()}",
                "start at most one process per GPU (--nproc_per_node)",
                local=True,
            )
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    elif device.type == "mps" and world > 1:
        raise UserError("several processes on MPS are not supported", "use --device cpu with gloo, or one process")
    where = f"{os.environ.get('MASTER_ADDR', '?')}:{os.environ.get('MASTER_PORT', '?')}"
    try:
        dist.init_process_group(
            backend, timeout=timedelta(seconds=timeout_s), device_id=device if backend == "nccl" else None
        )
        cpu_group = dist.new_group(backend="gloo") if backend == "nccl" else dist.group.WORLD
        dist.barrier(group=cpu_group)  # every rank is here: the others were reached
    except (RuntimeError, ValueError, OSError) as e:
        if dist.is_initialized():
            dist.destroy_process_group()
        first = str(e).strip().splitlines()[0][:300] if str(e).strip() else type(e).__name__
        raise UserError(
            f"rank {rank} of {world} could not reach the other processes at {where} within {timeout_s:g} s ({first})",
            "check that every node runs the same torchrun command with the same --rdzv-endpoint "
            "(or --master-addr/--master-port), that the port is open between the machines, "
            "or raise --dist-timeout",
            local=True,
        ) from None
    return Dist(rank, world, True, cpu_group), device


def micro_batches(grad_accum: int, d: Dist) -> range:
    """The micro-batch indices of this rank within a step's --grad-accum micro-batches."""
    if grad_accum % d.world_size:
        raise UserError(
            f"--grad-accum {grad_accum} cannot be shared among {d.world_size} processes",
            f"each step's micro-batches are split evenly among the processes: use a --grad-accum "
            f"that {d.world_size} divides, e.g. {d.world_size * max(grad_accum // d.world_size, 1)}",
        )
    per = grad_accum // d.world_size
    return range(d.rank * per, (d.rank + 1) * per)
