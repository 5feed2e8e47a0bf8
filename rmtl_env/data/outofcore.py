"""KuaiRand (1K and 27K) prepared out of core with DuckDB: the same processed dataset as the
in-memory path (``kuairand.build_impressions`` + ``processing.build_processed``), for logs that
do not fit in memory (KuaiRand-27K: 322M rows, 23 GB of CSV).

DuckDB (an optional extra: ``pip install -e ".[scale]"``) runs every step as SQL under the
``memory_limit`` and ``threads`` the caller sets, spilling to a temporary folder beside the
output: the CSV scan, the removal of duplicate rows, the sort by (user, time), sessionising with
window functions, the joins of the user and video features, the nesting fix, the temporal split,
train-only vocabularies with rare values mapped to 0, the standardisation, and one Parquet file
``impressions.parquet`` in session order (row groups of ``ROW_GROUP_SIZE`` rows, so a reader can
stream it) with ``vocabulary.parquet`` and ``meta.json``, as the processed-dataset contract says.

Equal to the in-memory path: the same rows in the same order, sessions, splits, labels, ids and
vocabulary; the numerical features agree to float32 rounding (DuckDB's sums and ``ln(1 + x)``
are not NumPy's pairwise sums and ``log1p``). The tie-breaks follow the in-memory path: rows
with equal (user, time) keep their file order, and values with equal training counts get ids by
first appearance in session order.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict
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
from rmtl_env.data.io import file_digest
from rmtl_env.data.kuairand import (
    BEIJING_OFFSET_MS,
    FEEDBACK_COLUMNS,
    LOG_COLUMNS,
    NUMERICAL_FIELDS,
    USER_CATEGORICAL,
    USER_NUMERICAL,
    VIDEO_CATEGORICAL,
    KuaiRandConfig,
    KuaiRandFiles,
    _require_columns,
    categorical_fields,
    loader_params,
    read_user_features,
    used_log_columns,
)
from rmtl_env.data.processing import (
    ProcessingConfig,
    fit_scaling,
    hash_category_ids,
    processed_meta,
    standardise,
)

ROW_GROUP_SIZE = 1_000_000
VIDEO_TYPES = {
    "video_id": "BIGINT", "author_id": "BIGINT", "video_type": "VARCHAR", "upload_dt": "VARCHAR",
    "upload_type": "VARCHAR", "visible_status": "DOUBLE", "video_duration": "DOUBLE",
    "server_width": "DOUBLE", "server_height": "DOUBLE", "music_id": "BIGINT",
    "music_type": "DOUBLE", "tag": "VARCHAR",
}  # fmt: skip


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
    itself (``run_preparation`` names the memory limit)."""
    import duckdb

    require_content(path, what)
    try:
        con.execute(sql, [str(path)])
    except duckdb.OutOfMemoryException:
        raise
    except duckdb.Error as exc:
        raise DataFormatError(f"{what} {path}: {csv_problem(str(exc))}") from None


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


def _read_logs(con, files: KuaiRandFiles, used: list[str]) -> None:
    """Every log file into ``raw_log`` with its file number and line, checked."""
    columns = ", ".join(f"{_quote(c)} BIGINT" for c in used)
    con.execute(f"CREATE TABLE raw_log ({columns})")  # rowid: the (file, line) order
    types = "{" + ", ".join(f"'{c}': 'BIGINT'" for c in used) + "}"
    select = ", ".join(_quote(c) for c in used)
    bad_values = ", ".join(  # feedback: outside {0, 1}; every column: empty
        f"count(*) FILTER (WHERE {_quote(c)} IS NULL"
        + (f" OR {_quote(c)} NOT IN (0, 1))" if c in FEEDBACK_COLUMNS else ")")
        for c in used
    )
    start = 0
    for path in files.logs:
        require_content(path, "interaction log file")  # before pyarrow reads the header
        _require_columns(path, LOG_COLUMNS)
        read_checked(
            con,
            f"INSERT INTO raw_log SELECT {select} FROM read_csv(?, header = true, types = {types})",
            path,
            "interaction log file",
        )
        ((rows, *bad_counts),) = con.execute(
            f"SELECT count(*), {bad_values} FROM raw_log WHERE rowid >= {start}"
        ).fetchall()
        start += rows
        if rows == 0:  # as the in-memory reader refuses it
            raise DataFormatError(f"interaction log file {path} has a header but no data rows")
        for column, bad in zip(used, bad_counts, strict=True):
            if bad:
                kind = "values outside {0, 1}" if column in FEEDBACK_COLUMNS else "empty values"
                raise DataFormatError(
                    f"interaction log file {path}: column '{column}' has {bad} {kind}"
                )


def _read_videos(con, path: Path) -> None:
    types = "{" + ", ".join(f"'{k}': '{v}'" for k, v in VIDEO_TYPES.items()) + "}"
    read_checked(
        con,
        "CREATE TABLE videos AS SELECT video_id, author_id, video_type, upload_type, "
        "visible_status, video_duration, server_width, server_height, music_type, "
        "split_part(tag, ',', 1) AS tag, upload_dt, "
        "date_diff('day', DATE '1970-01-01', try_strptime(upload_dt, '%Y-%m-%d')::DATE) "
        f"AS upload_day FROM read_csv(?, header = true, types = {types})",
        path,
        "video features file",
    )
    bad = con.execute(
        "SELECT upload_dt FROM videos WHERE upload_day IS NULL AND upload_dt IS NOT NULL LIMIT 1"
    ).fetchone()
    if bad:
        raise DataFormatError(
            f"video features file {path}: column 'upload_dt' has value {bad[0]!r}; expected "
            "YYYY-MM-DD"
        )
    dup = con.execute("SELECT count(*) - count(DISTINCT video_id) FROM videos").fetchone()[0]
    if dup:
        raise DataFormatError(f"video features file {path}: column 'video_id' must be unique")
    con.execute("UPDATE videos SET tag = NULL WHERE tag = ''")


def _impressions(con, files: KuaiRandFiles, config: KuaiRandConfig) -> dict:
    """The ``log`` table: one row per distinct log row (``ord``: its first file and line),
    sessionised per user, labels nested; returns the row counts."""
    used = used_log_columns(config.tasks)
    _read_logs(con, files, used)
    counts = {"log_rows_read": con.execute("SELECT count(*) FROM raw_log").fetchone()[0]}
    keys = ", ".join(_quote(c) for c in used)
    gap = int(config.session_gap_minutes * 60_000)
    # One row per distinct log row, keeping the first occurrence: ``ord`` is its (file, line).
    con.execute(
        f"CREATE TABLE kept AS SELECT {keys}, min(rowid) AS ord FROM raw_log GROUP BY {keys}"
    )
    con.execute("DROP TABLE raw_log")
    con.execute(f"CREATE TABLE log AS {sessionised('kept', gap)}")
    con.execute("DROP TABLE kept")
    kept = con.execute("SELECT count(*) FROM log").fetchone()[0]
    counts["duplicate_log_rows_removed"] = counts["log_rows_read"] - kept
    counts["log_rows_were_sorted"] = sorted_in_file_order(con, "log")
    counts["nesting_violations_changed"] = _nest(con, config, [p.name for p in files.logs])
    return counts


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
    unsorted = con.execute(f"""
        SELECT count(*) FROM (
            SELECT user_id, time_ms, lag(user_id) OVER w AS u0, lag(time_ms) OVER w AS t0
            FROM {table} WINDOW w AS (ORDER BY ord)
        ) WHERE user_id < u0 OR (user_id = u0 AND time_ms < t0)
    """).fetchone()[0]
    return unsorted == 0


def _nest(con, config: KuaiRandConfig, names: list[str]) -> int:
    """``processing.enforce_nesting`` on the ``log`` table."""
    what = f"interaction logs {names}"
    return nest_labels(con, list(config.nested_tasks), config.nesting, what, first_row=False)


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
        count, row = con.execute(
            f"SELECT count(*), min(ord) FROM log WHERE {b} = 1 AND {a} = 0"
        ).fetchone()
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


def _features(
    con, files: KuaiRandFiles, config: KuaiRandConfig, ratios: tuple[float, float, float]
) -> tuple[list[str], list[str], bool]:
    """The ``imp`` table: every kept row with its session id, split and raw features (in no
    order: session order is (``session_id``, ``timestamp``, ``ord``)); returns the categorical
    and numerical fields and whether the twin's true probabilities were joined."""
    users = read_user_features(files.user_features).reset_index()  # 27K rows: pandas
    users = users.astype({c: "string" for c in USER_CATEGORICAL})
    con.register("users_frame", users)
    _read_videos(con, files.video_features)
    categorical = categorical_fields(config)
    day = f"(l.time_ms + {BEIJING_OFFSET_MS}) // 86400000"

    def clipped(x: str) -> str:  # log1p's argument (``_write`` takes it); NULL stays NULL
        return f"CASE WHEN {x} IS NULL THEN NULL ELSE greatest({x}, 0)::DOUBLE END"

    sql = {
        "log_duration_s": clipped("v.video_duration / 1000"),
        "log_video_age_days": clipped(f"{day} - v.upload_day"),
        **{f"log_{c}": clipped(f"u.{c}") for c in USER_NUMERICAL},
    }
    numerical = {name: sql[name] for name in NUMERICAL_FIELDS}  # the in-memory loader's order
    user_cols = ", ".join(f"u.{_quote(c)}" for c in USER_CATEGORICAL)
    video_cols = ", ".join(f"v.{_quote(c)}" for c in VIDEO_CATEGORICAL)
    tasks = ", ".join(f"l.{_quote(t)} AS {_quote(label_column(t))}" for t in config.tasks)
    extra = ", l.video_id AS video_id" if config.include_video_id else ""
    _sessions(con, ratios)
    truth_join, truth_cols = _truth_join(con, files.truth, config.tasks)
    con.execute(f"""
        CREATE TABLE imp AS
        SELECT l.ord, s.session_id, s.split, l.time_ms AS timestamp, l.user_id AS raw_user_id,
               l.video_id AS raw_item_id, l.user_id AS user_id{extra}, {user_cols},
               {video_cols}, l.tab, ((l.time_ms + {BEIJING_OFFSET_MS}) // 3600000) % 24 AS hour,
               {", ".join(f"{sql} AS {_quote(n)}" for n, sql in numerical.items())}, {tasks}
               {truth_cols}, u.user_id IS NULL AS no_user, v.video_id IS NULL AS no_video
        FROM log l
        JOIN session_ids s USING (user_id, user_session)
        LEFT JOIN users_frame u ON u.user_id = l.user_id
        LEFT JOIN videos v ON v.video_id = l.video_id
        {truth_join}
        ORDER BY s.session_id, l.time_ms, l.ord  -- the processed rows' order
    """)
    con.execute("DROP TABLE log")
    return categorical, list(numerical), bool(truth_join)


def _sessions(con, ratios: tuple[float, float, float]) -> None:
    """``session_ids``: one row per session, numbered by (start, user, the user's session
    number), the in-memory order, with its split (``processing._temporal_split``: the split in
    which the session's first row falls)."""
    cuts = np.cumsum(ratios)[:2]
    n = con.execute("SELECT count(*) FROM log").fetchone()[0]
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
    con, categorical: list[str], processing: ProcessingConfig
) -> tuple[list[int], pd.DataFrame]:
    """``processing.fit_category_ids`` per field, as ``vocab_<i>`` tables (value -> id); a
    hashed field gets no table (``_write`` hashes its values)."""
    dims, frames = [], []
    for i, name in enumerate(categorical):
        if name in processing.hash_buckets:
            dims.append(processing.hash_buckets[name] + 1)
            continue
        con.execute(f"CREATE TABLE vocab_{i} AS {_vocabulary_query(name, processing)}")
        vocab = con.execute(
            f"SELECT ? AS field, CAST(value AS VARCHAR) AS value, id, train_count "
            f"FROM vocab_{i} ORDER BY rank",
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


def _truth_join(con, path: Path | None, tasks: tuple[str, ...]) -> tuple[str, str]:
    """The join and columns of the synthetic twin's true probabilities
    (``kuairand._attach_truth``), or two empty strings."""
    if path is None:
        return "", ""
    import pyarrow.csv as pacsv

    header = pacsv.open_csv(str(path)).schema.names
    if not all(f"p_{t}" in header for t in tasks):
        return "", ""
    con.execute(
        "CREATE TABLE truth AS SELECT * FROM read_csv(?, header = true) QUALIFY row_number() "
        "OVER (PARTITION BY user_id, video_id, time_ms) = 1",
        [str(path)],
    )
    join = (
        "LEFT JOIN truth t ON t.user_id = l.user_id AND t.video_id = l.video_id "
        "AND t.time_ms = l.time_ms"
    )
    cols = "".join(f", t.{_quote('p_' + t)} AS {_quote(true_prob_column(t))}" for t in tasks)
    return join, cols


def _check_truth(con, path: Path | None, tasks: tuple[str, ...]) -> None:
    """Every impression must have its true probabilities."""
    missing = con.execute(
        f"SELECT count(*) FROM imp WHERE {_quote(true_prob_column(tasks[0]))} IS NULL"
    ).fetchone()[0]
    if missing:
        raise DataFormatError(f"synthetic truth file {path} lacks rows for {missing} impressions")


def prepare_kuairand(
    files: KuaiRandFiles,
    config: KuaiRandConfig,
    processing: ProcessingConfig,
    out: Path,
    name: str = "kuairand-1k",
    memory_limit: str = "4GB",
    threads: int = 2,
    progress: bool = True,
) -> dict:
    """Write the processed dataset of ``files`` into the (new, empty) folder ``out`` with DuckDB
    and return its ``meta``. ``memory_limit`` is DuckDB's (``"4GB"``, ``"500MB"``)."""
    return run_preparation(
        name, processing, memory_limit, threads,
        lambda: _prepare(files, config, processing, out, name, memory_limit, threads, progress),
    )  # fmt: skip


def run_preparation(name: str, processing: ProcessingConfig, memory_limit: str, threads: int,
                    prepare: Callable[[], dict]) -> dict:  # fmt: skip
    """``prepare()``, with DuckDB running out of memory reported as a ``MemoryError`` that names
    the limit and what to change."""
    import duckdb

    try:
        return prepare()
    except duckdb.OutOfMemoryException as exc:
        raise MemoryError(
            f"preparing {name} with DuckDB ran out of memory under memory_limit={memory_limit!r} "
            f"with {threads} thread(s); raise --memory-limit or lower --threads ({exc})"
        ) from None


def save_meta(
    out: Path,
    written: dict,
    vocabulary: pd.DataFrame,
    counts: dict,
    params: dict,
    run: dict,
    **description: object,
) -> dict:
    """Write ``vocabulary.parquet`` and ``meta.json`` (``processing.processed_meta``) beside
    ``_write``'s ``impressions.parquet`` and return the meta; ``run``: the engine's record,
    ``params["outofcore"]``."""
    vocabulary.to_parquet(out / VOCABULARY_FILE, index=False)
    meta = processed_meta(
        numerical_stats=written["numerical_stats"], params={**params, "outofcore": run},
        row_counts={**counts, "impressions": written["splits_total"]}, **description,
    )  # fmt: skip
    meta["splits"] = written["splits"]
    (out / META_FILE).write_text(json.dumps(meta, indent=2))
    return meta


def map_and_write(con, out: Path, steps, processing: ProcessingConfig, categorical: list[str],
                  numerical: list[str], tasks, has_truth: bool, log1p: set[str]) -> tuple:  # fmt: skip
    """The steps after a source's ``imp`` table, written in session order (session, time, file
    order): train-only vocabularies and standardisation, then ``impressions.parquet``
    (``_write``); advances the ``steps`` bar twice. Later scans of ``imp`` keep its order
    (``preserve_insertion_order``): NumPy sees the training values in the order the in-memory
    path gave them, and the writer streams without a second sort. ``log1p``: the numerical fields whose column holds ``log1p``'s argument. Returns
    ``(written, vocabulary, field_dims, hashed_fields)``."""
    steps.set_postfix_str("vocabularies, standardisation")
    dims, vocabulary = _vocabularies(con, categorical, processing)
    stats = _standardisation(con, numerical, log1p)
    steps.update()
    steps.set_postfix_str("write impressions.parquet")
    hashed = {f: b for f, b in processing.hash_buckets.items() if f in categorical}
    written = _write(
        con, out, categorical, (numerical, log1p), stats, tuple(tasks), has_truth, hashed
    )
    steps.update()
    return written, vocabulary, dims, hashed


def engine_record(memory_limit: str, threads: int, started: float) -> dict:
    return {"engine": "duckdb", "memory_limit": memory_limit, "threads": int(threads),
            "seconds": time.perf_counter() - started}  # fmt: skip


def _prepare(files, config, processing, out, name, memory_limit, threads, progress) -> dict:
    start = time.perf_counter()
    steps = tqdm(total=5, desc=f"{name}: duckdb", unit="step", disable=not progress)
    with work_folder(out.parent) as work:
        con = _connect(work, memory_limit, threads)
        steps.set_postfix_str("read, deduplicate, sessionise")
        counts = _impressions(con, files, config)
        steps.update()
        steps.set_postfix_str("join features, split")
        categorical, numerical, has_truth = _features(con, files, config, processing.split_ratios)
        counts["rows_without_user_features"], counts["rows_without_video_features"] = con.execute(
            "SELECT count(*) FILTER (WHERE no_user), count(*) FILTER (WHERE no_video) FROM imp"
        ).fetchone()
        if has_truth:
            _check_truth(con, files.truth, config.tasks)
        steps.update()
        written, vocabulary, dims, hashed = map_and_write(
            con,
            out,
            steps,
            processing,
            categorical,
            numerical,
            config.tasks,
            has_truth,
            set(numerical),
        )
        con.close()
    steps.set_postfix_str("checksums")
    raw = [file_digest(p) for p in (*files.logs, files.user_features, files.video_features)]
    if has_truth:
        raw.append(file_digest(files.truth))
    steps.update()
    steps.close()
    return save_meta(
        out, written, vocabulary, counts,
        {"kuairand": loader_params(config), "processing": asdict(processing)},
        engine_record(memory_limit, threads, start), name=name,
        source=f"kuairand-{files.version}", tasks=list(config.tasks), categorical=categorical,
        field_dims=dims, numerical=numerical, has_true_probs=has_truth, hashed_fields=hashed,
        raw_files=raw,
    )  # fmt: skip


def _write(con, out: Path, categorical, numerical, stats, tasks, has_truth, hashed) -> dict:
    """``impressions.parquet``, streamed from ``imp`` in its (session) order: each batch's raw
    values become ids through the vocabularies (pyarrow ``index_in``), its numerical fields are
    standardised by NumPy (``processing.standardise``), and the batch is appended to the
    Parquet file. ``numerical``: the fields and those of them that take ``log1p``. Also returns
    the numerical and per-split statistics."""
    numerical, log1p = numerical
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    lookups = []
    for i, name in enumerate(categorical):
        if name in hashed:
            lookups.append(None)
            continue
        vocab = con.sql(f"SELECT value, id FROM vocab_{i} ORDER BY id").to_arrow_table()
        lookups.append(
            (vocab.column("value").combine_chunks(), vocab.column("id").combine_chunks())
        )
    scaled = [f"{_quote(n)}::DOUBLE AS {_quote(n)}" for n in numerical]
    per_task = []
    for t in tasks:
        per_task.append(f"{_quote(label_column(t))}::TINYINT AS {_quote(label_column(t))}")
        if has_truth:
            per_task.append(
                f"{_quote(true_prob_column(t))}::FLOAT AS {_quote(true_prob_column(t))}"
            )
    # Hashed fields as DuckDB's text of the value, which is Python's (the in-memory path hashes
    # str(value)); the others as they are, looked up in their vocabulary.
    raw = [
        f"CAST({_quote(name)} AS VARCHAR) AS {_quote(name)}"
        if name in hashed
        else f"{_quote(name)} AS {_quote(name)}"
        for name in categorical
    ]
    # con.sql streams the sorted result (con.execute would materialise all of it in memory).
    reader = con.sql(f"""
        SELECT {
        ", ".join(
            ["session_id, timestamp, raw_user_id, raw_item_id", *raw, *scaled, *per_task, "split"]
        )
    }
        FROM imp
    """).to_arrow_reader(ROW_GROUP_SIZE)
    splits = pa.array(SPLITS)
    summary = {"rows": 0, **{n: [np.inf, -np.inf] for n in numerical}}
    writer = None
    for batch in reader:
        columns = {name: batch.column(name) for name in batch.schema.names}
        for name, lookup in zip(categorical, lookups, strict=True):
            if lookup is None:
                text = columns[name].to_pandas()
                columns[name] = pa.array(hash_category_ids(text, hashed[name]), pa.int64())
                continue
            index = pc.index_in(columns[name], value_set=lookup[0])
            columns[name] = pc.fill_null(pc.take(lookup[1], index), 0).cast(pa.int64())
        columns["split"] = pa.DictionaryArray.from_arrays(columns["split"].cast(pa.int8()), splits)
        for n in numerical:
            values = _feature_values(columns[n].to_numpy(zero_copy_only=False), n, log1p)
            columns[n] = pa.array(
                standardise(values, stats[n]["train_mean"], stats[n]["train_std"])
            )
            low, high = pc.min_max(columns[n]).values()
            summary[n] = [min(summary[n][0], low.as_py()), max(summary[n][1], high.as_py())]
        table = pa.table(columns)
        if writer is None:
            writer = pq.ParquetWriter(out / IMPRESSIONS_FILE, table.schema)
        writer.write_table(table, row_group_size=ROW_GROUP_SIZE)
        summary["rows"] += table.num_rows
    writer.close()
    for n in numerical:
        stats[n].update({"min": float(summary[n][0]), "max": float(summary[n][1])})
    return {"numerical_stats": stats, "splits": _split_statistics(con, tasks, has_truth),
            "splits_total": summary["rows"]}  # fmt: skip


def _split_statistics(con, tasks, has_truth: bool) -> dict:
    """``stats.split_statistics`` in SQL: one grouped scan for the counts and label rates, one
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
    auc, loss = con.execute(f"""
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
    """).fetchone()
    return {"auc": float(auc) if auc is not None else float("nan"), "logloss": float(loss)}
