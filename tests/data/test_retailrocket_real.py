"""The RetailRocket loader on the real 5,000-visitor sample, checked against a hand count."""

from __future__ import annotations

import csv
import gzip
from collections import defaultdict

import numpy as np
import pytest

from rmtl_env.data.dataset import label_column
from rmtl_env.data.retailrocket import RetailRocketConfig, RetailRocketFiles

SAMPLE = "retailrocket/events_sample_5000visitors.csv.gz"
GAP_MS = 30 * 60_000


def hand_count(path, session_key: str):
    """Plain-Python reference: sessions, views and labels, one event at a time."""
    with gzip.open(path, "rt", newline="") as handle:
        rows = {
            (
                int(r["timestamp"]),
                int(r["visitorid"]),
                r["event"],
                int(r["itemid"]),
                r["transactionid"],
            )
            for r in csv.DictReader(handle)
        }  # a set: exact duplicates count once
    by_visitor = defaultdict(list)
    for ts, visitor, event, item, _ in rows:
        by_visitor[visitor].append((ts, event, item))
    sessions, views, clicks, pays = 0, 0, 0, 0
    for events in by_visitor.values():
        events.sort(key=lambda e: e[0])
        groups, current, last = [], [], None
        for event in events:
            if current and (session_key == "gap" and event[0] - last > GAP_MS):
                groups.append(current)
                current = []
            current.append(event)
            last = event[0]
        groups.append(current)
        for group in groups:
            group_views = [e for e in group if e[1] == "view"]
            sessions += bool(group_views)
            for ts, _, item in group_views:
                views += 1
                after = [e for e in group if e[2] == item and e[0] >= ts]
                clicks += any(e[1] in ("addtocart", "transaction") for e in after)
                pays += any(e[1] == "transaction" for e in after)
    return {"sessions": sessions, "views": views, "clicks": clicks, "pays": pays}


@pytest.mark.parametrize("session_key", ["gap", "visitor"])
def test_sessions_and_labels_match_hand_count(shared_raw, session_key, prepare):
    path = shared_raw / SAMPLE
    dataset = prepare(RetailRocketFiles(events=path), RetailRocketConfig(session_key=session_key))
    expected = hand_count(path, session_key)
    frame = dataset.frame
    assert frame["session_id"].nunique() == expected["sessions"]
    assert len(frame) == expected["views"]
    assert int(frame[label_column("ctr")].sum()) == expected["clicks"]
    assert int(frame[label_column("ctcvr")].sum()) == expected["pays"]
    counts = dataset.meta["row_counts"]
    assert counts["events_read"] == 9385  # the sample's documented row count
    assert counts["duplicate_events_removed"] == 9385 - len(set(map(tuple, _rows(path))))


def _rows(path):
    with gzip.open(path, "rt", newline="") as handle:
        reader = csv.reader(handle)
        next(reader)
        return [row[:5] for row in reader]


def test_real_sample_has_no_properties_so_all_features_unknown(shared_raw, prepare):
    dataset = prepare(RetailRocketFiles(events=shared_raw / SAMPLE))
    train = dataset.split("train")
    assert (train.categorical == 0).all()
    assert dataset.field_dims == [1] * 7
    labels = dataset.frame[[label_column("ctr"), label_column("ctcvr")]].to_numpy()
    assert (labels[:, 1] <= labels[:, 0]).all()  # pay implies click
    # The sample spans 2015-05-03 .. 2015-09-18; the split is temporal and sessions stay whole.
    starts = dataset.frame.groupby("session_id")["timestamp"].min()
    split = dataset.frame.groupby("session_id")["split"].first()
    assert starts[split == "train"].max() <= starts[split == "val"].min()
    assert starts[split == "val"].max() <= starts[split == "test"].min()
    assert dataset.frame.groupby("session_id")["split"].nunique().max() == 1
    shares = dataset.frame["split"].value_counts(normalize=True)
    assert np.isclose(shares["train"], 0.6, atol=0.01)


def test_category_tree_is_read(shared_raw):
    import duckdb

    from rmtl_env.data.engine import read_table

    con = duckdb.connect()
    types = {"categoryid": "BIGINT", "parentid": "DOUBLE"}
    path = shared_raw / "retailrocket/category_tree.csv.gz"
    read_table(con, "tree", path, types, "category tree", nullable=("parentid",))
    tree = con.execute("SELECT * FROM tree").df()
    assert len(tree) == 1669
    assert tree["parentid"].isna().sum() == 25
