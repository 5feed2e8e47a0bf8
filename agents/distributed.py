"""Data-parallel training on ``torch.distributed``: which rank this process is, its shard of a
batch, and predictions gathered from every rank.

A process group is started by ``init_from_env()`` when ``torchrun`` (or any launcher that sets
``WORLD_SIZE``, ``RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``) runs more than one process: gloo
on CPU, NCCL on CUDA. Without one every helper is the single-process identity, so the same code
runs in one process, under ``torchrun --nproc_per_node=N`` and under ``torchrun --nnodes=M``.

The trainer uses the group this way: every rank draws the same permutation of the training rows
and takes an equal share of each global batch (``shard``), DDP averages the gradients, so a step
is the single-process step on the same global batch up to the order of float sums; validation
and test rows are scored in shards and gathered (``gather_rows``) so that every rank computes
the exact AUC and takes the same early-stopping decision.
"""

from __future__ import annotations

import os

import numpy as np
import torch
import torch.distributed as dist


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def is_main() -> bool:
    """Rank 0 (or the only process): the one that writes run folders and checkpoints."""
    return rank() == 0


def init_from_env(device: str | torch.device = "cpu") -> bool:
    """Start the process group if the launcher asked for more than one process; returns whether
    training is distributed. Backend: NCCL for CUDA devices, gloo otherwise."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or is_distributed():
        return is_distributed()
    backend = "nccl" if torch.device(device).type == "cuda" else "gloo"
    dist.init_process_group(backend=backend)
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    return True


def shard(indices: torch.Tensor) -> torch.Tensor:
    """This rank's rows of one global batch (every ``world_size``-th, from its rank)."""
    return indices[rank() :: world_size()] if is_distributed() else indices


def wrap(model: torch.nn.Module) -> torch.nn.Module:
    """``model`` in ``DistributedDataParallel`` when distributed (rank 0's weights are
    broadcast to every rank), else ``model`` itself."""
    if not is_distributed():
        return model
    from torch.nn.parallel import DistributedDataParallel

    device = next(model.parameters()).device
    return DistributedDataParallel(
        model, device_ids=[device.index] if device.type == "cuda" else None
    )


def all_reduce_sum(value: torch.Tensor) -> torch.Tensor:
    """``value`` summed over ranks (returned on every rank)."""
    if is_distributed():
        value = value.clone()
        dist.all_reduce(value)
    return value


def gather_rows(local: np.ndarray, total: int) -> np.ndarray:
    """Rows ``rank, rank + world, ...`` of an array of ``total`` rows from every rank,
    reassembled in row order on every rank."""
    if not is_distributed():
        return local
    world, per_rank = world_size(), -(-total // world_size())
    padded = np.zeros((per_rank, *local.shape[1:]), dtype=local.dtype)
    padded[: len(local)] = local
    tensor = torch.from_numpy(padded)
    if dist.get_backend() == "nccl":
        tensor = tensor.cuda()
    parts = [torch.empty_like(tensor) for _ in range(world)]
    dist.all_gather(parts, tensor)
    out = np.empty((total, *local.shape[1:]), dtype=local.dtype)
    for r, part in enumerate(parts):
        rows = len(range(r, total, world))
        out[r::world] = part[:rows].cpu().numpy()
    return out
