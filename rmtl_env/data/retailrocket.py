"""RetailRocket (Kaggle ``retailrocket/ecommerce-dataset``) raw files to an impression table.

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

Bad input: exact duplicate event or property rows are removed and counted in ``meta.json``; rows
are sorted by (visitor, time), keeping the file order of ties; a missing column, an unparsable
value, an unknown event type or an empty file raises :class:`DataFormatError`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from rmtl_env.data.dataset import label_column, true_prob_column
from rmtl_env.data.errors import DataFormatError, MissingRawFilesError
from rmtl_env.data.io import (
    FLOAT,
    INTEGER,
    STRING,
    check_epoch_unit,
    file_digest,
    find_raw_file,
    plain,
    read_csv_checked,
)
from rmtl_env.data.processing import ImpressionTable, sessionize_by_gap

URL = "https://www.kaggle.com/datasets/retailrocket/ecommerce-dataset"
EVENTS_FILE = "events.csv"
PROPERTY_FILES = ("item_properties_part1.csv", "item_properties_part2.csv")
CATEGORY_TREE_FILE = "category_tree.csv"
TRUTH_FILE = "synthetic_truth.csv"  # written only by the synthetic twin, never by Kaggle

OFFICIAL_PROPERTIES = ("785", "591", "814", "available", "categoryid", "364", "776")
EVENT_TYPES = ("view", "addtocart", "transaction")
TASKS = ["ctr", "ctcvr"]
EVENTS_SCHEMA = {
    "timestamp": INTEGER,
    "visitorid": INTEGER,
    "event": STRING,
    "itemid": INTEGER,
    "transactionid": FLOAT,
}
PROPERTIES_SCHEMA = {"timestamp": INTEGER, "itemid": INTEGER, "property": STRING, "value": STRING}
CATEGORY_TREE_SCHEMA = {"categoryid": INTEGER, "parentid": FLOAT}


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


def read_events(path: Path) -> tuple[pd.DataFrame, dict]:
    """Read, check, deduplicate and sort ``events.csv``. Returns the frame and row counts."""
    events = read_csv_checked(path, EVENTS_SCHEMA, nullable=["transactionid"], what="events")
    unknown = ~events["event"].isin(EVENT_TYPES)
    if unknown.any():
        row = int(np.flatnonzero(unknown.to_numpy())[0])
        raise DataFormatError(
            f"events file {path}: column 'event' has value {plain(events['event'].iloc[row])!r} at data "
            f"row {row + 1}; expected one of {list(EVENT_TYPES)}"
        )
    check_epoch_unit(events["timestamp"].to_numpy(), "ms", f"events file {path}", "timestamp")
    counts = {"events_read": len(events)}
    duplicated = events.duplicated()
    counts["duplicate_events_removed"] = int(duplicated.sum())
    events = events[~duplicated.to_numpy()]
    order = np.lexsort((events["timestamp"].to_numpy(), events["visitorid"].to_numpy()))
    counts["events_were_sorted"] = bool((order == np.arange(len(order))).all())
    return events.iloc[order].reset_index(drop=True), counts


@dataclass
class PropertyLog:
    """The wanted rows of the property logs as arrays: ``property`` indexes the wanted names and
    ``value`` indexes ``values`` (each distinct value text once, so 20M rows stay small)."""

    timestamp: np.ndarray
    itemid: np.ndarray
    property: np.ndarray
    value: np.ndarray
    names: tuple[str, ...]
    values: np.ndarray

    def rows_of(self, name: str) -> np.ndarray:
        return np.flatnonzero(self.property == self.names.index(name))


def read_item_properties(
    paths: tuple[Path, ...], wanted: tuple[str, ...], block_size: int = 1 << 25
) -> tuple[PropertyLog, dict]:
    """Rows of the property logs whose ``property`` is in ``wanted``, streamed block by block so
    the 20M-row files never sit whole in memory. Exact duplicates (across parts too) are removed."""
    wanted_array = pa.array(list(wanted), type=pa.string())
    types = {
        "timestamp": pa.int64(),
        "itemid": pa.int64(),
        "property": pa.string(),
        "value": pa.string(),
    }
    times, items, props, values = [], [], [], []
    rows_read = 0
    for path in paths:
        if path.stat().st_size == 0:
            raise DataFormatError(f"item properties file {path} is empty")
        try:
            reader = pacsv.open_csv(
                str(path),
                read_options=pacsv.ReadOptions(block_size=block_size),
                convert_options=pacsv.ConvertOptions(
                    include_columns=list(PROPERTIES_SCHEMA), column_types=types
                ),
            )
            for batch in reader:
                rows_read += batch.num_rows
                batch = batch.filter(pc.is_in(batch.column("property"), value_set=wanted_array))
                for column in ("timestamp", "itemid"):
                    if batch.column(column).null_count:
                        raise DataFormatError(
                            f"item properties file {path}: column '{column}' has empty values; "
                            f"expected an integer in every row"
                        )
                times.append(batch.column("timestamp").to_numpy())
                items.append(batch.column("itemid").to_numpy())
                props.append(
                    pc.index_in(batch.column("property"), value_set=wanted_array).to_numpy()
                )
                values.append(batch.column("value"))
        except (pa.ArrowInvalid, KeyError):
            # The typed streaming read failed: re-read with checks to name the column and row.
            read_csv_checked(path, PROPERTIES_SCHEMA, what="item properties")
            raise
    if rows_read == 0:
        raise DataFormatError(f"item properties files {[str(p) for p in paths]} have no data rows")
    encoded = pc.dictionary_encode(pa.chunked_array(values, type=pa.string()).combine_chunks())
    log = PropertyLog(
        timestamp=np.concatenate(times) if times else np.zeros(0, np.int64),
        itemid=np.concatenate(items) if items else np.zeros(0, np.int64),
        property=np.concatenate(props).astype(np.int8) if props else np.zeros(0, np.int8),
        value=pc.fill_null(encoded.indices, -1).to_numpy(zero_copy_only=False).astype(np.int64),
        names=tuple(wanted),
        values=encoded.dictionary.to_numpy(zero_copy_only=False),
    )
    order = np.lexsort((log.value, log.property, log.itemid, log.timestamp))
    keys = (log.timestamp, log.itemid, log.property, log.value)
    same = np.ones(max(len(order) - 1, 0), dtype=bool)
    for key in keys:
        same &= key[order[1:]] == key[order[:-1]]
    keep = np.sort(np.concatenate([order[:1], order[1:][~same]]))
    for name in ("timestamp", "itemid", "property", "value"):
        setattr(log, name, getattr(log, name)[keep])
    counts = {
        "property_rows_read": rows_read,
        "property_rows_used": len(keep),
        "duplicate_property_rows_removed": int(same.sum()),
    }
    return log, counts


def value_in_force(
    item: np.ndarray, time: np.ndarray, log_item: np.ndarray, log_time: np.ndarray
) -> np.ndarray:
    """Index into the log of the latest row with the same item and ``log_time <= time``; -1 where
    none exists. A vectorised as-of join on a packed (item, time) key."""
    if len(log_item) == 0:
        return np.full(len(item), -1, dtype=np.int64)
    items, codes = np.unique(np.concatenate([item, log_item]), return_inverse=True)
    item_code, log_code = codes[: len(item)], codes[len(item) :]
    t0 = min(time.min(initial=0), log_time.min())
    span = int(max(time.max(initial=0), log_time.max()) - t0) + 1
    time_bits = max(span.bit_length(), 1)
    if time_bits + max(len(items).bit_length(), 1) > 62:
        raise DataFormatError("timestamps span too wide to join item properties")
    log_key = (log_code.astype(np.int64) << time_bits) | (log_time - t0)
    order = np.argsort(log_key, kind="stable")
    sorted_key = log_key[order]
    query = (item_code.astype(np.int64) << time_bits) | (time - t0)
    pos = np.searchsorted(sorted_key, query, side="right") - 1
    hit = pos >= 0
    found = np.full(len(item), -1, dtype=np.int64)
    found[hit] = order[pos[hit]]
    same_item = np.zeros(len(item), dtype=bool)
    same_item[hit] = log_code[found[hit]] == item_code[hit]
    return np.where(same_item, found, -1)


def build_impressions(
    files: RetailRocketFiles, config: RetailRocketConfig, name: str = "retailrocket"
) -> ImpressionTable:
    """Sessions, labels and as-of item features of every view impression."""
    events, counts = read_events(files.events)
    visitor = events["visitorid"].to_numpy()
    time = events["timestamp"].to_numpy()
    if config.session_key == "gap":
        session = sessionize_by_gap(visitor, time, int(config.session_gap_minutes * 60_000))
    else:
        session = visitor.astype(np.int64)
    kind = events["event"].to_numpy()
    item = events["itemid"].to_numpy()

    item_key = item.max() + 1
    pair = session.astype(np.int64) * item_key + item
    is_view = kind == "view"
    view_pair, view_time = pair[is_view], time[is_view]
    labels = {}
    for task, positive in (("ctr", ("addtocart", "transaction")), ("ctcvr", ("transaction",))):
        mask = np.isin(kind, positive)
        last = pd.Series(time[mask]).groupby(pair[mask]).max()
        latest = last.reindex(view_pair).to_numpy()
        labels[task] = (view_time <= np.nan_to_num(latest, nan=-np.inf)).astype(np.int8)
    counts["sessions_without_views_dropped"] = int(
        len(np.unique(session)) - len(np.unique(session[is_view]))
    )
    counts["non_view_events"] = int((~is_view).sum())

    views = pd.DataFrame(
        {
            "session": session[is_view],
            "timestamp": view_time,
            "raw_user_id": visitor[is_view],
            "raw_item_id": item[is_view],
        }
    )
    categorical = list(config.properties)
    view_item = views["raw_item_id"].to_numpy()
    if files.properties:
        log, prop_counts = read_item_properties(files.properties, config.properties)
        counts.update(prop_counts)
    for prop in config.properties:
        if files.properties:
            rows = log.rows_of(prop)
            where = value_in_force(view_item, view_time, log.itemid[rows], log.timestamp[rows])
            # A property absent from the files leaves every view without it (code -1, counted
            # in ``views_without_<prop>``); index only the rows that found a value.
            value_code = np.full(len(view_item), -1, dtype=np.int64)
            value_code[where >= 0] = log.value[rows][where[where >= 0]]
            categories = pd.Index(log.values, dtype=object)
        else:
            value_code, categories = np.full(len(views), -1), pd.Index([], dtype=object)
        views[prop] = pd.Categorical.from_codes(value_code, categories=categories)
        counts[f"views_without_{prop}"] = int((value_code < 0).sum())
    if config.category_parent:
        views["category_parent"] = _category_parent(files.category_tree, views["categoryid"])
        categorical.append("category_parent")
    if config.include_itemid:
        views["itemid"] = view_item
        categorical.append("itemid")

    position = views.groupby("session", sort=False).cumcount().to_numpy()
    views["log_position"] = np.log1p(position)
    for task in TASKS:
        views[label_column(task)] = labels[task]
    raw_files = [file_digest(files.events), *(file_digest(p) for p in files.properties)]
    if files.category_tree is not None:
        raw_files.append(file_digest(files.category_tree))
    if files.truth is not None:
        _attach_truth(views, files.truth)
        raw_files.append(file_digest(files.truth))
    return ImpressionTable(
        name=name,
        source="retailrocket",
        frame=views,
        categorical=categorical,
        numerical=["log_position"],
        tasks=list(TASKS),
        params={"retailrocket": _config_dict(config)},
        raw_files=raw_files,
        row_counts=counts,
    )


def _config_dict(config: RetailRocketConfig) -> dict:
    return {
        "session_key": config.session_key,
        "session_gap_minutes": config.session_gap_minutes,
        "properties": list(config.properties),
        "include_itemid": config.include_itemid,
        "category_parent": config.category_parent,
    }


def read_category_tree(path: Path) -> pd.DataFrame:
    """``category_tree.csv``: ``categoryid`` (unique int) and ``parentid`` (NaN for roots)."""
    tree = read_csv_checked(path, CATEGORY_TREE_SCHEMA, nullable=["parentid"], what="category tree")
    if tree["categoryid"].duplicated().any():
        raise DataFormatError(f"category tree file {path}: column 'categoryid' must be unique")
    return tree


def _category_parent(path: Path | None, category: pd.Series) -> pd.Series:
    if path is None:
        raise MissingRawFilesError(
            "retailrocket", "(data folder)", [CATEGORY_TREE_FILE], URL, "retailrocket-synthetic"
        )
    tree = read_category_tree(path)
    parent = dict(zip(tree["categoryid"].astype(str), tree["parentid"], strict=True))
    return category.astype(object).map(parent)


def _attach_truth(views: pd.DataFrame, path: Path) -> None:
    """Join the synthetic twin's true probabilities on (visitor, item, timestamp)."""
    schema = {
        "visitorid": INTEGER,
        "itemid": INTEGER,
        "timestamp": INTEGER,
        "p_ctr": FLOAT,
        "p_ctcvr": FLOAT,
    }
    truth = read_csv_checked(path, schema, what="synthetic truth")
    keys = ["raw_user_id", "raw_item_id", "timestamp"]
    truth = truth.rename(columns={"visitorid": "raw_user_id", "itemid": "raw_item_id"})
    truth = truth.drop_duplicates(keys)
    merged = views[keys].merge(truth, on=keys, how="left", validate="many_to_one")
    if merged["p_ctr"].isna().any():
        raise DataFormatError(f"synthetic truth file {path} lacks rows for some view impressions")
    views[true_prob_column("ctr")] = merged["p_ctr"].to_numpy(np.float32)
    views[true_prob_column("ctcvr")] = merged["p_ctcvr"].to_numpy(np.float32)
