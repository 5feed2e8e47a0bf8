"""Minibatches of streamed splits for training: block shuffling, shuffle buffers and the ranks'
shares under torch.distributed.

A streamed split (``rmtl_env.data.stream.StreamedSplit``) is read a block (a Parquet row group) at
a time. Shuffling is block shuffling, as streaming loaders do: every epoch the blocks come in a
seeded random order and are pooled into buffers of about the dataset's ``buffer_rows`` rows whose
rows are permuted; with ``buffer_rows`` at least the split's size this is a full shuffle of the
split. The trainer and the critics' replay draw their epochs from here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

import numpy as np

from rmtl_env.data.stream import Rows, StreamedSplit


def pooled(
    parts: Iterable[dict[str, np.ndarray]],
    batch_size: int,
    rng: np.random.Generator | None,
    buffer_rows: int,
) -> Iterator[dict[str, np.ndarray]]:
    """Minibatches of ``batch_size`` rows from ``parts`` (dicts of equal-length arrays, e.g. one
    block each): parts are pooled until about ``buffer_rows`` rows, a pool's rows are permuted
    with ``rng`` (kept in order without), and the rows short of a full batch carry over to the
    next pool; the epoch's last batch may be smaller."""
    pending: list[dict[str, np.ndarray]] = []
    pooled_rows = 0
    parts = iter(parts)
    part = next(parts, None)
    while part is not None:
        pending.append(part)
        pooled_rows += len(next(iter(part.values())))
        part = next(parts, None)
        if pooled_rows < buffer_rows and part is not None:
            continue
        pool = {k: np.concatenate([p[k] for p in pending]) for k in pending[0]}
        size = len(next(iter(pool.values())))
        if rng is not None:
            order = rng.permutation(size)
            pool = {k: v[order] for k, v in pool.items()}
        full = size - size % batch_size
        for i in range(0, full, batch_size):
            yield {k: v[i : i + batch_size] for k, v in pool.items()}
        rest = {k: v[full:] for k, v in pool.items()}
        pending, pooled_rows = ([rest], size - full) if full < size else ([], 0)
    if pending:  # the carried rows: the epoch's last, smaller batch
        yield pending[0]


def rank_minibatches(
    data: StreamedSplit,
    read: Callable[[int], dict[str, np.ndarray]],
    batch_size: int,
    rng: np.random.Generator | None,
    rank: int,
    world: int,
) -> Iterator[tuple[dict[str, np.ndarray], int]]:
    """One epoch in which each of ``world`` ranks reads only its blocks: every rank draws the
    same block order from ``rng`` and reads blocks ``rank, rank + world, ...`` of it
    (``read(block index)``), pooled and permuted with its own child of ``rng``, in local batches
    of ``batch_size / world`` rows. Yields this rank's share of each global batch and the global
    batch's row count; there are as many steps as the rank with the most rows needs, the
    others taking empty shares at the end."""
    if batch_size % world:
        raise ValueError(
            f"with rank shards the batch size ({batch_size}) must be a multiple of the "
            f"{world} ranks"
        )
    local, blocks = batch_size // world, data.blocks()
    order = np.arange(len(blocks)) if rng is None else rng.permutation(len(blocks))
    own_rng = None if rng is None else rng.spawn(world)[rank]  # rng itself stays in step
    rows = [sum(len(blocks[b]) for b in order[r::world]) for r in range(world)]
    steps = max(-(-n // local) for n in rows)
    parts = (read(b) for b in order[rank::world])
    batches = pooled(parts, local, own_rng, data.dataset.buffer_rows)
    empty = None
    for step in range(steps):
        batch = next(batches, None)
        if batch is None:  # this rank has run out of rows: an empty share
            empty = empty or {k: v[:0] for k, v in read(0).items()}
            batch = empty
        yield batch, sum(min(local, max(n - step * local, 0)) for n in rows)


def epoch_shares(
    data: StreamedSplit,
    read: Callable[[int], dict[str, np.ndarray]],
    batch_size: int,
    rng: np.random.Generator | None,
    rank: int = 0,
    world: int = 1,
) -> Iterator[tuple[dict[str, np.ndarray], int]]:
    """One epoch of this rank's share of each global minibatch of ``batch_size`` rows, with the
    global minibatch's row count; ``read(block index)`` gives a block's rows. With the
    dataset's ``rank_shards`` and more than one rank, each rank reads only its blocks
    (``rank_minibatches``); otherwise every rank reads every block, block-shuffled with ``rng``
    (file order without), and keeps rows ``rank, rank + world, ...`` of each minibatch."""
    if data.dataset.rank_shards and world > 1:
        yield from rank_minibatches(data, read, batch_size, rng, rank, world)
        return
    count = len(data.blocks())
    order = np.arange(count) if rng is None else rng.permutation(count)
    share = slice(rank, None, world)
    for batch in pooled((read(b) for b in order), batch_size, rng, data.dataset.buffer_rows):
        yield {k: v[share] for k, v in batch.items()}, len(next(iter(batch.values())))


def split_minibatches(
    data: StreamedSplit, batch_size: int, rng: np.random.Generator | None = None
) -> Iterator[Rows]:
    """One epoch of a streamed split's rows in minibatches of ``batch_size`` (the last one
    smaller): in file order without ``rng``, else block-shuffled in buffers of the dataset's
    ``buffer_rows``."""
    for batch, _ in epoch_shares(data, data.read_block, batch_size, rng):
        yield Rows(**batch)
