"""Bring your own logs: one CSV, Parquet or JSON-lines file plus a column-role config.

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

DuckDB prepares the file, of any size, under a memory limit. Values are read as pandas reads
them: the cells pandas takes for missing (``NA``, ``null``, ``NaN``, ...) are missing, date-like
text stays text, and a categorical value's text is pandas' (an integer column with an empty cell
is a float column, ``3`` reads ``3.0``; a boolean is ``True``/``False``). Errors name the file,
the column and the data row (the row's number in the file, header not counted).
"""

from __future__ import annotations

import dataclasses
import json
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from rmtl_env.data.dataset import label_column
from rmtl_env.data.engine import (
    MISSING_CELLS,
    Fields,
    _quote,
    fetch_one,
    nest_labels,
    preparation,
    read_checked,
    require_content,
    session_impressions,
    sessionised,
    sorted_in_file_order,
)
from rmtl_env.data.errors import DataFormatError, name_list
from rmtl_env.data.io import check_epoch_unit
from rmtl_env.data.processing import ProcessingConfig

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


# pandas.read_csv's default missing-value markers: pyarrow's and two more.
MISSING_TEXT = sorted([*MISSING_CELLS, "<NA>", "None"])
INTEGER_TYPES = {"TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "UTINYINT", "USMALLINT",
                 "UINTEGER", "UBIGINT"}  # fmt: skip
NUMBER_TYPES = INTEGER_TYPES | {"FLOAT", "DOUBLE", "BOOLEAN"}
TIME_TYPES = {"DATE", "TIMESTAMP", "TIMESTAMP WITH TIME ZONE", "TIMESTAMP_NS", "TIMESTAMP_MS"}


def _scan(path: Path) -> str:
    """The DuckDB table function reading ``path`` (its one parameter), by file type."""
    if path.suffix == ".parquet":
        return "read_parquet(?)"
    if path.suffix in (".jsonl", ".ndjson") or path.name.endswith((".jsonl.gz", ".ndjson.gz")):
        return "read_json(?, format = 'newline_delimited')"
    missing = ", ".join(f"'{m}'" for m in MISSING_TEXT)
    return (
        f"read_csv(?, header = true, nullstr = [{missing}], "
        "auto_type_candidates = ['BOOLEAN', 'BIGINT', 'DOUBLE', 'VARCHAR'])"
    )


def _in(column: str) -> str:
    """A log column inside our tables: prefixed, so that a user's column named ``user_id`` or
    ``split`` cannot collide with the columns the preparation adds."""
    return _quote(f"in:{column}")


def _read(con, path: Path, roles: ColumnRoles) -> dict[str, str]:
    """``raw``: the roles' columns of ``path`` with their data row ``line``; returns each
    column's DuckDB type."""
    require_content(path, "log file")
    read_checked(con, f"CREATE TABLE probe AS DESCRIBE SELECT * FROM {_scan(path)}", path,
                 "log file")  # fmt: skip
    found = dict(con.execute("SELECT column_name, column_type FROM probe").fetchall())
    missing = [c for c in roles.columns() if c not in found]
    if missing:
        raise DataFormatError(f"log file {path}: missing column(s) {missing}; found {list(found)}")
    select = ", ".join(f"{_quote(c)} AS {_in(c)}" for c in roles.columns())
    read_checked(
        con,
        f"CREATE TABLE raw_rows AS SELECT {select} FROM {_scan(path)}",
        path,
        "log file",
    )
    # rowid: the insertion order, which is the file order (no window over the scan).
    con.execute("CREATE VIEW raw AS SELECT *, rowid + 1 AS line FROM raw_rows")
    if fetch_one(con, "SELECT count(*) FROM raw")[0] == 0:
        raise DataFormatError(f"log file {path} has a header but no data rows")
    types = {c: found[c] for c in roles.columns()}
    if path.suffix != ".parquet" and all(t == "VARCHAR" for t in types.values()):
        _refuse_repeated_header(con, path, list(types))
    return types


def _refuse_repeated_header(con, path: Path, columns: list[str]) -> None:
    """A data row equal to the header (files concatenated with their headers) is named."""
    same = " AND ".join(f"{_in(c)} = ?" for c in columns)
    row = fetch_one(con, f"SELECT min(line) FROM raw WHERE {same}", columns)[0]
    if row is not None:
        raise DataFormatError(
            f"log file {path}: line {row + 1} repeats the header (were files concatenated with "
            "their headers?); remove it"
        )


def _first_bad(con, table: str, condition: str, column: str) -> tuple[int, int, object] | None:
    """(count, first data row, its value of ``column``) of the rows of ``table`` meeting
    ``condition``, or None."""
    count, line = fetch_one(con, f"SELECT count(*), min(line) FROM {table} WHERE {condition}")
    if not count:
        return None
    value = fetch_one(con, f"SELECT {_in(column)} FROM {table} WHERE line = {line}")[0]
    return count, line, value


def _check_labels(con, path: Path, labels: list[str]) -> None:
    for column in labels:
        number = f"TRY_CAST({_in(column)} AS DOUBLE)"
        bad = _first_bad(con, "raw", f"{number} IS NULL OR {number} NOT IN (0, 1)", column)
        if bad:
            raise DataFormatError(
                f"log file {path}: label column '{column}' has {bad[0]} value(s) outside "
                f"{{0, 1}} (first: {bad[2]!r} at data row {bad[1]}); expected 0 or 1"
            )


def _numerical(con, path: Path, columns: list[str], types: dict[str, str]) -> list[str]:
    """Each numerical column as a DOUBLE expression; text and infinite values are refused."""
    exprs = []
    for column in columns:
        value = f"TRY_CAST({_in(column)} AS DOUBLE)"
        if types[column] not in NUMBER_TYPES:
            bad = _first_bad(con, "raw", f"{_in(column)} IS NOT NULL AND {value} IS NULL", column)
            if bad:
                raise DataFormatError(
                    f"log file {path}: numerical column '{column}' has value {bad[2]!r} at data "
                    f"row {bad[1]}; expected a number"
                )
        bad = _first_bad(con, "raw", f"isinf({value})", column)
        if bad:
            raise DataFormatError(
                f"log file {path}: numerical column '{column}' has value {float(bad[2])} at data "
                f"row {bad[1]}; expected a finite number (an empty cell means missing)"
            )
        exprs.append(f"{value} AS {_in(column)}")
    return exprs


def _category_text(column: str, sql_type: str, has_missing: bool) -> str:
    """A categorical column as pandas' text of its values (NULL stays NULL)."""
    c = _in(column)
    if sql_type == "BOOLEAN":
        return f"CASE WHEN {c} THEN 'True' WHEN NOT {c} THEN 'False' END AS {c}"
    if sql_type in INTEGER_TYPES and has_missing:  # pandas reads it as a float column
        return f"CAST({c}::DOUBLE AS VARCHAR) AS {c}"
    return f"CAST({c} AS VARCHAR) AS {c}"


def _warn_uninformative(con, path: Path, roles: ColumnRoles) -> dict[str, bool]:
    """Warn about feature columns that are entirely empty or hold one value; returns which
    feature columns have an empty cell."""
    has_missing = {}
    for column in [*roles.categorical, *roles.numerical]:
        c = _in(column)
        distinct, missing, value = fetch_one(
            con,
            f"SELECT count(DISTINCT {c}), count(*) FILTER (WHERE {c} IS NULL), any_value({c}) "
            "FROM raw",
        )
        has_missing[column] = bool(missing)
        if distinct == 0:
            warnings.warn(f"log file {path}: feature column '{column}' is entirely empty",
                          stacklevel=4)  # fmt: skip
        elif distinct == 1:
            warnings.warn(f"log file {path}: feature column '{column}' holds one value "
                          f"({value!r}) in every row", stacklevel=4)  # fmt: skip
    return has_missing


def _timestamps(con, path: Path, roles: ColumnRoles, sql_type: str) -> str:
    """The expression of a ``kept`` row's time in epoch ms (``custom._timestamps_ms``)."""
    column, unit = roles.timestamp, roles.timestamp_unit
    c, label = _in(column), f"log file {path}"
    if sql_type in TIME_TYPES:
        return f"CAST(round(epoch_us({c}::TIMESTAMPTZ) / 1000) AS BIGINT)"
    if sql_type == "VARCHAR":
        number, parsed = f"TRY_CAST({c} AS DOUBLE)", f"TRY_CAST({c} AS TIMESTAMPTZ)"
        numbers, rows = fetch_one(con, f"SELECT count({number}), count(*) FROM kept")
        if numbers > 0.5 * rows:  # an epoch column with a few bad cells: name the first
            bad = _first_bad(con, "kept", f"{number} IS NULL", column)
            raise DataFormatError(f"{label}: column '{column}' has value {bad[2]!r} at data row "
                                  f"{bad[1]}; expected an epoch number in {unit}")  # fmt: skip
        bad = _first_bad(con, "kept", f"{parsed} IS NULL", column)
        if bad:
            raise DataFormatError(f"{label}: column '{column}' has value {bad[2]!r} at data row "
                                  f"{bad[1]}; expected an epoch number in {unit} or a date-time")  # fmt: skip
        return f"CAST(round(epoch_us({parsed}) / 1000) AS BIGINT)"
    empty, low, high = fetch_one(
        con,
        f"SELECT count(*) FILTER (WHERE {c} IS NULL), min({c}::DOUBLE), max({c}::DOUBLE) FROM kept",
    )
    if empty:
        raise DataFormatError(f"{label}: column '{column}' has empty timestamps")
    check_epoch_unit(np.array([low, high]), unit, label, column)
    return f"trunc({c}::DOUBLE * {1000 if unit == 's' else 1})::BIGINT"


def _deduplicated(con, path: Path, roles: ColumnRoles, types: dict[str, str]) -> dict:
    """``kept``: the checked, typed rows of ``raw``, one per distinct row (``line``: its first
    data row); returns the row counts."""
    _check_labels(con, path, roles.labels)
    has_missing = _warn_uninformative(con, path, roles)
    exprs = [
        _category_text(c, types[c], has_missing[c]) if c in roles.categorical else _in(c)
        for c in roles.columns()
        if c not in roles.numerical
    ]
    exprs += _numerical(con, path, roles.numerical, types)
    everything = ", ".join(_in(c) for c in roles.columns())
    con.execute(f"CREATE TABLE kept AS SELECT {everything}, min(line) AS line FROM "
                f"(SELECT {', '.join(exprs)}, line FROM raw) GROUP BY ALL")  # fmt: skip
    read, kept = fetch_one(con, "SELECT (SELECT count(*) FROM raw), count(*) FROM kept")
    con.execute("DROP VIEW raw")
    con.execute("DROP TABLE raw_rows")
    return {"rows_read": read, "duplicate_rows_removed": read - kept}


def _log(con, path: Path, roles: ColumnRoles, types: dict[str, str]) -> dict:
    """``log``: the distinct rows (``ord``: the first data row) with user code, time in ms,
    session and labels; returns the row counts."""
    counts = _deduplicated(con, path, roles, types)
    time_ms = _timestamps(con, path, roles, types[roles.timestamp])
    key = roles.session or roles.user
    if fetch_one(con, f"SELECT count(*) FROM kept WHERE {_in(key)} IS NULL")[0]:
        raise DataFormatError(f"log file {path}: column '{key}' has empty values")
    # User (or session) codes by first appearance, as pandas.factorize numbers them.
    con.execute(f"CREATE TABLE keys AS SELECT {_in(key)} AS key, row_number() OVER "
                f"(ORDER BY min(line)) - 1 AS user_id FROM kept GROUP BY {_in(key)}")  # fmt: skip
    labels = ", ".join(f"TRY_CAST({_in(t)} AS DOUBLE)::TINYINT AS {_quote(label_column(t))}"
                       for t in roles.labels)  # fmt: skip
    con.execute(f"CREATE TABLE timed AS SELECT k.user_id, {time_ms} AS time_ms, kept.line AS ord, "
                f"kept.*, {labels} FROM kept JOIN keys k ON k.key = kept.{_in(key)}")  # fmt: skip
    con.execute("DROP TABLE kept")
    counts["rows_were_sorted"] = sorted_in_file_order(con, "timed")
    if roles.user is not None:
        gap = int(roles.session_gap_minutes * 60_000)
        con.execute(f"CREATE TABLE log AS {sessionised('timed', gap)}")
    else:
        con.execute("CREATE TABLE log AS SELECT *, 0 AS user_session FROM timed")
    con.execute("DROP TABLE timed")
    counts["nesting_violations_changed"] = (
        nest_labels(con, roles.labels, roles.nesting, f"log file {path}")
        if roles.nested_labels
        else 0
    )
    return counts


def _impressions(con, roles: ColumnRoles, ratios) -> None:
    """``imp``: every kept row with its session id, split, item code and features."""
    joins, item = [], "0"
    if roles.item:  # codes by first appearance in (user, time) order, as pandas.factorize
        con.execute(f"""
            CREATE TABLE items AS SELECT {_in(roles.item)} AS item,
                   row_number() OVER (ORDER BY min((user_id, time_ms, ord))) - 1 AS code
            FROM log WHERE {_in(roles.item)} IS NOT NULL GROUP BY ALL
        """)
        joins, item = [f"LEFT JOIN items i ON i.item = l.{_in(roles.item)}"], "coalesce(i.code, -1)"
    columns = [f"l.{_in(c)} AS {_quote(c)}" for c in [*roles.categorical, *roles.numerical]]
    labels = [f"l.{_quote(label_column(t))}" for t in roles.labels]
    session_impressions(con, ratios, f"{item}::BIGINT", columns + labels, joins)
    con.execute("DROP TABLE log")


def prepare_custom(
    path: Path,
    roles: ColumnRoles,
    processing: ProcessingConfig,
    out: Path,
    name: str,
    memory_limit: str = "4GB",
    threads: int = 2,
    progress: bool = True,
) -> dict:
    """Write the processed dataset of the log file ``path`` into the (new, empty) folder
    ``out`` with DuckDB and return its ``meta``."""
    with preparation(name, out, [path], memory_limit, threads, progress, steps=2) as prep:
        prep.con.execute("SET TimeZone = 'UTC'")  # a date-time without an offset is UTC
        prep.step("read, check, deduplicate, sessionise")
        types = _read(prep.con, path, roles)
        counts = _log(prep.con, path, roles, types)
        prep.step("split")
        _impressions(prep.con, roles, processing.split_ratios)
        fields = Fields(list(roles.categorical), list(roles.numerical), list(roles.labels))
        params = {"roles": asdict(roles), "processing": asdict(processing)}
        return prep.finish(processing, fields, counts, params, source="custom")
