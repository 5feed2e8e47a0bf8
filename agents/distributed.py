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

Run folders follow one rule: rank 0 writes (``config.json``, stage records, checkpoints,
metrics, plots) and decides (whether a stage resumes, whether a folder holds another
configuration), and every other rank reads what rank 0 wrote. The run folder and the data cache
must therefore be on a file system every rank sees (one machine, or a shared mount across
``--nnodes``).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import timedelta
from typing import TypeVar

import numpy as np
import torch
import torch.distributed as dist

T = TypeVar("T")

# Collectives wait this long for the slowest rank; long enough for rank 0 to prepare a large
# dataset while the others wait at ``main_first``.
TIMEOUT = timedelta(hours=3)


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def is_main() -> bool:
    """Rank 0 (or the only process): the one that writes run folders and checkpoints."""
    return rank() == 0


def launched_rank() -> int:
    """This process's rank as the launcher set it (``RANK``), before any process group exists."""
    return int(os.environ.get("RANK", "0"))


def launched_world_size() -> int:
    """How many processes the launcher started (``WORLD_SIZE``), before any process group
    exists."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def init_from_env(device: str | torch.device = "cpu") -> bool:
    """Start the process group if the launcher asked for more than one process; returns whether
    training is distributed. Backend: NCCL for CUDA devices, gloo otherwise."""
    if launched_world_size() <= 1 or is_distributed():
        return is_distributed()
    backend = "nccl" if torch.device(device).type == "cuda" else "gloo"
    dist.init_process_group(backend=backend, timeout=TIMEOUT)
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    return True


def local_device(device: torch.device) -> torch.device:
    """``device`` for this process: under a launcher a bare ``cuda`` is this rank's GPU
    (``cuda:LOCAL_RANK``); anything else as given."""
    if device.type == "cuda" and device.index is None and "LOCAL_RANK" in os.environ:
        return torch.device("cuda", int(os.environ["LOCAL_RANK"]))
    return device


def shutdown() -> None:
    """End the process group, if one is running."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier() -> None:
    """Wait until every rank is here (a no-op in one process)."""
    if is_distributed():
        dist.barrier()


@contextmanager
def main_first() -> Iterator[None]:
    """Rank 0 runs the block first (e.g. preparing and caching a dataset), the other ranks run
    it after rank 0 finished (reading the cache)."""
    if not is_main():
        barrier()
    yield
    if is_main():
        barrier()


def from_main(decide: Callable[[], T]) -> T:
    """``decide()`` run on rank 0 only; its value, or the exception it raised, on every rank, so
    that all ranks take the same branch."""
    if not is_distributed():
        return decide()
    box: list[object] = [None]
    if is_main():
        try:
            box[0] = (True, decide())
        except Exception as exc:  # every rank raises it
            box[0] = (False, exc)
    dist.broadcast_object_list(box, src=0)
    ok, value = box[0]  # type: ignore[misc]
    if not ok:
        raise value  # type: ignore[misc]
    return value  # type: ignore[return-value]


def shard(indices: torch.Tensor) -> torch.Tensor:
    """This rank's rows of one global batch (every ``world_size``-th, from its rank)."""
    return indices[rank() :: world_size()] if is_distributed() else indices


def batch_mean(per_row: torch.Tensor, batch_rows: int) -> torch.Tensor:
    """The mean over dim 0 of a global batch of ``batch_rows`` rows, of which ``per_row`` holds
    this rank's share: its sum times ``world_size / batch_rows``, so that DDP's average over
    ranks is the global batch's mean (shares may differ in size or be empty at an epoch's
    end). In one process, ``per_row.mean(0)``."""
    if not is_distributed():
        return per_row.mean(0)
    return per_row.sum(0) * (world_size() / batch_rows)


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


def broadcast_state(module: torch.nn.Module) -> None:
    """Every rank's ``module`` set to rank 0's parameters and buffers (e.g. target networks,
    which DDP does not cover)."""
    if is_distributed():
        for tensor in module.state_dict().values():
            dist.broadcast(tensor, src=0)


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
    world = world_size()
    out = np.empty((total, *local.shape[1:]), dtype=local.dtype)
    for r, part in enumerate(_all_gather_padded(local, -(-total // world))):
        out[r::world] = part[: len(range(r, total, world))]
    return out


def gather_blocks(local: np.ndarray, blocks: Sequence[tuple[int, int]], total: int) -> np.ndarray:
    """An array of ``total`` rows in ``blocks`` (``(first row, rows)`` each), of which every
    rank holds blocks ``rank, rank + world, ...`` one after the other in ``local``, reassembled
    in row order on every rank."""
    if not is_distributed():
        return local
    world = world_size()
    owned = [blocks[r::world] for r in range(world)]
    per_rank = max(sum(rows for _, rows in mine) for mine in owned)
    out = np.empty((total, *local.shape[1:]), dtype=local.dtype)
    for mine, part in zip(owned, _all_gather_padded(local, per_rank), strict=True):
        at = 0
        for first, rows in mine:
            out[first : first + rows] = part[at : at + rows]
            at += rows
    return out


def _all_gather_padded(local: np.ndarray, per_rank: int) -> list[np.ndarray]:
    """Every rank's ``local`` (at most ``per_rank`` rows), zero-padded to ``per_rank`` rows."""
    padded = np.zeros((per_rank, *local.shape[1:]), dtype=local.dtype)
    padded[: len(local)] = local
    tensor = torch.from_numpy(padded)
    if dist.get_backend() == "nccl":
        tensor = tensor.cuda()
    parts = [torch.empty_like(tensor) for _ in range(world_size())]
    dist.all_gather(parts, tensor)
    return [part.cpu().numpy() for part in parts]
