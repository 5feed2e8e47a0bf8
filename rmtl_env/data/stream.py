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
How training shuffles the blocks (``buffer_rows``, ``rank_shards``) is ``agents.batching``'s.
"""

from __future__ import annotations

from collections.abc import Iterator
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


class StreamedSplit:
    """One split of a processed dataset, read from ``impressions.parquet`` block by block.

    Offers what the trainer and the metrics read of a :class:`~rmtl_env.data.SplitData`
    (``len``, ``name``, ``tasks``, ``labels``, ``session_id``, ``true_probs``) and, instead of
    the feature arrays, :meth:`blocks` and :meth:`read` (training's minibatches:
    ``agents.batching``).
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
    (``agents.batching.rank_minibatches``) and in prediction (``agents.trainer.map_split``), instead of every
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
