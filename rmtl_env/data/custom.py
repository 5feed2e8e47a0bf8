"""Bring your own logs: one CSV or Parquet file plus a column-role config.

The file has one row per impression. :class:`ColumnRoles` names which column is what:

========================  ============================================================
role                      meaning
========================  ============================================================
``session`` or ``user``   a session id column, or a user column to split into sessions
                          at ``session_gap_minutes`` of inactivity (exactly one of them)
``timestamp``             event time: integer or float epoch in ``timestamp_unit``
                          (``ms`` or ``s``), or ISO-8601 date-time text: a time with a
                          UTC offset (``+08:00``, ``Z``) is converted to UTC, one
                          without an offset is read as UTC
``labels``                0/1 columns, one per task, in task order
``categorical``           columns used as categorical fields (any values; empty = unknown)
``numerical``             columns used as numerical features (numbers; empty = missing)
``item``                  optional item id column (for statistics only)
========================  ============================================================

Example (``roles.json``)::

    {"user": "uid", "timestamp": "ts", "labels": ["click", "buy"],
     "categorical": ["item_cat", "shop"], "numerical": ["price"], "item": "item_id",
     "nested_labels": true}

``nested_labels=true`` requires each label to imply the previous one (buy implies click): a
violating row raises unless ``nesting="fix"`` (then the later label becomes the AND).
Exact duplicate rows are removed and counted; rows are sorted by (session, time).
"""

from __future__ import annotations

import dataclasses
import json
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from rmtl_env.data.dataset import label_column
from rmtl_env.data.errors import DataFormatError, name_list
from rmtl_env.data.io import check_binary, check_epoch_unit, file_digest, plain
from rmtl_env.data.processing import ImpressionTable, enforce_nesting, sessionize_by_gap

# Columns of every processed dataset (and of the preparation's tables): no feature may take them.
RESERVED_COLUMNS = ("session_id", "timestamp", "raw_user_id", "raw_item_id", "split", "ord")


@dataclass
class ColumnRoles:
    """Which column of a user's log plays which role (see the module docstring)."""

    timestamp: str
    labels: list[str]
    session: str | None = None
    user: str | None = None
    categorical: list[str] = field(default_factory=list)
    numerical: list[str] = field(default_factory=list)
    item: str | None = None
    timestamp_unit: str = "ms"
    session_gap_minutes: float = 30.0
    nested_labels: bool = False
    nesting: str = "error"

    def __post_init__(self) -> None:
        self.labels = name_list(self.labels, "ColumnRoles.labels")
        self.categorical = name_list(self.categorical, "ColumnRoles.categorical")
        self.numerical = name_list(self.numerical, "ColumnRoles.numerical")
        if (self.session is None) == (self.user is None):
            raise ValueError("ColumnRoles needs exactly one of 'session' or 'user'")
        if not self.labels:
            raise ValueError("ColumnRoles.labels must name at least one 0/1 label column")
        if self.timestamp_unit not in ("ms", "s"):
            raise ValueError(f"timestamp_unit must be 'ms' or 's', got {self.timestamp_unit!r}")
        if self.nesting not in ("error", "fix", "ignore"):
            raise ValueError(f"nesting must be 'error', 'fix' or 'ignore', got {self.nesting!r}")
        roles = [self.timestamp, *self.labels, *self.categorical, *self.numerical]
        if len(set(roles)) != len(roles):
            raise ValueError(f"a column may play only one role, got {roles}")
        taken = sorted(set(self.categorical + self.numerical) & set(RESERVED_COLUMNS))
        if taken:
            raise ValueError(
                f"feature column(s) {taken} have names the processed dataset uses itself "
                f"({list(RESERVED_COLUMNS)}); rename them in the log"
            )

    @classmethod
    def from_json(cls, path: str | Path) -> ColumnRoles:
        """Roles from a JSON object file; its errors name the file."""
        path = Path(path)
        try:
            fields_ = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise DataFormatError(f"roles file {path} does not read as JSON ({exc})") from None
        known = [f.name for f in dataclasses.fields(cls)]
        if not isinstance(fields_, dict):
            raise DataFormatError(f"roles file {path} must hold a JSON object with keys {known}")
        unknown = sorted(set(fields_) - set(known))
        if unknown:
            raise DataFormatError(f"roles file {path}: unknown key(s) {unknown}; expected {known}")
        try:
            return cls(**fields_)
        except (TypeError, ValueError) as exc:
            raise DataFormatError(f"roles file {path}: {exc}") from None

    def columns(self) -> list[str]:
        named = [self.session or self.user, self.timestamp, *self.labels]
        named += [*self.categorical, *self.numerical, *([self.item] if self.item else [])]
        return list(dict.fromkeys(named))


def read_log_file(path: Path, columns: list[str]) -> pd.DataFrame:
    """Read the needed columns of a CSV (plain or .gz) or Parquet file, naming what is missing."""
    if not path.is_file():
        raise FileNotFoundError(f"log file {path} does not exist")
    if path.stat().st_size == 0:
        raise DataFormatError(f"log file {path} is empty")
    try:
        if path.suffix == ".parquet":
            import pyarrow.parquet as pq

            present = pq.read_schema(path).names
        else:
            present = list(pd.read_csv(path, nrows=0).columns)
        missing = [c for c in columns if c not in present]
        if missing:
            raise DataFormatError(f"log file {path}: missing column(s) {missing}; found {present}")
        if path.suffix == ".parquet":
            frame = pd.read_parquet(path, columns=columns)
        else:
            frame = pd.read_csv(path, usecols=columns, low_memory=False)
    except (OSError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise DataFormatError(
            f"log file {path} cannot be read ({type(exc).__name__}: {exc}); the file may be "
            "truncated, corrupt or not UTF-8 text"
        ) from None
    if frame.empty:
        raise DataFormatError(f"log file {path} has a header but no data rows")
    if path.suffix != ".parquet":
        _refuse_repeated_header(frame, path)
    return frame


def _refuse_repeated_header(frame: pd.DataFrame, path: Path) -> None:
    """A data row equal to the header (files concatenated with their headers) is named at its
    real line, instead of surfacing as a wrong value in whichever column is checked first."""
    text = [frame[c] for c in frame.columns if not pd.api.types.is_numeric_dtype(frame[c])]
    if len(text) < len(frame.columns):  # a numeric column cannot hold its own name
        return
    repeated = np.logical_and.reduce([col.astype(str).to_numpy() == str(col.name) for col in text])
    if repeated.any():
        row = int(np.flatnonzero(repeated)[0])
        raise DataFormatError(
            f"log file {path}: line {row + 2} repeats the header (were files concatenated with "
            "their headers?); remove it"
        )


def warn_uninformative(frame: pd.DataFrame, roles: ColumnRoles, label: str) -> None:
    """Warn, naming them, about feature columns that are entirely empty or hold one value:
    they carry no signal (the dataset is still built)."""
    for column in [*roles.categorical, *roles.numerical]:
        values = frame[column].dropna()
        if values.empty:
            warnings.warn(f"{label}: feature column '{column}' is entirely empty", stacklevel=3)
        elif values.nunique() == 1:
            warnings.warn(
                f"{label}: feature column '{column}' holds one value "
                f"({plain(values.iloc[0])!r}) in every row",
                stacklevel=3,
            )


def _timestamps_ms(values: pd.Series, unit: str, label: str, column: str) -> np.ndarray:
    if not pd.api.types.is_numeric_dtype(values):
        numbers = pd.to_numeric(values, errors="coerce")
        if numbers.notna().mean() > 0.5:  # an epoch column with a few bad cells: name the first
            bad = numbers.isna().to_numpy()
            row = int(np.flatnonzero(bad)[0])
            raise DataFormatError(
                f"{label}: column '{column}' has value {plain(values.iloc[row])!r} at data row "
                f"{row + 1}; expected an epoch number in {unit}"
            )
    if pd.api.types.is_numeric_dtype(values):
        if values.isna().any():
            raise DataFormatError(f"{label}: column '{column}' has empty timestamps")
        check_epoch_unit(values.to_numpy(), unit, label, column)
        return (values.to_numpy(np.float64) * (1000 if unit == "s" else 1)).astype(np.int64)
    parsed = pd.to_datetime(values, errors="coerce", utc=True)
    bad = parsed.isna()
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise DataFormatError(
            f"{label}: column '{column}' has value {plain(values.iloc[row])!r} at data row {row + 1}; "
            f"expected an epoch number in {unit} or a date-time"
        )
    return (
        (parsed - pd.Timestamp("1970-01-01", tz="UTC"))
        .dt.total_seconds()
        .mul(1000)
        .round()
        .astype(np.int64)
        .to_numpy()
    )


def build_impressions(
    path: str | Path, roles: ColumnRoles, name: str | None = None
) -> ImpressionTable:
    """Impression table of a user's own log file."""
    path = Path(path)
    label = f"log file {path}"
    frame = read_log_file(path, roles.columns())
    check_binary(frame, roles.labels, label)
    warn_uninformative(frame, roles, label)
    for column in roles.numerical:
        if not pd.api.types.is_numeric_dtype(frame[column]):
            converted = pd.to_numeric(frame[column], errors="coerce")
            bad = converted.isna() & frame[column].notna()
            if bad.any():
                row = int(np.flatnonzero(bad.to_numpy())[0])
                raise DataFormatError(
                    f"{label}: numerical column '{column}' has value {plain(frame[column].iloc[row])!r} "
                    f"at data row {row + 1}; expected a number"
                )
            frame[column] = converted
        infinite = np.isinf(frame[column].to_numpy(np.float64))
        if infinite.any():
            row = int(np.flatnonzero(infinite)[0])
            raise DataFormatError(
                f"{label}: numerical column '{column}' has value {float(frame[column].iloc[row])} "
                f"at data row {row + 1}; expected a finite number (an empty cell means missing)"
            )
    counts = {"rows_read": len(frame)}
    duplicated = frame.duplicated()
    counts["duplicate_rows_removed"] = int(duplicated.sum())
    frame = frame[~duplicated.to_numpy()].reset_index(drop=True)
    time = _timestamps_ms(frame[roles.timestamp], roles.timestamp_unit, label, roles.timestamp)
    key_column = roles.session or roles.user
    if frame[key_column].isna().any():
        raise DataFormatError(f"{label}: column '{key_column}' has empty values")
    key, _ = pd.factorize(frame[key_column])
    order = np.lexsort((time, key))
    counts["rows_were_sorted"] = bool((order == np.arange(len(order))).all())
    frame, time, key = frame.iloc[order].reset_index(drop=True), time[order], key[order]
    if roles.user is not None:
        session = sessionize_by_gap(key, time, int(roles.session_gap_minutes * 60_000))
    else:
        session = key
    out = pd.DataFrame({"session": session, "timestamp": time, "raw_user_id": key})
    item = frame[roles.item] if roles.item else pd.Series(np.zeros(len(frame)))
    out["raw_item_id"] = pd.factorize(item)[0].astype(np.int64)
    tasks = list(roles.labels)
    for task in tasks:
        out[label_column(task)] = frame[task].to_numpy().astype(np.int8)
    counts["nesting_violations_changed"] = (
        enforce_nesting(out, tasks, roles.nesting, label) if roles.nested_labels else 0
    )
    for column in roles.categorical:
        out[column] = frame[column].to_numpy()
    for column in roles.numerical:
        out[column] = frame[column].to_numpy(np.float64)
    return ImpressionTable(
        name=name or path.stem,
        source="custom",
        frame=out,
        categorical=list(roles.categorical),
        numerical=list(roles.numerical),
        tasks=tasks,
        params={"roles": asdict(roles)},
        raw_files=[file_digest(path)],
        row_counts=counts,
    )
