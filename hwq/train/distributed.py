"""Multi-process training with torch.distributed, launched by torchrun.

torchrun sets RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT; ``setup()`` reads them and
joins the process group: NCCL when the process has a GPU, gloo on the CPU. Without those variables
(plain ``hwq train``) everything here is a no-op for one process.
"""
from __future__ import annotations

import os

import torch
import torch.distributed as dist


def rank_world() -> tuple[int, int]:
    """(rank, world size); (0, 1) when no process group is initialised."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def setup(device: str = "auto") -> torch.device:
    """Join the process group when launched by torchrun and return this process's device.

    device: "auto" (a GPU when there is one, else the CPU), "cpu", "cuda" or "cuda:N"."""
    if device not in ("auto", "cpu", "cuda") and not device.startswith("cuda:"):
        raise ValueError(f"train.device = {device!r} is not accepted: expected auto, cpu, cuda "
                         "or cuda:N")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"train.device = {device!r}: no CUDA device is available here; use "
                         "auto or cpu")
    use_cuda = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
    world = int(os.environ.get("WORLD_SIZE", "1"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if use_cuda:
        index = local if world > 1 or device in ("auto", "cuda") else int(device.split(":")[1])
        dev = torch.device("cuda", index)
        torch.cuda.set_device(dev)
    else:
        dev = torch.device("cpu")
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if use_cuda else "gloo")
    return dev


def all_reduce_sum(t: torch.Tensor) -> None:
    """Sum ``t`` over the processes, in place (nothing with one process)."""
    if rank_world()[1] > 1:
        dist.all_reduce(t, op=dist.ReduceOp.SUM)


def barrier() -> None:
    if rank_world()[1] > 1:
        dist.barrier()


def teardown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
