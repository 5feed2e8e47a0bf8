"""Processed datasets read from Parquet in row blocks, never whole: for data larger than memory.

``load_dataset(name, stream=True)`` (or ``StreamedDataset(folder)``) describes a processed dataset
as :class:`~rmtl_env.data.SessionDataset` does (name, tasks, fields, vocabulary sizes, meta)
without reading ``impressions.parquet``; its ``split(name)`` is a :class:`StreamedSplit`, which
the trainer, the critics' replay and the evaluation read block by block (``agents.trainer``,
``agents.replay``). A block is one Parquet row group of the split (the preparation writes them
at up to 1M rows).

Memory: the rows in flight (``buffer_rows`` of them while training, one block otherwise), the
model, and per row of a split only what exact metrics need: its labels, session id and the
model's predictions (``8 + 8 K`` bytes per row), not its features (about ``8 F + 4 N``).

Shuffling is block shuffling, as streaming loaders do: every epoch the blocks come in a seeded
random order and are pooled into buffers of about ``buffer_rows`` rows whose rows are permuted;
with ``buffer_rows`` at least the split's size this is a full shuffle of the split.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq

from rmtl_env.data.dataset import (
    IMPRESSIONS_FILE,
    SPLITS,
    DatasetDescription,
    label_column,
    read_meta,
    true_prob_column,
)
from rmtl_env.data.errors import DataFormatError

BUFFER_ROWS = 4_000_000
"""Default shuffle buffer: about 1.4 GB of KuaiRand rows (37 fields)."""


@dataclass(frozen=True)
class Block:
    """Rows ``start:stop`` of row group ``group``, which are rows ``offset:offset + stop -
    start`` of the split."""

    group: int
    start: int
    stop: int
    offset: int

    def __len__(self) -> int:
        return self.stop - self.start


@dataclass(frozen=True)
class Rows:
    """Rows of a split as arrays: ``index`` (their positions in the split), ``categorical``
    int64 ``[b, F]``, ``numerical`` float32 ``[b, N]``, ``labels`` float32 ``[b, K]``,
    ``session_id`` int64 ``[b]``."""

    index: np.ndarray
    categorical: np.ndarray
    numerical: np.ndarray
    labels: np.ndarray
    session_id: np.ndarray

    def __len__(self) -> int:
        return len(self.index)


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


class StreamedSplit:
    """One split of a processed dataset, read from ``impressions.parquet`` block by block.

    Offers what the trainer and the metrics read of a :class:`~rmtl_env.data.SplitData`
    (``len``, ``name``, ``tasks``, ``labels``, ``session_id``, ``true_probs``) and, instead of
    the feature arrays, :meth:`blocks`, :meth:`read` and :meth:`minibatches`.
    """

    def __init__(self, dataset: StreamedDataset, name: str, tasks: tuple[str, ...]) -> None:
        self.dataset, self.name, self.tasks = dataset, name, tasks
        self.path = dataset.folder / IMPRESSIONS_FILE
        self._blocks = self._find_blocks()

    def __len__(self) -> int:
        return sum(len(b) for b in self._blocks)

    def __repr__(self) -> str:
        return f"StreamedSplit({self.dataset.name!r}, {self.name!r}, rows={len(self)})"

    def _find_blocks(self) -> list[Block]:
        """The split's rows in each row group, from the ``split`` column alone (read one row
        group at a time); a split must be one contiguous run of rows (the contract)."""
        blocks, offset, seen_after = [], 0, False
        file = pq.ParquetFile(self.path)
        for group in range(file.num_row_groups):
            column = file.read_row_group(group, columns=["split"]).column("split")
            mask = pc.equal(pc.cast(column, "string"), self.name).to_numpy(zero_copy_only=False)
            rows = np.flatnonzero(mask)
            if len(rows) == 0:
                seen_after = seen_after or bool(blocks)
                continue
            start, stop = int(rows[0]), int(rows[-1]) + 1
            if seen_after or len(rows) != stop - start or (blocks and start != 0):
                raise DataFormatError(
                    f"{self.path}: the {self.name!r} rows are not one contiguous run (rows must "
                    "be sorted by session_id and split by session start time)"
                )
            blocks.append(Block(group, start, stop, offset))
            offset += stop - start
            seen_after = stop < len(mask)
        return blocks

    def blocks(self) -> list[Block]:
        return list(self._blocks)

    @property
    def columns(self) -> list[str]:
        d = self.dataset
        return ["session_id", *d.categorical_fields, *d.numerical_fields,
                *(label_column(t) for t in self.tasks)]  # fmt: skip

    def read(self, block: Block) -> Rows:
        """The rows of one block."""
        table = pq.ParquetFile(self.path).read_row_group(block.group, columns=self.columns)
        return self._rows(table.slice(block.start, len(block)), block.offset)

    def _rows(self, table, offset: int) -> Rows:
        d, n = self.dataset, table.num_rows

        def stack(names: list[str], dtype: type) -> np.ndarray:
            if not names:
                return np.zeros((n, 0), dtype)
            return np.column_stack([table.column(c).to_numpy().astype(dtype) for c in names])

        return Rows(
            index=np.arange(offset, offset + n, dtype=np.int64),
            categorical=stack(d.categorical_fields, np.int64),
            numerical=stack(d.numerical_fields, np.float32),
            labels=stack([label_column(t) for t in self.tasks], np.float32),
            session_id=table.column("session_id").to_numpy().astype(np.int64),
        )

    def iter_rows(self) -> Iterator[Rows]:
        """Every block's rows, in file order (sessions in order, rows in time order)."""
        for block in self._blocks:
            yield self.read(block)

    def read_block(self, b: int) -> dict[str, np.ndarray]:
        """The rows of block number ``b`` as ``{field: array}`` (``Rows``' fields)."""
        return vars(self.read(self._blocks[b]))

    def minibatches(
        self, batch_size: int, rng: np.random.Generator | None = None
    ) -> Iterator[Rows]:
        """One epoch of minibatches of ``batch_size`` rows (the last one smaller): in file order
        without ``rng``, else block-shuffled in buffers of the dataset's ``buffer_rows``."""
        for batch, _ in epoch_shares(self, self.read_block, batch_size, rng):
            yield Rows(**batch)

    def read_head(self, block: Block) -> Rows:
        """The first row of a block."""
        file = pq.ParquetFile(self.path)
        first = file.iter_batches(block.start + 1, row_groups=[block.group], columns=self.columns)
        return self._rows(next(first).slice(block.start, 1), block.offset)

    def _column(self, names: list[str], dtype: type) -> np.ndarray:
        parts = []
        file = pq.ParquetFile(self.path)
        for block in self._blocks:
            table = file.read_row_group(block.group, columns=names).slice(block.start, len(block))
            parts.append(np.column_stack([table.column(n).to_numpy().astype(dtype) for n in names]))
        if not parts:
            return np.zeros((0, len(names)), dtype)
        return np.concatenate(parts)

    @cached_property
    def labels(self) -> np.ndarray:
        """float32 ``[n, K]``, for the metrics."""
        return self._column([label_column(t) for t in self.tasks], np.float32)

    @cached_property
    def session_id(self) -> np.ndarray:
        """int64 ``[n]``, for the session-averaged Logloss."""
        return self._column(["session_id"], np.int64)[:, 0]

    @cached_property
    def true_probs(self) -> np.ndarray | None:
        if not self.dataset.has_true_probs:
            return None
        return self._column([true_prob_column(t) for t in self.tasks], np.float32)


class StreamedDataset(DatasetDescription):
    """A processed dataset folder described by its ``meta.json``; its splits are streamed,
    training ones shuffled in buffers of ``buffer_rows`` rows. ``rank_shards``: under
    torch.distributed each rank reads only its share of the blocks, in training
    (``rank_minibatches``) and in prediction (``agents.trainer.map_split``), instead of every
    block."""

    def __init__(
        self, folder: str | Path, buffer_rows: int = BUFFER_ROWS, rank_shards: bool = False
    ) -> None:
        if buffer_rows < 1:
            raise ValueError(f"buffer_rows must be >= 1, got {buffer_rows}")
        self.folder, self.buffer_rows = Path(folder), int(buffer_rows)
        self.rank_shards = bool(rank_shards)
        self.meta = read_meta(self.folder)
        self._check_schema()
        self._splits: dict[tuple[str, tuple[str, ...]], StreamedSplit] = {}

    def __repr__(self) -> str:
        return f"StreamedDataset({self.name!r}, folder={str(self.folder)!r}, tasks={self.tasks})"

    def _check_schema(self) -> None:
        where = f"processed dataset {self.folder}"
        try:
            schema = pq.read_schema(self.folder / IMPRESSIONS_FILE)
        except (OSError, ValueError) as exc:
            raise DataFormatError(f"{where}: {IMPRESSIONS_FILE} does not read ({exc})") from None
        absent = [c for c in self.required_columns if c not in schema.names]
        if absent:
            raise DataFormatError(f"{where}: {IMPRESSIONS_FILE} lacks columns {absent}")

    def split(self, name: str, tasks: list[str] | None = None) -> StreamedSplit:
        """One split, streamed; ``tasks`` selects and orders a subset of the tasks."""
        if name not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {name!r}")
        chosen = tuple(self._check_tasks(tasks))
        key = (name, chosen)
        if key not in self._splits:
            self._splits[key] = StreamedSplit(self, name, chosen)
        return self._splits[key]
