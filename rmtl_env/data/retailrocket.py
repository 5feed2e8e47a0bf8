"""RetailRocket (Kaggle ``retailrocket/ecommerce-dataset``) raw files prepared with DuckDB.

Impressions are ``view`` events. For a view of item i by visitor v in session s:

- ``ctr`` label (click) = 1 if v has an ``addtocart`` or ``transaction`` of i in s at or after the
  view's time (same-millisecond ties count: the log order of ties is not reliable);
- ``ctcvr`` label (pay) = 1 if v has a ``transaction`` of i in s at or after the view's time.

A transaction counts as a click, so pay implies click and CTCVR nests in CTR by construction.
Sessions split a visitor's events (all event types) where the inactivity gap exceeds
``session_gap_minutes`` (default 30), or, with ``session_key="visitor"``, one session per visitor
as the official RMTL code does. Sessions without views are dropped and counted.

Item features are the official RMTL properties ``785, 591, 814, available, categoryid, 364, 776``.
``item_properties`` is a log of weekly snapshots, so each impression takes the value in force at
its own time (the latest snapshot at or before it): no future value leaks in. An item, or an
impression before the item's first snapshot, without a value gets the unknown id 0. A property
value is one categorical value as a whole, hashed tokens included (``n552.000``, ``1116713 n277.200``).

The steps in SQL (``rmtl_env.data.engine`` runs the ones every source shares): the events scan
with its checks, removal of duplicate events, sessionising by inactivity gap over every event
type (window functions), the labels, the position of each view in its session, and one as-of
join of the items' property states (``ASOF LEFT JOIN``: the latest snapshot at or before the view).

Bad input: exact duplicate event or property rows are removed and counted in ``meta.json``
(a duplicate counts once, at its first occurrence); events with equal (visitor, time) keep their
file order; of property rows with equal (item, property, time) the last in file order is in
force; a missing column, an unparsable value, an unknown event type or an empty file raises
:class:`DataFormatError`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from rmtl_env.data.dataset import label_column
from rmtl_env.data.engine import (
    Fields,
    _check_truth,
    _quote,
    fetch_one,
    preparation,
    read_checked,
    read_table,
    require_rows,
    session_impressions,
    sessionised,
    sorted_in_file_order,
)
from rmtl_env.data.errors import DataFormatError, MissingRawFilesError
from rmtl_env.data.io import (
    check_epoch_unit,
    find_raw_file,
    require_header,
)
from rmtl_env.data.processing import ProcessingConfig

URL = "https://www.kaggle.com/datasets/retailrocket/ecommerce-dataset"
EVENTS_FILE = "events.csv"
PROPERTY_FILES = ("item_properties_part1.csv", "item_properties_part2.csv")
CATEGORY_TREE_FILE = "category_tree.csv"
TRUTH_FILE = "synthetic_truth.csv"  # written only by the synthetic twin, never by Kaggle

OFFICIAL_PROPERTIES = ("785", "591", "814", "available", "categoryid", "364", "776")
EVENT_TYPES = ("view", "addtocart", "transaction")
TASKS = ["ctr", "ctcvr"]
NUMERICAL = ["log_position"]
EVENT_COLUMNS = ("timestamp", "visitorid", "event", "itemid", "transactionid")


@dataclass
class RetailRocketConfig:
    """How RetailRocket events become sessions, labels and features.

    Attributes:
        session_key: ``"gap"`` (split at inactivity gaps) or ``"visitor"`` (one session per
            visitor, as the official RMTL code).
        session_gap_minutes: the inactivity gap for ``session_key="gap"``.
        properties: item properties used as categorical fields.
        include_itemid: add the item id itself as a categorical field.
        category_parent: add the parent of ``categoryid`` from ``category_tree.csv`` as a field.
    """

    session_key: str = "gap"
    session_gap_minutes: float = 30.0
    properties: tuple[str, ...] = OFFICIAL_PROPERTIES
    include_itemid: bool = False
    category_parent: bool = False

    def __post_init__(self) -> None:
        if self.session_key not in ("gap", "visitor"):
            raise ValueError(f"session_key must be 'gap' or 'visitor', got {self.session_key!r}")
        if not self.session_gap_minutes > 0:
            raise ValueError(f"session_gap_minutes must be > 0, got {self.session_gap_minutes}")
        self.properties = tuple(str(p) for p in self.properties)
        if self.category_parent and "categoryid" not in self.properties:
            raise ValueError("category_parent=True needs 'categoryid' among the properties")


@dataclass
class RetailRocketFiles:
    """Paths of the raw files; ``properties`` may be empty (every item then has unknown features)."""

    events: Path
    properties: tuple[Path, ...] = ()
    category_tree: Path | None = None
    truth: Path | None = None

    @classmethod
    def in_folder(cls, folder: str | Path, synthetic_name: str = "retailrocket-synthetic"):
        """The Kaggle file names in ``folder`` (plain or ``.gz``); lists what is missing."""
        folder = Path(folder).expanduser()
        found = {name: find_raw_file(folder, name) for name in (EVENTS_FILE, *PROPERTY_FILES)}
        missing = [name for name, path in found.items() if path is None]
        if missing:
            raise MissingRawFilesError("retailrocket", str(folder), missing, URL, synthetic_name)
        return cls(
            events=found[EVENTS_FILE],
            properties=tuple(found[name] for name in PROPERTY_FILES),
            category_tree=find_raw_file(folder, CATEGORY_TREE_FILE),
            truth=find_raw_file(folder, TRUTH_FILE),
        )


def _read_events(con, path: Path) -> dict:
    """``events`` (checked, one row per distinct event at its first line ``ord``) and counts."""
    types = "{'timestamp': 'BIGINT', 'visitorid': 'BIGINT', 'event': 'VARCHAR', " \
            "'itemid': 'BIGINT', 'transactionid': 'DOUBLE'}"  # fmt: skip
    require_header(path, list(EVENT_COLUMNS), f"events file {path}")
    read_checked(
        con,
        "CREATE TABLE raw_events AS SELECT timestamp, visitorid, event, itemid, transactionid "
        f"FROM read_csv(?, header = true, types = {types})",
        path,
        "events file",
    )
    columns = ["timestamp", "visitorid", "event", "itemid"]  # transactionid: transactions only
    read = require_rows(con, "raw_events", columns, f"events file {path}")
    kinds = ", ".join(f"'{k}'" for k in EVENT_TYPES)
    unknown = fetch_one(
        con,
        f"SELECT rowid + 1, event FROM raw_events WHERE event NOT IN ({kinds}) ORDER BY rowid "
        "LIMIT 1",
    )
    if unknown:
        raise DataFormatError(
            f"events file {path}: column 'event' has value {unknown[1]!r} at data row "
            f"{unknown[0]}; expected one of {list(EVENT_TYPES)}"
        )
    low, high = fetch_one(con, "SELECT min(timestamp), max(timestamp) FROM raw_events")
    check_epoch_unit(np.array([low, high]), "ms", f"events file {path}", "timestamp")
    con.execute(
        "CREATE TABLE events AS SELECT timestamp AS time_ms, visitorid AS user_id, event, itemid, "
        "min(rowid) AS ord FROM raw_events GROUP BY ALL"  # rowid: the file order
    )
    con.execute("DROP TABLE raw_events")
    kept = fetch_one(con, "SELECT count(*) FROM events")[0]
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
    sessions, with_views, non_views = fetch_one(
        con,
        "SELECT count(DISTINCT (user_id, user_session)), "
        "(SELECT count(DISTINCT (user_id, user_session)) FROM log), "
        "count(*) FILTER (WHERE event <> 'view') FROM sessioned",
    )
    con.execute("DROP TABLE sessioned")
    con.execute("DROP TABLE positives")
    return {"sessions_without_views_dropped": sessions - with_views, "non_view_events": non_views}


def _properties(con, files: RetailRocketFiles, wanted: tuple[str, ...]) -> dict:
    """``props``: the wanted property rows of the viewed items, duplicates removed (first
    occurrence), one row per (item, property, time): the last in file order. Counts: every
    property row read, and the wanted rows of viewed items used and removed as duplicates."""
    con.execute(
        "CREATE TABLE raw_props (timestamp BIGINT, itemid BIGINT, property VARCHAR, value VARCHAR)"
    )
    names = ", ".join(f"'{p}'" for p in wanted)
    types = "{'timestamp': 'BIGINT', 'itemid': 'BIGINT', 'property': 'VARCHAR', 'value': 'VARCHAR'}"
    scan = f"read_csv(?, header = true, types = {types})"
    # Only the items that are viewed need their properties (about half the rows on the twin).
    con.execute("CREATE TEMP TABLE viewed AS SELECT DISTINCT itemid FROM log")
    read = 0
    for path in files.properties:
        require_header(path, ["timestamp", "itemid", "property", "value"],
                       f"item properties file {path}")  # fmt: skip
        # A count of every row (no column converted: the cheapest scan), then one scan that
        # keeps, in file order, the wanted rows and any row without a timestamp or itemid (the
        # table's rowid is then the (file, line) order: no window over the scan).
        read_checked(con, "CREATE TEMP TABLE file_counts AS SELECT count(*) AS n FROM "
                     f"{scan}", path, "item properties file")  # fmt: skip
        rows = fetch_one(con, "SELECT n FROM file_counts")[0]
        con.execute("DROP TABLE file_counts")
        start = fetch_one(con, "SELECT count(*) FROM raw_props")[0]
        read_checked(con, "INSERT INTO raw_props SELECT timestamp, itemid, property, "
                     f"coalesce(value, '') FROM {scan} WHERE (property IN ({names}) "
                     "AND itemid IN (SELECT itemid FROM viewed)) OR timestamp IS NULL "
                     "OR itemid IS NULL", path, "item properties file")  # fmt: skip
        bad = fetch_one(con, f"SELECT count(*) FROM raw_props WHERE rowid >= {start} AND "
                        "(timestamp IS NULL OR itemid IS NULL)")[0]  # fmt: skip
        if bad:
            raise DataFormatError(
                f"item properties file {path}: {bad} row(s) have an empty timestamp or itemid; "
                "expected an integer in every row"
            )
        read += rows
    if read == 0:
        raise DataFormatError(
            f"item properties files {[str(p) for p in files.properties]} have no data rows"
        )
    wanted_rows = fetch_one(con, "SELECT count(*) FROM raw_props")[0]
    # Duplicates count once, at their first row (``ord``); of the rows with equal (item,
    # property, time) the last in file order is in force. ``values``: the distinct rows.
    con.execute(
        "CREATE TABLE props AS SELECT itemid, property, timestamp, arg_max(value, ord) AS value, "
        "count(*) AS values FROM (SELECT timestamp, itemid, property, value, min(rowid) AS ord "
        "FROM raw_props GROUP BY ALL) GROUP BY itemid, property, timestamp"
    )
    con.execute("DROP TABLE raw_props")
    con.execute("DROP TABLE viewed")
    used = fetch_one(con, "SELECT sum(values) FROM props")[0] or 0
    return {"property_rows_read": read, "property_rows_used": used,
            "duplicate_property_rows_removed": wanted_rows - used}  # fmt: skip


def _values_in_force(con, properties: tuple[str, ...]) -> tuple[list[str], list[str]]:
    """``in_force``: per view (``ord``), the code of each property's value in force at its time
    (the latest snapshot at or before it), the values' text in ``value_text`` (code -> value).
    The joins and the processed columns carry integer codes (``map_and_write``'s ``coded``
    fields); returns the columns and joins of the main query."""
    con.execute(
        "CREATE TABLE value_text AS SELECT property, value, row_number() OVER "
        "(ORDER BY property, value) AS code FROM (SELECT DISTINCT property, value FROM props)"
    )
    # One row per item and snapshot time holding every property's value in force then (a
    # property without a snapshot at that time keeps its last one), so that one as-of join finds
    # all of a view's values: one sort of the views instead of one per property.
    changed = ", ".join(f"max(c.code) FILTER (WHERE p.property = ?) AS c{i}"
                        for i in range(len(properties)))  # fmt: skip
    kept = ", ".join(f"last_value(c{i} IGNORE NULLS) OVER w AS c{i}"
                     for i in range(len(properties)))  # fmt: skip
    con.execute(
        f"CREATE TABLE item_states AS SELECT itemid, timestamp, {kept} FROM (SELECT p.itemid, "
        f"p.timestamp, {changed} FROM props p JOIN value_text c USING (property, value) "
        "GROUP BY p.itemid, p.timestamp) WINDOW w AS (PARTITION BY itemid ORDER BY timestamp "
        "ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)",
        list(properties),
    )
    codes = ", ".join(f"s.c{i}" for i in range(len(properties)))
    con.execute(
        f"CREATE TABLE in_force AS SELECT l.ord, {codes} FROM (SELECT ord, itemid, time_ms "
        "FROM log) l ASOF LEFT JOIN item_states s ON s.itemid = l.itemid "
        "AND s.timestamp <= l.time_ms"
    )
    con.execute("DROP TABLE item_states")
    columns = [f"f.c{i} AS {_quote(prop)}" for i, prop in enumerate(properties)]
    return columns, ["JOIN in_force f ON f.ord = l.ord"]


def _truth(con, files: RetailRocketFiles) -> tuple[list[str], list[str]]:
    """The join and columns of the synthetic twin's true probabilities, or nothing."""
    if files.truth is None:
        return [], []
    # Views are unique per (visitor, item, time) (duplicate events are removed), so the file
    # has one row per view; ``_impressions`` refuses a file with more.
    con.execute(
        "CREATE TABLE truth AS SELECT * FROM read_csv(?, header = true)", [str(files.truth)]
    )
    join = ("LEFT JOIN truth t ON t.visitorid = l.user_id AND t.itemid = l.itemid "
            "AND t.timestamp = l.time_ms")  # fmt: skip
    return [join], ['t.p_ctr::FLOAT AS "p_true:ctr"', 't.p_ctcvr::FLOAT AS "p_true:ctcvr"']


def _category_parent(con, files: RetailRocketFiles, categoryid: str) -> tuple[str, str]:
    """The column and join of ``categoryid``'s parent in ``category_tree.csv``."""
    if files.category_tree is None:
        raise MissingRawFilesError(
            "retailrocket", "(data folder)", [CATEGORY_TREE_FILE], URL, "retailrocket-synthetic"
        )
    types = {"categoryid": "BIGINT", "parentid": "DOUBLE"}  # a root has no parent
    read_table(con, "tree", files.category_tree, types, "category tree", nullable=("parentid",))
    return (
        "tr.parentid AS category_parent",
        f"LEFT JOIN tree tr ON CAST(tr.categoryid AS VARCHAR) = {categoryid}",
    )


def _impressions(con, files: RetailRocketFiles, config: RetailRocketConfig, ratios) -> tuple:
    """``imp``: every view with its session id, split, features and labels."""
    categorical = list(config.properties)
    if files.properties:
        columns, joins = _values_in_force(con, config.properties)
    else:
        columns, joins = [f"NULL::VARCHAR AS {_quote(p)}" for p in config.properties], []
    columns += ["l.log_position", *(_quote(label_column(t)) for t in TASKS)]
    if config.category_parent:
        categoryid = columns[config.properties.index("categoryid")].split(" AS ")[0]
        if files.properties:  # the code's text
            joins.append(f"LEFT JOIN value_text ct ON ct.code = {categoryid}")
            categoryid = "ct.value"
        column, join = _category_parent(con, files, categoryid)
        columns.append(column)
        joins.append(join)
        categorical.append("category_parent")
    if config.include_itemid:
        columns.append("l.itemid AS itemid")
        categorical.append("itemid")
    truth_joins, truth_columns = _truth(con, files)
    session_impressions(con, ratios, "l.itemid", columns + truth_columns, joins + truth_joins)
    if truth_joins:
        views, rows = fetch_one(con, "SELECT (SELECT count(*) FROM log), count(*) FROM imp")
        if rows != views:
            raise DataFormatError(
                f"synthetic truth file {files.truth}: {rows - views} extra row(s) for views "
                "already listed; expected one row per (visitorid, itemid, timestamp)"
            )
    counts = {}
    for prop in config.properties:
        counts[f"views_without_{prop}"] = fetch_one(
            con, f"SELECT count(*) FROM imp WHERE {_quote(prop)} IS NULL"
        )[0]
    con.execute("DROP TABLE log")
    return categorical, counts, bool(truth_joins)


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
    paths = [p for p in (files.events, *files.properties, files.category_tree, files.truth) if p]
    with preparation(name, out, paths, memory_limit, threads, progress, steps=2) as prep:
        prep.step("events, sessions, labels")
        counts = _read_events(prep.con, files.events)
        counts.update(_views(prep.con, config))
        prep.step("properties, split")
        if files.properties:
            counts.update(_properties(prep.con, files, config.properties))
        categorical, prop_counts, has_truth = _impressions(
            prep.con, files, config, processing.split_ratios
        )
        counts.update(prop_counts)
        if has_truth:
            _check_truth(prep.con, files.truth, tuple(TASKS))
        coded = frozenset(config.properties) if files.properties else frozenset()
        fields = Fields(categorical, NUMERICAL, TASKS, has_truth, frozenset(NUMERICAL), coded)
        params = {"retailrocket": asdict(config), "processing": asdict(processing)}
        return prep.finish(processing, fields, counts, params, source="retailrocket")
