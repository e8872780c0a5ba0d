"""Distributed plumbing that works the same on gloo (CPU) and NCCL (CUDA).

Initialised from the launcher's environment (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR,
MASTER_PORT — torchrun and the DeepSpeed launcher both set them); one process without them runs
without a process group. Reductions are SUM then divide (house rule 7): gloo has no AVG reduce op.
"""

from __future__ import annotations

import argparse
import os
import socket
from dataclasses import dataclass

import torch
import torch.distributed as torch_dist


@dataclass(frozen=True)
class DistInfo:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_rank0(self) -> bool:
        return self.rank == 0


def env_rank_info(local_rank_arg: int | None = None) -> tuple[int, int, int]:
    """(rank, world_size, local_rank) from the environment; `--local_rank` fills LOCAL_RANK."""
    rank = int(os.environ.get("RANK", "0"))
    world = int(os.environ.get("WORLD_SIZE", "1"))
    local = os.environ.get("LOCAL_RANK")
    if local is None:
        local = str(local_rank_arg if local_rank_arg is not None and local_rank_arg >= 0 else 0)
    return rank, world, int(local)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def init_distributed(local_rank_arg: int | None = None, *, force_group: bool = False) -> DistInfo:
    """Start the process group when WORLD_SIZE > 1 (or `force_group`, which DeepSpeed needs even
    for one process): NCCL on CUDA, gloo on CPU. Idempotent."""
    rank, world, local = env_rank_info(local_rank_arg)
    cuda = torch.cuda.is_available()
    device = torch.device("cuda", local) if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
    if (world > 1 or force_group) and not torch_dist.is_initialized():
        os.environ.setdefault("RANK", str(rank))
        os.environ.setdefault("WORLD_SIZE", str(world))
        os.environ.setdefault("LOCAL_RANK", str(local))
        os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
        os.environ.setdefault("MASTER_PORT", str(free_port()))
        torch_dist.init_process_group(
            backend="nccl" if cuda else "gloo", rank=rank, world_size=world
        )
    return DistInfo(rank=rank, world_size=world, local_rank=local, device=device)


def is_dist() -> bool:
    return torch_dist.is_available() and torch_dist.is_initialized()


def get_rank() -> int:
    return torch_dist.get_rank() if is_dist() else int(os.environ.get("RANK", "0"))


def get_world_size() -> int:
    return torch_dist.get_world_size() if is_dist() else 1


def is_rank0() -> bool:
    return get_rank() == 0


def barrier() -> None:
    if is_dist():
        torch_dist.barrier()


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sum over ranks (a copy; the input is untouched)."""
    out = tensor.detach().clone()
    if is_dist():
        moved = _comm_device(out)
        torch_dist.all_reduce(moved, op=torch_dist.ReduceOp.SUM)
        out = moved.to(tensor.device)
    return out


def _comm_device(tensor: torch.Tensor) -> torch.Tensor:
    """NCCL reduces CUDA tensors only; gloo takes CPU tensors."""
    if torch_dist.get_backend() == "nccl" and tensor.device.type != "cuda":
        return tensor.cuda()
    return tensor


def all_reduce_mean(tensor: torch.Tensor) -> torch.Tensor:
    """Mean over ranks as SUM / world_size — never the AVG reduce op (gloo lacks it)."""
    return all_reduce_sum(tensor) / get_world_size()


def weighted_mean(total: torch.Tensor, count: torch.Tensor) -> torch.Tensor:
    """Global Σtotal / Σcount over ranks (exact mean of per-item values across uneven shards)."""
    both = all_reduce_sum(torch.stack([total.detach().float(), count.detach().float()]))
    return both[0] / both[1].clamp(min=1.0)


def all_gather_cat(tensor: torch.Tensor) -> torch.Tensor:
    """Concatenate a 1-D tensor of possibly different lengths from every rank (gloo-safe)."""
    if not is_dist():
        return tensor.detach()
    original = tensor.device
    tensor = _comm_device(tensor.detach())
    world = get_world_size()
    n = torch.tensor([tensor.numel()], device=tensor.device)
    sizes = [torch.zeros_like(n) for _ in range(world)]
    torch_dist.all_gather(sizes, n)
    longest = int(max(s.item() for s in sizes))
    padded = torch.zeros(longest, dtype=tensor.dtype, device=tensor.device)
    padded[: tensor.numel()] = tensor.detach().reshape(-1)
    parts = [torch.zeros_like(padded) for _ in range(world)]
    torch_dist.all_gather(parts, padded)
    out = torch.cat([p[: int(s.item())] for p, s in zip(parts, sizes, strict=True)])
    return out.to(original)


def broadcast_object(obj, src: int = 0):
    """Rank `src`'s Python object on every rank."""
    if not is_dist():
        return obj
    box = [obj]
    torch_dist.broadcast_object_list(box, src=src)
    return box[0]


def destroy() -> None:
    if is_dist():
        torch_dist.destroy_process_group()


def add_launcher_args(parser: argparse.ArgumentParser) -> None:
    """`--local_rank` (the DeepSpeed launcher passes it; torchrun sets LOCAL_RANK instead)."""
    parser.add_argument("--local_rank", "--local-rank", type=int, default=-1,
                        help="Set by the DeepSpeed launcher; otherwise LOCAL_RANK or 0.")
