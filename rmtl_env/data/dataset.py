"""The processed session dataset: the one contract every other part of the project reads.

On disk a processed dataset is a folder with

- ``impressions.parquet``: one row per impression sorted by (``session_id``, ``timestamp``), with
  ``session_id`` (int64, numbered by session start time), ``timestamp`` (int64 ms),
  ``raw_user_id`` and ``raw_item_id`` (the source's ids, for statistics and joins, never features),
  one int64 column per categorical field (0 = unknown/rare/missing/padding), one float32 column
  per numerical field (standardised), ``label:<task>`` (int8 0/1) per task, ``p_true:<task>``
  (float32, synthetic data only) and ``split`` (``train``/``val``/``test``);
- ``vocabulary.parquet``: field, raw value, id and training count of every mapped value;
- ``meta.json``: tasks, fields, vocabulary sizes, parameters, raw file checksums, row counts and
  per-split statistics.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd

from rmtl_env.data.errors import DataFormatError, name_list
from rmtl_env.data.io import atomic_directory

# The probability clip of every binary cross-entropy: the env's rewards, the Logloss metrics and
# the twins' oracle statistics (it lives here, in the data layer, which imports nothing above it).
PROB_EPS = 1e-7

FORMAT_VERSION = 1
SPLITS = ("train", "val", "test")
IMPRESSIONS_FILE = "impressions.parquet"
VOCABULARY_FILE = "vocabulary.parquet"
META_FILE = "meta.json"


def label_column(task: str) -> str:
    """Name of the processed column holding the 0/1 label of ``task``."""
    return f"label:{task}"


def true_prob_column(task: str) -> str:
    """Name of the processed column holding the true probability of ``task`` (synthetic data)."""
    return f"p_true:{task}"


@dataclass(frozen=True)
class SplitData:
    """One split as contiguous arrays, the form the environment, builder and trainers use.

    Attributes:
        name: ``train``, ``val`` or ``test``.
        session_id: int64 ``[n]``, the dataset-wide session number of each row.
        timestamp: int64 ``[n]`` milliseconds.
        categorical: int64 ``[n, F]`` ids.
        numerical: float32 ``[n, N]``.
        labels: float32 ``[n, K]`` in {0, 1}.
        true_probs: float32 ``[n, K]`` or None when the dataset is not synthetic.
        session_starts: int64 ``[S + 1]``; session ``j`` of this split is rows
            ``session_starts[j]:session_starts[j + 1]``.
        tasks: task names in label column order.
    """

    name: str
    session_id: np.ndarray
    timestamp: np.ndarray
    categorical: np.ndarray
    numerical: np.ndarray
    labels: np.ndarray
    true_probs: np.ndarray | None
    session_starts: np.ndarray
    tasks: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.session_id)

    @property
    def num_sessions(self) -> int:
        return len(self.session_starts) - 1

    @property
    def session_lengths(self) -> np.ndarray:
        return np.diff(self.session_starts)


REQUIRED_META = ("dataset", "tasks", "categorical_fields", "field_dims", "numerical_fields")


def _rebuild_hint(folder: Path) -> str:
    return (f"delete {folder} (or pass refresh=True / prepare --refresh) to rebuild it from the "
            "raw files")  # fmt: skip


def read_meta(folder: Path) -> dict:
    """``folder``'s ``meta.json``, checked: the folder holds the contract's files and its meta
    is a JSON object with the required keys."""
    missing = [f for f in (IMPRESSIONS_FILE, META_FILE) if not (folder / f).is_file()]
    if missing:
        raise DataFormatError(
            f"{folder} is not a processed dataset: missing {missing}; expected "
            f"{IMPRESSIONS_FILE}, {VOCABULARY_FILE} and {META_FILE}"
        )
    try:
        meta = json.loads((folder / META_FILE).read_text())
    except (ValueError, UnicodeDecodeError) as exc:
        raise DataFormatError(
            f"{folder / META_FILE} is not valid JSON ({exc}); {_rebuild_hint(folder)}"
        ) from None
    if not isinstance(meta, dict):
        raise DataFormatError(
            f"{folder / META_FILE} must hold a JSON object; {_rebuild_hint(folder)}"
        )
    check_meta(meta, f"processed dataset {folder}")
    return meta


def check_meta(meta: dict, where: str) -> None:
    """Refuse a ``meta`` without the keys every processed dataset has."""
    lacking = [k for k in REQUIRED_META if k not in meta]
    if lacking:
        raise DataFormatError(f"{where}: meta.json lacks keys {lacking}")


class DatasetDescription:
    """What ``meta.json`` says of a processed dataset (``self.meta``): its name, tasks and fields;
    shared by the in-memory ``SessionDataset`` and the streamed ``StreamedDataset``."""

    meta: dict

    @property
    def name(self) -> str:
        return self.meta["dataset"]

    @property
    def tasks(self) -> list[str]:
        return list(self.meta["tasks"])

    @property
    def categorical_fields(self) -> list[str]:
        return list(self.meta["categorical_fields"])

    @property
    def field_dims(self) -> list[int]:
        """Vocabulary size of each categorical field (ids run from 0 to size - 1)."""
        return [int(d) for d in self.meta["field_dims"]]

    @property
    def numerical_fields(self) -> list[str]:
        return list(self.meta["numerical_fields"])

    @property
    def has_true_probs(self) -> bool:
        return bool(self.meta.get("has_true_probs", False))

    def _check_tasks(self, tasks: list[str] | None) -> list[str]:
        """``tasks`` (default: all), checked: distinct names of the dataset's tasks."""
        if tasks is None:
            return self.tasks
        tasks = name_list(tasks, "tasks")
        unknown = [t for t in tasks if t not in self.tasks]
        if unknown or not tasks or len(set(tasks)) != len(tasks):
            raise ValueError(
                f"tasks must be a non-empty list of distinct names from {self.tasks}, got {tasks}"
            )
        return tasks

    @property
    def required_columns(self) -> list[str]:
        """The columns the contract requires of ``impressions.parquet``."""
        return ["session_id", "timestamp", "split", *self.categorical_fields,
                *self.numerical_fields, *(label_column(t) for t in self.tasks)]  # fmt: skip


class SessionDataset(DatasetDescription):
    """A processed dataset: the impression frame, its ``meta.json`` and the value vocabulary."""

    def __init__(self, frame: pd.DataFrame, meta: dict, vocabulary: pd.DataFrame) -> None:
        self.frame = frame
        self.meta = meta
        self.vocabulary = vocabulary
        self._validate()

    def __repr__(self) -> str:
        return (
            f"SessionDataset({self.name!r}, impressions={len(self.frame)}, tasks={self.tasks}, "
            f"categorical={len(self.categorical_fields)}, numerical={len(self.numerical_fields)})"
        )

    # --- access ------------------------------------------------------------------------------
    def split(self, name: str, tasks: list[str] | None = None) -> SplitData:
        """Arrays of one split; ``tasks`` selects and orders a subset of the dataset's tasks.

        Built once per (split, tasks) and then shared: N envs on one loaded dataset (a
        ``SyncVectorEnv`` of 4096) hold one copy of the arrays, not N. Treat them as read-only.
        """
        if name not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {name!r}")
        tasks = self._check_tasks(tasks)
        cache = self.__dict__.setdefault("_splits", {})
        key = (name, tuple(tasks))
        if key not in cache:
            cache[key] = self._build_split(name, tasks)
        return cache[key]

    def _build_split(self, name: str, tasks: list[str]) -> SplitData:
        rows = self._split_rows[name]
        part = self.frame.iloc[rows[0] : rows[1]] if rows else self.frame.iloc[0:0]
        session_id = part["session_id"].to_numpy(np.int64)
        change = np.flatnonzero(np.diff(session_id)) + 1
        starts = np.concatenate([[0], change, [len(session_id)]]).astype(np.int64)
        if len(session_id) == 0:
            starts = np.zeros(1, dtype=np.int64)
        cat_cols, num_cols = self.categorical_fields, self.numerical_fields
        true_probs = None
        if self.has_true_probs:
            true_probs = part[[true_prob_column(t) for t in tasks]].to_numpy(np.float32)
        return SplitData(
            name=name,
            session_id=session_id,
            timestamp=part["timestamp"].to_numpy(np.int64),
            categorical=part[cat_cols].to_numpy(np.int64).reshape(len(part), len(cat_cols)),
            numerical=part[num_cols].to_numpy(np.float32).reshape(len(part), len(num_cols)),
            labels=part[[label_column(t) for t in tasks]].to_numpy(np.float32),
            true_probs=true_probs,
            session_starts=starts,
            tasks=tuple(tasks),
        )

    @cached_property
    def _split_rows(self) -> dict[str, tuple[int, int] | None]:
        """Row range of each split. Sessions are numbered by start time and split temporally, so
        each split is one contiguous block of rows."""
        codes = self.frame["split"].cat.codes.to_numpy()
        ranges: dict[str, tuple[int, int] | None] = {}
        for code, name in enumerate(SPLITS):
            rows = np.flatnonzero(codes == code)
            ranges[name] = (int(rows[0]), int(rows[-1]) + 1) if len(rows) else None
        return ranges

    # --- persistence -------------------------------------------------------------------------
    def save(self, folder: str | Path) -> Path:
        """Write the dataset folder atomically (a reader never sees a partial folder)."""
        folder = Path(folder)
        with atomic_directory(folder) as staging:
            self.frame.to_parquet(staging / IMPRESSIONS_FILE, index=False)
            self.vocabulary.to_parquet(staging / VOCABULARY_FILE, index=False)
            (staging / META_FILE).write_text(json.dumps(self.meta, indent=2, sort_keys=False))
        return folder

    @classmethod
    def load(cls, folder: str | Path) -> SessionDataset:
        """Read a dataset folder written by :meth:`save` (or by hand following the contract)."""
        folder = Path(folder)
        meta, hint = read_meta(folder), _rebuild_hint(folder)
        vocab_path = folder / VOCABULARY_FILE
        if not vocab_path.is_file() and meta.get("source") is not None:
            # Written by this package, which always saves a vocabulary: a deleted file would
            # silently leave ids without their raw values.
            raise DataFormatError(f"{vocab_path} is missing; {hint}")
        try:
            frame = pd.read_parquet(folder / IMPRESSIONS_FILE)
            vocabulary = pd.read_parquet(vocab_path) if vocab_path.is_file() else pd.DataFrame()
        except (OSError, ValueError) as exc:  # pyarrow: truncated file, bad magic bytes
            raise DataFormatError(
                f"{folder}: a parquet file does not read ({exc}); {hint}"
            ) from None
        if "split" in frame and not isinstance(frame["split"].dtype, pd.CategoricalDtype):
            frame["split"] = pd.Categorical(frame["split"], categories=list(SPLITS))
        return cls(frame, meta, vocabulary)

    def _validate(self) -> None:
        where = f"processed dataset {self.meta.get('dataset', '?')!r}"
        check_meta(self.meta, where)
        absent = [c for c in self.required_columns if c not in self.frame.columns]
        if absent:
            raise DataFormatError(f"{where}: impressions.parquet lacks columns {absent}")
        if len(self.field_dims) != len(self.categorical_fields):
            raise DataFormatError(f"{where}: field_dims and categorical_fields differ in length")
        for name, dim in zip(self.categorical_fields, self.field_dims, strict=True):
            values = self.frame[name].to_numpy()
            if len(values) and (values.min() < 0 or values.max() >= dim):
                raise DataFormatError(
                    f"{where}: categorical field {name!r} has ids outside [0, {dim - 1}]"
                )
        if self.frame["split"].isna().any():
            raise DataFormatError(f"{where}: column 'split' must be one of {SPLITS}")
        session = self.frame["session_id"].to_numpy()
        if len(session) > 1 and (np.diff(session) < 0).any():
            raise DataFormatError(f"{where}: rows must be sorted by session_id")
