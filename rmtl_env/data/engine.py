"""The DuckDB preparation engine: the steps every source shares, under a memory limit.

Each source module (``retailrocket``, ``kuairand``, ``custom``) reads and checks its raw files in
SQL and builds the ``imp`` table: one row per impression with ``ord`` (its place in the files),
``session_id``, ``split``, the raw categorical and numerical values and the labels, written in
the processed rows' order (session, time, file order). This module holds the shared steps of
the processed-dataset contract (``rmtl_env.data.processing`` states it), each written once:
sessionising by inactivity gap, the temporal split, the nesting of labels, train-only
vocabularies (with ``min_count``, ``max_vocab``, ``share_threshold`` and ``hash_buckets``), the
standardisation (NumPy, for bit-identical features), the streamed Parquet writer and the
per-split statistics.

DuckDB runs every step under the ``memory_limit`` and ``threads`` the caller sets, spilling to
a temporary folder beside the output that is removed on success, on failure and on interrupt.
Tie-breaks are fixed: rows with equal (user, time) keep their file order, and values with
equal training counts get ids by first appearance in session order.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import re
import shutil
import signal
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from rmtl_env.data.dataset import (
    IMPRESSIONS_FILE,
    META_FILE,
    PROB_EPS,
    SPLITS,
    VOCABULARY_FILE,
    label_column,
    true_prob_column,
)
from rmtl_env.data.errors import DataFormatError
from rmtl_env.data.io import file_digest, require_header
from rmtl_env.data.processing import (
    ProcessingConfig,
    fit_scaling,
    hash_category_ids,
    processed_meta,
    standardise,
)

ROW_GROUP_SIZE = 1_000_000


@contextlib.contextmanager
def work_folder(parent: Path) -> Iterator[Path]:
    """A temporary folder for DuckDB's database and spill files beside the output, removed on
    success, on an error, on Ctrl-C and on SIGTERM (turned into ``KeyboardInterrupt`` while the
    folder exists). Its name holds the process id: a run killed outright (SIGKILL, power loss)
    leaves it behind, and the next preparation in ``parent`` removes it once that process is
    gone."""
    for stale in parent.glob(".duckdb-*-*"):
        pid = stale.name.split("-")[1]
        if pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
            shutil.rmtree(stale, ignore_errors=True)
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        with tempfile.TemporaryDirectory(prefix=f".duckdb-{os.getpid()}-", dir=parent) as work:
            yield Path(work)
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def digests_alongside(paths: list[Path]) -> Iterator[Future]:
    """A future of the raw files' digests (``io.file_digest``, in ``paths`` order), computed in a
    thread while DuckDB works: hashing and DuckDB both release the GIL."""
    with ThreadPoolExecutor(1, thread_name_prefix="raw-digests") as pool:
        yield pool.submit(lambda: [file_digest(p) for p in paths])


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def _connect(work: Path, memory_limit: str, threads: int):
    try:
        import duckdb
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            'out-of-core preparation needs DuckDB: pip install -e ".[scale]"'
        ) from exc
    con = duckdb.connect(str(work / "prepare.duckdb"))
    con.execute(f"SET memory_limit = '{memory_limit}'")
    con.execute(f"SET threads = {int(threads)}")
    con.execute(f"SET temp_directory = '{work / 'spill'}'")
    con.execute("SET preserve_insertion_order = true")
    con.execute("SET enable_progress_bar = false")  # our tqdm bar shows the steps
    return con


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def require_content(path: Path, what: str) -> None:
    """A ``DataFormatError`` naming ``path`` (the ``what``) if the file is empty (0 bytes)."""
    if path.stat().st_size == 0:
        raise DataFormatError(f"{what} {path} is empty")


def read_checked(con, sql: str, path: Path, what: str) -> None:
    """Run ``sql``, a statement reading the CSV file ``path`` (its one parameter); an empty file
    or a DuckDB error (a value of the wrong type, a missing column) becomes a
    ``DataFormatError`` naming the file. Running out of memory is not a file problem: it stays
    itself (``preparation`` names the memory limit)."""
    import duckdb

    require_content(path, what)
    try:
        con.execute(sql, [str(path)])
    except duckdb.OutOfMemoryException:
        raise
    except duckdb.Error as exc:
        raise DataFormatError(f"{what} {path}: {csv_problem(str(exc))}") from None


def fetch_one(con, sql: str, params: list | None = None) -> tuple | None:
    """The first row of ``sql`` (None if it gives none), its result fetched to the end: DuckDB
    refuses the next statement while a result is unfinished."""
    rows = con.execute(sql, params or []).fetchall()
    return rows[0] if rows else None


def require_rows(con, table: str, columns: list[str], label: str, where: str = "true") -> int:
    """The number of rows of ``table`` meeting ``where`` (the rows one file gave), refused with
    a ``DataFormatError`` naming ``label`` (the file) if there are none or if one of ``columns``
    has an empty (NULL) value in them."""
    counts = ", ".join(f"count(*) FILTER (WHERE {_quote(c)} IS NULL)" for c in columns)
    rows, *empty = fetch_one(con, f"SELECT count(*), {counts} FROM {table} WHERE {where}")
    if rows == 0:
        raise DataFormatError(f"{label} has a header but no data rows")
    for column, count in zip(columns, empty, strict=True):
        if count:
            raise DataFormatError(f"{label}: column '{column}' has {count} empty value(s); "
                                  "expected a value in every row")  # fmt: skip
    return rows


# The cells a feature table's reader takes for missing (pyarrow's defaults, which the tables were
# read with before DuckDB read them; pandas' defaults add "<NA>" and "None": custom.MISSING_TEXT).
MISSING_CELLS = ["", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND",
                 "1.#QNAN", "N/A", "NA", "NULL", "NaN", "n/a", "nan", "null"]  # fmt: skip


def read_table(con, table: str, path: Path, types: dict[str, str], what: str,
               nullable: tuple[str, ...] = ()) -> None:  # fmt: skip
    """The ``types`` columns of the CSV file ``path`` (a feature table, ``what`` names it) into
    ``table``, checked: the header, the values' types, no empty value outside ``nullable``, the
    first column unique."""
    label = f"{what} file {path}"
    require_header(path, list(types), label)
    spec = "{" + ", ".join(f"'{c}': '{t}'" for c, t in types.items()) + "}"
    missing = "[" + ", ".join(f"'{m}'" for m in MISSING_CELLS) + "]"
    columns = ", ".join(_quote(c) for c in types)
    read_checked(con, f"CREATE TABLE {table} AS SELECT {columns} FROM read_csv(?, header = true, "
                 f"types = {spec}, nullstr = {missing})", path, what + " file")  # fmt: skip
    require_rows(con, table, [c for c in types if c not in nullable], label)
    key = _quote(next(iter(types)))
    if fetch_one(con, f"SELECT count(*) - count(DISTINCT {key}) FROM {table}")[0]:
        raise DataFormatError(f"{label}: column '{next(iter(types))}' must be unique")


DUCKDB_TYPES = {"BIGINT": "an integer", "INTEGER": "an integer", "DOUBLE": "a number",
                "FLOAT": "a number", "VARCHAR": "text"}  # fmt: skip


def csv_problem(message: str) -> str:
    """What a DuckDB CSV error says, in our words: the column, the value and the line where
    DuckDB names them, else its first line without the error class (never the reader's dump of
    every CSV option)."""
    line = re.search(r"CSV Error on Line: (\d+)", message)
    value = re.search(r'converting column "([^"]*)"\. Could not convert string "([^"]*)" to '
                      r"'([A-Z0-9_]+)'", message)  # fmt: skip
    if value:
        column, text, sql_type = value.groups()
        where = f" at line {line.group(1)}" if line else ""
        expected = DUCKDB_TYPES.get(sql_type, sql_type.lower())
        return f"column '{column}' has value {text!r}{where}; expected {expected}"
    parts = [part.strip() for part in message.splitlines() if part.strip()] or [message]
    first = re.sub(r"^[A-Za-z_ ]*Error: ", "", parts[0])  # "Invalid Input Error: ..." -> "..."
    if line and first.startswith("CSV Error on Line") and len(parts) > 1:
        first = parts[2] if parts[1].startswith("Original Line") and len(parts) > 2 else parts[1]
    where = f" (line {line.group(1)})" if line else ""
    return f"cannot be read: {first}{where}"


def sessionised(table: str, gap_ms: int) -> str:
    """A query of ``table`` (``user_id``, ``time_ms``, ``ord``) with ``user_session``: a user's
    rows in (time, file) order split where the time since the previous row exceeds ``gap_ms``
    (``processing.sessionize_by_gap``)."""
    return f"""
        SELECT *, sum(new_session) OVER (PARTITION BY user_id ORDER BY time_ms, ord
                                         ROWS UNBOUNDED PRECEDING) AS user_session
        FROM (
            SELECT *, CASE WHEN lag(time_ms) OVER w IS NULL OR time_ms - lag(time_ms) OVER w
                           > {int(gap_ms)} THEN 1 ELSE 0 END AS new_session
            FROM {table} WINDOW w AS (PARTITION BY user_id ORDER BY time_ms, ord)
        )
    """


def sorted_in_file_order(con, table: str) -> bool:
    """Whether (``user_id``, ``time_ms``) never decreases in file order (``ord``): the in-memory
    path's stable sort was then a no-op."""
    unsorted = fetch_one(
        con,
        f"""
        SELECT count(*) FROM (
            SELECT user_id, time_ms, lag(user_id) OVER w AS u0, lag(time_ms) OVER w AS t0
            FROM {table} WINDOW w AS (ORDER BY ord)
        ) WHERE user_id < u0 OR (user_id = u0 AND time_ms < t0)
    """,
    )[0]
    return unsorted == 0


def nest_labels(con, tasks: list[str], policy: str, what: str, first_row: bool = True) -> int:
    """Make each task's label in the ``log`` table (column ``task``, or ``label:<task>`` where
    that exists) imply the previous task's (``processing.enforce_nesting``); ``first_row``:
    name the first violating row (``ord`` is its data row). Returns the rows changed."""
    if policy == "ignore":
        return 0
    present = {row[0] for row in con.execute("SELECT column_name FROM (DESCRIBE log)").fetchall()}
    column = {t: label_column(t) if label_column(t) in present else t for t in tasks}
    changed = 0
    for earlier, later in zip(tasks[:-1], tasks[1:], strict=True):
        a, b = _quote(column[earlier]), _quote(column[later])
        count, row = fetch_one(con, f"SELECT count(*), min(ord) FROM log WHERE {b} = 1 AND {a} = 0")
        if count and policy == "error":
            where = f" (first at data row {row})" if first_row else ""
            raise DataFormatError(
                f"{what}: {count} row(s) have {later}=1 but {earlier}=0{where}; expected {later} "
                f"to imply {earlier}. Pass nesting='fix' to set {later} to {later} AND "
                f"{earlier}, or nesting='ignore' to keep the labels."
            )
        if count:
            con.execute(f"UPDATE log SET {b} = 0 WHERE {b} = 1 AND {a} = 0")
            changed += count
    return changed


def _sessions(con, ratios: tuple[float, float, float]) -> None:
    """``session_ids``: one row per session, numbered by (start, user, the user's session
    number), the in-memory order, with its split (``processing._temporal_split``: the split in
    which the session's first row falls)."""
    cuts = np.cumsum(ratios)[:2]
    n = fetch_one(con, "SELECT count(*) FROM log")[0]
    con.execute(f"""
        CREATE TABLE session_ids AS
        WITH numbered AS (
            SELECT user_id, user_session, count(*) AS size,
                   row_number() OVER (ORDER BY min(time_ms), user_id, user_session) - 1 AS session_id
            FROM log GROUP BY user_id, user_session
        ), shares AS (
            SELECT *, coalesce(sum(size) OVER (ORDER BY session_id ROWS BETWEEN UNBOUNDED
                      PRECEDING AND 1 PRECEDING), 0)::DOUBLE / {n} AS share
            FROM numbered
        )
        SELECT user_id, user_session, session_id,
               ((share >= {float(cuts[0])!r})::INTEGER + (share >= {float(cuts[1])!r})::INTEGER)
               ::TINYINT AS split
        FROM shares
    """)


def session_impressions(con, ratios: tuple[float, float, float], raw_item_id: str,
                        columns: list[str], joins: list[str]) -> None:  # fmt: skip
    """``imp``: every row of ``log`` (as ``l``) with its session id and split (``_sessions``),
    time, user and item (``raw_item_id``, SQL), and a source's ``columns`` (SQL with their
    names, over ``l`` and the tables its ``joins`` add), in the processed rows' order: session,
    time, file order."""
    _sessions(con, ratios)
    con.execute(f"""
        CREATE TABLE imp AS
        SELECT l.ord, s.session_id, s.split, l.time_ms AS timestamp, l.user_id AS raw_user_id,
               {raw_item_id} AS raw_item_id{"".join(f", {c}" for c in columns)}
        FROM log l JOIN session_ids s USING (user_id, user_session) {" ".join(joins)}
        ORDER BY s.session_id, l.time_ms, l.ord
    """)


def _vocabulary_query(name: str, processing: ProcessingConfig) -> str:
    """The ``processing.fit_category_ids`` rule of field ``name`` as a query of ``imp`` giving
    (``value``, ``train_count``, ``rank``, ``id``) for every value that gets an id other than 0:
    values by descending training count, ties by first appearance in session order."""
    column = _quote(name)
    stats = f"""
        WITH stats AS (
            SELECT {column} AS value, min({{'s': session_id, 't': timestamp, 'o': ord}})
                   AS first_pos, count(*) FILTER (WHERE split = 0) AS train_count
            FROM imp WHERE {column} IS NOT NULL GROUP BY {column}
        )"""
    order = "ORDER BY train_count DESC, first_pos"
    threshold = processing.share_threshold.get(name)
    if threshold is None:  # values seen min_count times, the first max_vocab of them
        cap = processing.max_vocab.get(name)
        return f"""{stats}
            SELECT value, train_count, row_number() OVER ({order}) AS rank, rank AS id
            FROM stats WHERE train_count >= {int(processing.min_count)}
            {"" if cap is None else f"QUALIFY id <= {int(cap)}"}"""
    # The official rule: own ids while the cumulative training share stays within the
    # threshold, one shared id for the rest (the share as NumPy divides: integer sum / total).
    return f"""{stats}, seen AS (
            SELECT value, train_count, row_number() OVER ({order}) AS rank,
                   sum(train_count) OVER ({order} ROWS UNBOUNDED PRECEDING) AS running
            FROM stats WHERE train_count > 0
        ), total AS (SELECT greatest(sum(train_count), 1)::DOUBLE AS n FROM seen)
        SELECT value, train_count, rank, least(rank, 1 + (
                   SELECT count(*) FROM seen, total WHERE running / n <= {float(threshold)!r}
               )) AS id
        FROM seen"""


def _vocabularies(
    con, categorical: list[str], processing: ProcessingConfig, coded: set[str]
) -> tuple[list[int], pd.DataFrame]:
    """``processing.fit_category_ids`` per field, as ``vocab_<i>`` tables (value -> id); a
    hashed field gets no table (``_write`` hashes its values)."""
    dims, frames = [], []
    for i, name in enumerate(categorical):
        if name in processing.hash_buckets:
            dims.append(processing.hash_buckets[name] + 1)
            continue
        con.execute(f"CREATE TABLE vocab_{i} AS {_vocabulary_query(name, processing)}")
        text, join = "CAST(v.value AS VARCHAR)", ""
        if name in coded:
            text, join = "t.value", "JOIN value_text t ON t.code = v.value"
        vocab = con.execute(
            f"SELECT ? AS field, {text} AS value, v.id, v.train_count FROM vocab_{i} v {join} "
            "ORDER BY v.rank",
            [name],
        ).df()
        dims.append(int(vocab["id"].max()) + 1 if len(vocab) else 1)
        frames.append(vocab)
    if not frames:  # no categorical field at all: untyped, as the in-memory path leaves it
        return dims, pd.DataFrame(columns=["field", "value", "id", "train_count"])
    vocabulary = pd.concat(frames, ignore_index=True)
    # Text columns as the in-memory path types them, also when every field's vocabulary is empty.
    types = {"field": "str", "value": "str", "id": np.int64, "train_count": np.int64}
    return dims, vocabulary.astype(types)


def _feature_values(values: np.ndarray, name: str, log1p: set[str]) -> np.ndarray:
    """A numerical field's values from its ``imp`` column: ``log1p`` fields hold the clipped
    argument, so that NumPy's ``log1p`` gives the feature (SQL's ``ln(1 + x)`` differs in the
    last bits)."""
    values = np.asarray(values, dtype=np.float64)
    return np.log1p(values) if name in log1p else values


def _standardisation(con, numerical: list[str], log1p: set[str]) -> dict[str, dict]:
    """``processing.fit_scaling`` of each numerical field, one field's training values in
    memory at a time (8 bytes a row)."""
    stats = {}
    for name in numerical:
        c = _quote(name)
        train = con.execute(
            f"SELECT {c} FROM imp WHERE split = 0 AND {c} IS NOT NULL"
        ).fetchnumpy()[name]
        mean, std = fit_scaling(_feature_values(train, name, log1p))
        ((missing,),) = con.execute(  # fetchall: no unfinished result is left
            f"SELECT count(*) FILTER (WHERE {c} IS NULL) FROM imp"
        ).fetchall()
        stats[name] = {"train_mean": mean, "train_std": std, "missing": int(missing)}
    return stats


def _check_truth(con, path: Path | None, tasks: tuple[str, ...]) -> None:
    """Every impression must have its true probabilities."""
    missing = fetch_one(
        con, f"SELECT count(*) FROM imp WHERE {_quote(true_prob_column(tasks[0]))} IS NULL"
    )[0]
    if missing:
        raise DataFormatError(f"synthetic truth file {path} lacks rows for {missing} impressions")


@dataclasses.dataclass(frozen=True)
class Fields:
    """What a source's ``imp`` table holds, for the steps every source shares after it.
    ``log1p``: the numerical fields whose column holds ``log1p``'s argument; ``coded``: the
    categorical fields whose column holds integer codes of the text in the table ``value_text``
    (``code``, ``value``)."""

    categorical: list[str]
    numerical: list[str]
    tasks: list[str]
    has_truth: bool = False
    log1p: frozenset[str] = frozenset()
    coded: frozenset[str] = frozenset()


class Preparation:
    """One source's preparation with DuckDB: a connection under ``memory_limit`` and
    ``threads`` in a ``work_folder`` beside ``out``, the raw files' digests computed alongside,
    and a tqdm bar of the source's ``steps`` plus the shared ones. Use it through
    ``preparation``; the source builds its ``imp`` table on ``con``, then calls ``finish``."""

    def __init__(self, name: str, out: Path, con, digests: Future, bar, memory_limit: str,
                 threads: int) -> None:  # fmt: skip
        self.name, self.out, self.con, self.digests, self.bar = name, out, con, digests, bar
        self.memory_limit, self.threads = memory_limit, threads
        self.started = time.perf_counter()
        self._open = False

    def step(self, what: str) -> None:
        """Close the step under way (if any) on the bar and show ``what`` as the next."""
        if self._open:
            self.bar.update()
        self.bar.set_postfix_str(what)
        self._open = True

    def finish(self, processing: ProcessingConfig, fields: Fields, counts: dict, params: dict,
               source: str, raw_used: int | None = None) -> dict:  # fmt: skip
        """The shared steps after ``imp`` (``map_and_write``), then ``vocabulary.parquet`` and
        ``meta.json``; returns the meta. ``raw_used``: how many of the raw files (in the order
        given to ``preparation``) the meta lists, when the last ones went unused."""
        if self._open:
            self.bar.update()
        written, vocabulary, dims, hashed = map_and_write(self.con, self.out, self.bar,
                                                          processing, fields)  # fmt: skip
        self.bar.set_postfix_str("checksums")
        raw = self.digests.result()[:raw_used]
        self.bar.update()
        run = {"engine": "duckdb", "memory_limit": self.memory_limit, "threads": int(self.threads),
               "seconds": time.perf_counter() - self.started}  # fmt: skip
        vocabulary.to_parquet(self.out / VOCABULARY_FILE, index=False)
        meta = processed_meta(
            numerical_stats=written["numerical_stats"], params={**params, "engine": run},
            row_counts={**counts, "impressions": written["splits_total"]}, name=self.name,
            source=source, tasks=list(fields.tasks), categorical=list(fields.categorical),
            field_dims=dims, numerical=list(fields.numerical), has_true_probs=fields.has_truth,
            hashed_fields=hashed, raw_files=raw,
        )  # fmt: skip
        meta["splits"] = written["splits"]
        (self.out / META_FILE).write_text(json.dumps(meta, indent=2))
        return meta


@contextlib.contextmanager
def preparation(name: str, out: Path, raw_paths: list[Path], memory_limit: str, threads: int,
                progress: bool, steps: int) -> Iterator[Preparation]:  # fmt: skip
    """A ``Preparation`` of the processed dataset ``name`` into the (new, empty) folder ``out``
    from ``raw_paths``; ``steps``: the source's own steps (the bar adds the three shared ones).
    DuckDB running out of memory becomes a ``MemoryError`` that names the limit and what to
    change; the work folder goes on success, on failure and on interrupt."""
    import duckdb

    bar = tqdm(total=steps + 3, desc=f"{name}: duckdb", unit="step", disable=not progress)
    try:
        with work_folder(out.parent) as work, digests_alongside(raw_paths) as digests:
            con = _connect(work, memory_limit, threads)
            try:
                yield Preparation(name, out, con, digests, bar, memory_limit, threads)
            finally:
                con.close()
    except duckdb.OutOfMemoryException as exc:
        raise MemoryError(
            f"preparing {name} with DuckDB ran out of memory under memory_limit={memory_limit!r} "
            f"with {threads} thread(s); raise --memory-limit or lower --threads ({exc})"
        ) from None
    finally:
        bar.close()


def map_and_write(con, out: Path, steps, processing: ProcessingConfig, fields: Fields) -> tuple:
    """The steps after a source's ``imp`` table, written in session order (session, time, file
    order): train-only vocabularies and standardisation, then ``impressions.parquet``
    (``_write``); advances the ``steps`` bar twice. Later scans of ``imp`` keep its order
    (``preserve_insertion_order``): NumPy sees the training values in the order the in-memory
    path gave them, and the writer streams without a second sort. Returns ``(written,
    vocabulary, field_dims, hashed_fields)``."""
    categorical, numerical, coded = fields.categorical, fields.numerical, fields.coded
    steps.set_postfix_str("vocabularies, standardisation")
    dims, vocabulary = _vocabularies(con, categorical, processing, coded)
    stats = _standardisation(con, numerical, fields.log1p)
    steps.update()
    steps.set_postfix_str("write impressions.parquet")
    hashed = {f: b for f, b in processing.hash_buckets.items() if f in categorical}
    texts = None
    if coded & set(hashed):  # a hashed field hashes its values' text
        texts = con.sql("SELECT value FROM value_text ORDER BY code").to_arrow_table()
        texts = (coded, texts.column("value").combine_chunks())
    written = _write(
        con,
        out,
        categorical,
        (numerical, fields.log1p),
        stats,
        tuple(fields.tasks),
        fields.has_truth,
        (hashed, texts),
    )
    steps.update()
    return written, vocabulary, dims, hashed


def _output_query(categorical, numerical, tasks, has_truth: bool, hashed: dict) -> str:
    """The query of ``imp`` whose rows ``_write`` turns into the processed columns."""
    per_task = []
    for t in tasks:
        per_task.append(f"{_quote(label_column(t))}::TINYINT AS {_quote(label_column(t))}")
        if has_truth:
            per_task.append(
                f"{_quote(true_prob_column(t))}::FLOAT AS {_quote(true_prob_column(t))}"
            )
    # Hashed fields as DuckDB's text of the value, which is Python's (ids hash str(value)); the
    # others as they are, looked up in their vocabulary.
    raw = [
        f"CAST({_quote(name)} AS VARCHAR) AS {_quote(name)}" if name in hashed else _quote(name)
        for name in categorical
    ]
    scaled = [f"{_quote(n)}::DOUBLE AS {_quote(n)}" for n in numerical]
    columns = ["session_id, timestamp, raw_user_id, raw_item_id", *raw, *scaled, *per_task]
    return f"SELECT {', '.join(columns)}, split FROM imp"


def _processed_batch(batch, lookups: list, hashed: tuple, log1p: set[str], stats: dict):
    """One batch of ``_output_query``'s rows as processed columns: ids through the vocabularies
    (``lookups``: per categorical field its (values, ids) arrays, None if hashed), numerical
    fields standardised by NumPy (``processing.standardise``), the split as a dictionary."""
    import pyarrow as pa
    import pyarrow.compute as pc

    hashed, texts = hashed
    columns = {name: batch.column(name) for name in batch.schema.names}
    for name, lookup in lookups:
        if lookup is None:
            values = columns[name]
            if texts is not None and name in texts[0]:  # codes -> the values' text
                values = pc.take(texts[1], pc.subtract(values.cast(pa.int64()), 1))
            text = values.to_pandas()
            columns[name] = pa.array(hash_category_ids(text, hashed[name]), pa.int64())
        else:
            index = pc.index_in(columns[name], value_set=lookup[0])
            columns[name] = pc.fill_null(pc.take(lookup[1], index), 0).cast(pa.int64())
    split = columns["split"].cast(pa.int8())
    columns["split"] = pa.DictionaryArray.from_arrays(split, pa.array(SPLITS))
    for n in stats:
        values = _feature_values(columns[n].to_numpy(zero_copy_only=False), n, log1p)
        columns[n] = pa.array(standardise(values, stats[n]["train_mean"], stats[n]["train_std"]))
    return pa.table(columns)


def _write(con, out: Path, categorical, numerical, stats, tasks, has_truth, hashed) -> dict:
    """``impressions.parquet``, streamed from ``imp`` in its (session) order one batch at a time
    (``_processed_batch``). ``numerical``: the fields and those of them that take ``log1p``.
    Also returns the numerical and per-split statistics."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    numerical, log1p = numerical
    hashed, texts = hashed
    lookups = []
    for i, name in enumerate(categorical):
        vocab = None
        if name not in hashed:
            table = con.sql(f"SELECT value, id FROM vocab_{i} ORDER BY id").to_arrow_table()
            vocab = (table.column("value").combine_chunks(), table.column("id").combine_chunks())
        lookups.append((name, vocab))
    query = _output_query(categorical, numerical, tasks, has_truth, hashed)
    # con.sql streams the result (con.execute would materialise all of it in memory).
    reader = con.sql(query).to_arrow_reader(ROW_GROUP_SIZE)
    rows, writer, ranges = 0, None, {n: [] for n in numerical}
    for batch in reader:
        table = _processed_batch(batch, lookups, (hashed, texts), log1p,
                                 {n: stats[n] for n in numerical})  # fmt: skip
        for n in numerical:
            ranges[n].append(tuple(x.as_py() for x in pc.min_max(table.column(n)).values()))
        if writer is None:
            writer = pq.ParquetWriter(out / IMPRESSIONS_FILE, table.schema)
        writer.write_table(table, row_group_size=ROW_GROUP_SIZE)
        rows += table.num_rows
    writer.close()
    for n in numerical:
        stats[n].update({"min": float(min(lo for lo, _ in ranges[n])),
                         "max": float(max(hi for _, hi in ranges[n]))})  # fmt: skip
    return {"numerical_stats": stats, "splits": _split_statistics(con, tasks, has_truth),
            "splits_total": rows}  # fmt: skip


def _split_statistics(con, tasks, has_truth: bool) -> dict:
    """Sessions, impressions, users, items, label rates and mean session length per split, and
    for a synthetic twin the oracle AUC and Logloss of its true probabilities: one grouped scan for
    the counts and label rates, one
    rank query per split and task for the oracle AUC (ties averaged)."""
    rates = "".join(f", avg({_quote(label_column(t))})" for t in tasks)
    rows = con.execute(
        "SELECT split, count(DISTINCT session_id), count(*), count(DISTINCT raw_user_id), "
        f"count(DISTINCT raw_item_id){rates} FROM imp GROUP BY split"
    ).fetchall()
    found = {row[0]: row[1:] for row in rows}
    out = {}
    for code, name in enumerate(SPLITS):
        sessions, count, users, items, *label_rates = found.get(
            code, (0, 0, 0, 0, *[None] * len(tasks))
        )
        entry = {
            "sessions": int(sessions), "impressions": int(count), "users": int(users),
            "items": int(items), "mean_session_length": float(count / sessions) if sessions else 0.0,
            "label_rate": {t: float("nan") if r is None else float(r)
                           for t, r in zip(tasks, label_rates, strict=True)},
        }  # fmt: skip
        if has_truth and count:
            entry["oracle"] = {t: _oracle(con, code, t) for t in tasks}
        out[name] = entry
    return out


def _oracle(con, split: int, task: str) -> dict:
    y, p = _quote(label_column(task)), _quote(true_prob_column(task))
    auc, loss = fetch_one(
        con,
        f"""
        WITH ranked AS (
            SELECT {y} AS y, {p}::FLOAT AS p, rank() OVER (ORDER BY {p}) AS r,
                   count(*) OVER (PARTITION BY {p}) AS ties
            FROM imp WHERE split = {split}
        )
        SELECT (sum(CASE WHEN y = 1 THEN r + (ties - 1) / 2.0 END)
                - sum(y) * (sum(y) + 1) / 2.0) / (sum(y) * (count(*) - sum(y))),
               avg(-(y * ln(least(greatest(p, {PROB_EPS}), 1 - {PROB_EPS}))
                     + (1 - y) * ln(1 - least(greatest(p, {PROB_EPS}), 1 - {PROB_EPS}))))
        FROM ranked
    """,
    )
    return {"auc": float(auc) if auc is not None else float("nan"), "logloss": float(loss)}
