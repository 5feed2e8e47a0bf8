"""RetailRocket prepared out of core with DuckDB: the same processed dataset as the in-memory path
(``retailrocket.build_impressions`` + ``processing.build_processed``), through the same SQL
steps as KuaiRand's (``rmtl_env.data.outofcore``: session numbering, temporal split,
vocabularies, standardisation, the streamed Parquet writer).

The RetailRocket steps in SQL: the events scan with its checks, removal of duplicate events,
sessionising by inactivity gap over every event type (window functions), the labels (a later
add-to-cart or transaction of the same item in the same session), the position of each view in
its session, and the as-of joins of the item properties (``ASOF LEFT JOIN``: the latest snapshot
at or before the view). Tie-breaks follow the in-memory path: events with equal (visitor, time)
keep their file order; of property rows with equal (item, property, time) the last in file
order is in force; duplicate rows count once, at their first occurrence.
"""

from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from rmtl_env.data.dataset import label_column
from rmtl_env.data.errors import DataFormatError, MissingRawFilesError
from rmtl_env.data.io import check_epoch_unit, file_digest
from rmtl_env.data.outofcore import (
    _check_truth,
    _connect,
    _quote,
    _sessions,
    engine_record,
    map_and_write,
    read_checked,
    run_preparation,
    save_meta,
    sessionised,
    sorted_in_file_order,
    work_folder,
)
from rmtl_env.data.processing import ProcessingConfig
from rmtl_env.data.retailrocket import (
    CATEGORY_TREE_FILE,
    EVENT_TYPES,
    TASKS,
    URL,
    RetailRocketConfig,
    RetailRocketFiles,
    _config_dict,
)

NUMERICAL = ["log_position"]


def _read_events(con, path: Path) -> dict:
    """``events`` (checked, one row per distinct event at its first line ``ord``) and counts."""
    types = "{'timestamp': 'BIGINT', 'visitorid': 'BIGINT', 'event': 'VARCHAR', " \
            "'itemid': 'BIGINT', 'transactionid': 'DOUBLE'}"  # fmt: skip
    read_checked(
        con,
        "CREATE TABLE raw_events AS SELECT timestamp, visitorid, event, itemid, transactionid "
        f"FROM read_csv(?, header = true, types = {types})",
        path,
        "events file",
    )
    read, empty = con.execute(
        "SELECT count(*), count(*) FILTER (WHERE timestamp IS NULL OR visitorid IS NULL OR "
        "event IS NULL OR itemid IS NULL) FROM raw_events"
    ).fetchone()
    if read == 0:
        raise DataFormatError(f"events file {path} has no data rows")
    if empty:
        raise DataFormatError(f"events file {path}: {empty} row(s) have empty required values")
    kinds = ", ".join(f"'{k}'" for k in EVENT_TYPES)
    unknown = con.execute(
        f"SELECT rowid + 1, event FROM raw_events WHERE event NOT IN ({kinds}) ORDER BY rowid "
        "LIMIT 1"
    ).fetchone()
    if unknown:
        raise DataFormatError(
            f"events file {path}: column 'event' has value {unknown[1]!r} at data row "
            f"{unknown[0]}; expected one of {list(EVENT_TYPES)}"
        )
    low, high = con.execute("SELECT min(timestamp), max(timestamp) FROM raw_events").fetchone()
    check_epoch_unit(np.array([low, high]), "ms", f"events file {path}", "timestamp")
    con.execute(
        "CREATE TABLE events AS SELECT timestamp AS time_ms, visitorid AS user_id, event, itemid, "
        "min(rowid) AS ord FROM raw_events GROUP BY ALL"  # rowid: the file order
    )
    con.execute("DROP TABLE raw_events")
    kept = con.execute("SELECT count(*) FROM events").fetchone()[0]
    return {"events_read": read, "duplicate_events_removed": read - kept,
            "events_were_sorted": sorted_in_file_order(con, "events")}  # fmt: skip


def _views(con, config: RetailRocketConfig) -> dict:
    """``log``: one row per view with its visitor's session number, labels and position."""
    if config.session_key == "gap":
        gap = int(config.session_gap_minutes * 60_000)
        con.execute(f"CREATE TABLE sessioned AS {sessionised('events', gap)}")
    else:  # one session per visitor, as the official code
        con.execute("CREATE TABLE sessioned AS SELECT *, 0 AS user_session FROM events")
    con.execute("DROP TABLE events")
    con.execute("""
        CREATE TABLE positives AS
        SELECT user_id, user_session, itemid,
               max(time_ms) FILTER (WHERE event IN ('addtocart', 'transaction')) AS last_click,
               max(time_ms) FILTER (WHERE event = 'transaction') AS last_pay
        FROM sessioned WHERE event <> 'view' GROUP BY ALL
    """)
    ctr, ctcvr = (_quote(label_column(t)) for t in TASKS)
    con.execute(f"""
        CREATE TABLE log AS
        SELECT s.user_id, s.user_session, s.time_ms, s.itemid, s.ord,
               coalesce(s.time_ms <= p.last_click, false)::TINYINT AS {ctr},
               coalesce(s.time_ms <= p.last_pay, false)::TINYINT AS {ctcvr},
               (row_number() OVER (PARTITION BY s.user_id, s.user_session
                                   ORDER BY s.time_ms, s.ord) - 1)::DOUBLE AS log_position
        FROM sessioned s LEFT JOIN positives p USING (user_id, user_session, itemid)
        WHERE s.event = 'view'
    """)
    sessions, with_views, non_views = con.execute(
        "SELECT count(DISTINCT (user_id, user_session)), "
        "(SELECT count(DISTINCT (user_id, user_session)) FROM log), "
        "count(*) FILTER (WHERE event <> 'view') FROM sessioned"
    ).fetchone()
    con.execute("DROP TABLE sessioned")
    con.execute("DROP TABLE positives")
    return {"sessions_without_views_dropped": sessions - with_views, "non_view_events": non_views}


def _properties(con, files: RetailRocketFiles, wanted: tuple[str, ...]) -> dict:
    """``props``: the wanted property rows, duplicates removed (first occurrence), one row per
    (item, property, time): the last in file order."""
    con.execute(
        "CREATE TABLE raw_props (timestamp BIGINT, itemid BIGINT, property VARCHAR, value VARCHAR)"
    )
    names = ", ".join(f"'{p}'" for p in wanted)
    types = "{'timestamp': 'BIGINT', 'itemid': 'BIGINT', 'property': 'VARCHAR', 'value': 'VARCHAR'}"
    scan = f"read_csv(?, header = true, types = {types})"
    read = 0
    for path in files.properties:
        # One cheap scan checks and counts every row; only the wanted rows are kept, in file
        # order (the table's rowid is then the (file, line) order: no window over the scan).
        read_checked(con, "CREATE TEMP TABLE file_counts AS SELECT count(*) AS n, count(*) "
                     f"FILTER (WHERE timestamp IS NULL OR itemid IS NULL) AS bad FROM {scan}",
                     path, "item properties file")  # fmt: skip
        rows, bad = con.execute("SELECT n, bad FROM file_counts").fetchone()
        con.execute("DROP TABLE file_counts")
        if bad:
            raise DataFormatError(
                f"item properties file {path}: {bad} row(s) have an empty timestamp or itemid; "
                "expected an integer in every row"
            )
        read += rows
        read_checked(con, "INSERT INTO raw_props SELECT timestamp, itemid, property, "
                     f"coalesce(value, '') FROM {scan} WHERE property IN ({names})", path,
                     "item properties file")  # fmt: skip
    if read == 0:
        raise DataFormatError(
            f"item properties files {[str(p) for p in files.properties]} have no data rows"
        )
    wanted_rows = con.execute("SELECT count(*) FROM raw_props").fetchone()[0]
    con.execute(
        "CREATE TABLE kept_props AS SELECT timestamp, itemid, property, value, min(rowid) AS ord "
        "FROM raw_props GROUP BY ALL"
    )
    con.execute("DROP TABLE raw_props")
    used = con.execute("SELECT count(*) FROM kept_props").fetchone()[0]
    # Of rows with equal (item, property, time) the last in file order is in force.
    con.execute(
        "CREATE TABLE props AS SELECT itemid, property, timestamp, arg_max(value, ord) AS value "
        "FROM kept_props GROUP BY itemid, property, timestamp"
    )
    con.execute("DROP TABLE kept_props")
    return {"property_rows_read": read, "property_rows_used": used,
            "duplicate_property_rows_removed": wanted_rows - used}  # fmt: skip


def _values_in_force(con, properties: tuple[str, ...]) -> tuple[list[str], list[str]]:
    """``in_force``: per view (``ord``), the code of each property's value in force at its time
    (the latest snapshot at or before it). The as-of joins run over narrow rows of integer
    codes; returns the columns and joins that bring the values' text into the main query."""
    con.execute(
        "CREATE TABLE value_codes AS SELECT property, value, row_number() OVER "
        "(ORDER BY property, value) AS code FROM (SELECT DISTINCT property, value FROM props)"
    )
    asof, codes, columns, joins = [], [], [], ["JOIN in_force f ON f.ord = l.ord"]
    for i, prop in enumerate(properties):
        con.execute(
            f"CREATE TABLE prop_{i} AS SELECT p.itemid, p.timestamp, c.code FROM props p "
            "JOIN value_codes c USING (property, value) WHERE p.property = ?",
            [prop],
        )
        asof.append(f"ASOF LEFT JOIN prop_{i} p{i} ON p{i}.itemid = l.itemid "
                    f"AND p{i}.timestamp <= l.time_ms")  # fmt: skip
        codes.append(f"p{i}.code AS c{i}")
        columns.append(f"v{i}.value AS {_quote(prop)}")
        joins.append(f"LEFT JOIN value_codes v{i} ON v{i}.code = f.c{i}")
    con.execute(
        f"CREATE TABLE in_force AS SELECT l.ord, {', '.join(codes)} "
        f"FROM (SELECT ord, itemid, time_ms FROM log) l {' '.join(asof)}"
    )
    for i in range(len(properties)):
        con.execute(f"DROP TABLE prop_{i}")
    return columns, joins


def _truth(con, files: RetailRocketFiles) -> tuple[str, str]:
    """The join and columns of the synthetic twin's true probabilities, or two empty strings."""
    if files.truth is None:
        return "", ""
    con.execute(
        "CREATE TABLE truth AS SELECT * FROM read_csv(?, header = true) QUALIFY row_number() "
        "OVER (PARTITION BY visitorid, itemid, timestamp) = 1",
        [str(files.truth)],
    )
    join = ("LEFT JOIN truth t ON t.visitorid = l.user_id AND t.itemid = l.itemid "
            "AND t.timestamp = l.time_ms")  # fmt: skip
    return join, ', t.p_ctr::FLOAT AS "p_true:ctr", t.p_ctcvr::FLOAT AS "p_true:ctcvr"'


def _category_parent(con, files: RetailRocketFiles, categoryid: str) -> tuple[str, str]:
    """The column and join of ``categoryid``'s parent in ``category_tree.csv``."""
    if files.category_tree is None:
        raise MissingRawFilesError(
            "retailrocket", "(data folder)", [CATEGORY_TREE_FILE], URL, "retailrocket-synthetic"
        )
    from rmtl_env.data.retailrocket import read_category_tree

    tree = read_category_tree(files.category_tree)  # 1.7k rows
    tree["categoryid"] = tree["categoryid"].astype(str)
    con.register("tree_frame", tree)
    return (
        ", tr.parentid AS category_parent",
        f"LEFT JOIN tree_frame tr ON tr.categoryid = {categoryid}",
    )


def _impressions(con, files: RetailRocketFiles, config: RetailRocketConfig, ratios) -> tuple:
    """``imp``: every view with its session id, split, features and labels."""
    _sessions(con, ratios)
    categorical = list(config.properties)
    if files.properties:
        columns, joins = _values_in_force(con, config.properties)
    else:
        columns, joins = [f"NULL::VARCHAR AS {_quote(p)}" for p in config.properties], []
    extra, extra_join = "", ""
    if config.category_parent:
        categoryid = columns[config.properties.index("categoryid")].split(" AS ")[0]
        extra, extra_join = _category_parent(con, files, categoryid)
        categorical.append("category_parent")
    if config.include_itemid:
        extra += ", l.itemid AS itemid"
        categorical.append("itemid")
    truth_join, truth_cols = _truth(con, files)
    labels = ", ".join(_quote(label_column(t)) for t in TASKS)
    con.execute(f"""
        CREATE TABLE imp AS
        SELECT l.ord, s.session_id, s.split, l.time_ms AS timestamp, l.user_id AS raw_user_id,
               l.itemid AS raw_item_id, {", ".join(columns)}, l.log_position, {labels}
               {truth_cols}{extra}
        FROM log l JOIN session_ids s USING (user_id, user_session)
        {" ".join(joins)} {truth_join} {extra_join}
        ORDER BY s.session_id, l.time_ms, l.ord  -- the processed rows' order
    """)
    counts = {}
    for prop in config.properties:
        counts[f"views_without_{prop}"] = con.execute(
            f"SELECT count(*) FROM imp WHERE {_quote(prop)} IS NULL"
        ).fetchone()[0]
    con.execute("DROP TABLE log")
    return categorical, counts, bool(truth_join)


def prepare_retailrocket(
    files: RetailRocketFiles,
    config: RetailRocketConfig,
    processing: ProcessingConfig,
    out: Path,
    name: str = "retailrocket",
    memory_limit: str = "4GB",
    threads: int = 2,
    progress: bool = True,
) -> dict:
    """Write the processed dataset of ``files`` into the (new, empty) folder ``out`` with DuckDB
    and return its ``meta`` (``prepare_kuairand``'s RetailRocket twin)."""
    return run_preparation(
        name, processing, memory_limit, threads,
        lambda: _prepare(files, config, processing, out, name, memory_limit, threads, progress),
    )  # fmt: skip


def _prepare(files, config, processing, out, name, memory_limit, threads, progress) -> dict:
    start = time.perf_counter()
    steps = tqdm(total=4, desc=f"{name}: duckdb", unit="step", disable=not progress)
    with work_folder(out.parent) as work:
        con = _connect(work, memory_limit, threads)
        steps.set_postfix_str("events, sessions, labels")
        counts = _read_events(con, files.events)
        counts.update(_views(con, config))
        steps.update()
        steps.set_postfix_str("properties, split")
        if files.properties:
            counts.update(_properties(con, files, config.properties))
        categorical, prop_counts, has_truth = _impressions(
            con, files, config, processing.split_ratios
        )
        counts.update(prop_counts)
        if has_truth:
            _check_truth(con, files.truth, tuple(TASKS))
        steps.update()
        written, vocabulary, dims, hashed = map_and_write(
            con, out, steps, processing, categorical, NUMERICAL, TASKS, has_truth, set(NUMERICAL)
        )
        steps.close()
        con.close()
    raw = [file_digest(files.events), *(file_digest(p) for p in files.properties)]
    if files.category_tree is not None:
        raw.append(file_digest(files.category_tree))
    if has_truth:
        raw.append(file_digest(files.truth))
    return save_meta(
        out, written, vocabulary, counts,
        {"retailrocket": _config_dict(config), "processing": asdict(processing)},
        engine_record(memory_limit, threads, start), name=name, source="retailrocket",
        tasks=list(TASKS), categorical=categorical, field_dims=dims, numerical=NUMERICAL,
        has_true_probs=has_truth, hashed_fields=hashed, raw_files=raw,
    )  # fmt: skip
