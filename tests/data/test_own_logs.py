"""Own logs prepared with DuckDB from CSV, Parquet and JSON lines: the datasets the retired pandas
engine gave (pinned digests), and refusals naming the file, the column and the data row."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from test_processed_digest import dataset_digest

from rmtl_env.data import ColumnRoles, DataFormatError, load_dataset

# Digests taken with the retired pandas engine (commit d6a6016): the DuckDB engine gives them.
CSV_DIGEST = "c2fcf8b6c68f312ab0c5d0e533592fd9bb271d15652d8949e57e272aaf71664e"
PARQUET_DIGEST = "de3216569272aedb9a35430312619340daee88c4a587516e9a57b08a784d65b4"
ISO_DIGEST = "0faf012cfd2455db6fbd30eb24aa815abb13c4bbef173d9d7e2c85f1a2874908"


def own_log(n: int = 300, seed: int = 0) -> pd.DataFrame:
    """Columns named as the preparation's own (``user_id``, ``time_ms``), an integer feature
    with an empty cell (pandas: a float column), a boolean feature, an item with gaps."""
    rng = np.random.default_rng(seed)
    click = rng.integers(0, 2, n)
    frame = pd.DataFrame({
        "user_id": rng.integers(0, 15, n), "time_ms": rng.integers(0, 10**6, n) * 7_000,
        "shop": rng.choice(["a", "b", "c", "NA"], n), "grade": rng.integers(0, 4, n).astype(float),
        "promo": rng.integers(0, 2, n).astype(bool), "price": rng.lognormal(size=n).round(3),
        "item": rng.integers(0, 40, n).astype(float), "click": click,
        "buy": click * rng.integers(0, 2, n),
    })  # fmt: skip
    frame.loc[3, "grade"] = np.nan
    frame.loc[[4, 9], "item"] = np.nan
    frame.loc[7, "price"] = np.nan
    return pd.concat([frame, frame.iloc[:5]], ignore_index=True)  # 5 exact duplicates


ROLES = ColumnRoles(user="user_id", timestamp="time_ms", labels=["click", "buy"],
                    categorical=["shop", "grade", "promo", "user_id"], numerical=["price"],
                    item="item", nested_labels=True)  # fmt: skip


def test_csv_gives_the_pinned_dataset(tmp_path) -> None:
    path = tmp_path / "log.csv"
    own_log().to_csv(path, index=False)
    ours = load_dataset(path, roles=ROLES, min_count=1)
    assert dataset_digest(ours) == CSV_DIGEST
    assert ours.meta["row_counts"]["duplicate_rows_removed"] == 5
    assert "3.0" in set(ours.vocabulary.query("field == 'grade'")["value"])  # pandas' text
    assert set(ours.vocabulary.query("field == 'promo'")["value"]) == {"True", "False"}


def test_a_session_column_iso_times_and_a_tiny_memory_limit(tmp_path) -> None:
    frame = own_log().drop(columns=["buy"])
    times = pd.to_datetime(frame["time_ms"], unit="ms", utc=True).dt.tz_convert("Asia/Shanghai")
    frame["time_ms"] = times.map(lambda t: t.isoformat())  # "+08:00" offsets
    path = tmp_path / "log.csv"
    frame.to_csv(path, index=False)
    roles = ColumnRoles(session="user_id", timestamp="time_ms", labels=["click"],
                        categorical=["shop"], numerical=["price"])  # fmt: skip
    ours = load_dataset(path, roles=roles, memory_limit="30MB", threads=1)
    assert dataset_digest(ours) == ISO_DIGEST


def test_parquet_and_json_lines_give_the_csv_dataset(tmp_path) -> None:
    frame = own_log().drop(columns=["promo"])
    roles = ColumnRoles(user="user_id", timestamp="time_ms", labels=["click", "buy"],
                        categorical=["shop", "grade"], numerical=["price"], item="item")  # fmt: skip
    frame.to_parquet(tmp_path / "log.parquet", index=False)
    ours = load_dataset(tmp_path / "log.parquet", roles=roles)
    assert dataset_digest(ours) == PARQUET_DIGEST
    frame["shop"] = frame["shop"].astype(object)
    frame.to_json(tmp_path / "log.jsonl", orient="records", lines=True)
    from_json = load_dataset(tmp_path / "log.jsonl", roles=roles)
    for column in ["session_id", "timestamp", "raw_item_id", "price", "label:buy", "split"]:
        assert from_json.frame[column].equals(ours.frame[column]), column


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            lambda f: f.assign(click=f["click"].astype(object).where(f.index != 6, "yes")),
            r"label column 'click' has \d+ value\(s\) outside \{0, 1\} \(first: '(yes|1)' at data row",
        ),
        (
            lambda f: f.assign(price=f["price"].astype(object).where(f.index != 2, "cheap")),
            "numerical column 'price' has value 'cheap' at data row 3; expected a number",
        ),
        (
            lambda f: f.assign(
                buy=np.where(f.index == 10, 1, f["buy"]),
                click=np.where(f.index == 10, 0, f["click"]),
            ),
            r"row\(s\) have buy=1 but click=0",
        ),
        (
            lambda f: f.assign(time_ms=f["time_ms"].astype(object).where(f.index != 4, "soon")),
            "column 'time_ms' has value 'soon' at data row 5; expected an epoch number in ms",
        ),
        (
            lambda f: f.assign(user_id=f["user_id"].where(f.index != 8)),
            "column 'user_id' has empty values",
        ),
        (lambda f: f.drop(columns=["price"]), r"missing column\(s\) \['price'\]"),
        (lambda f: f.iloc[:0], "has a header but no data rows"),
    ],
)
def test_refusals_name_the_file_column_and_row(tmp_path, change, message) -> None:
    path = tmp_path / "log.csv"
    change(own_log().drop(columns=["promo"]).iloc[:-5]).to_csv(path, index=False)
    roles = ColumnRoles(user="user_id", timestamp="time_ms", labels=["click", "buy"],
                        categorical=["shop"], numerical=["price"], nested_labels=True)  # fmt: skip
    with pytest.raises(DataFormatError, match=message) as error:
        load_dataset(path, roles=roles)
    assert str(path) in str(error.value)


def test_a_repeated_header_line_is_named(tmp_path) -> None:
    frame = own_log().drop(columns=["promo"]).iloc[:20]
    path = tmp_path / "log.csv"
    text = frame.to_csv(index=False)
    header = text.splitlines()[0]
    path.write_text(text + header + "\n" + frame.iloc[:3].to_csv(index=False, header=False))
    with pytest.raises(DataFormatError, match="line 22 repeats the header"):
        load_dataset(path, roles=ColumnRoles(**{**ROLES.__dict__, "categorical": ["shop"]}))


def test_a_feature_may_not_take_a_processed_column_name() -> None:
    with pytest.raises(ValueError, match=r"feature column\(s\) \['split'\]"):
        ColumnRoles(user="u", timestamp="t", labels=["y"], categorical=["split"])


def test_awkward_but_valid_logs_are_read(tmp_path) -> None:
    """A gzipped CSV, text session ids, 0.0/1.0 labels, date-like categorical text kept as
    written, float epoch seconds."""
    frame = pd.DataFrame({
        "sid": ["s-01", "s-01", "s-02", "s-02", "s-03", "s-03"],
        "when": [1_600_000_000.25, 1_600_000_001.5, 1_600_000_100.0, 1_600_000_100.75,
                 1_600_000_200.0, 1_600_000_300.125],
        "day": ["2024-01-02", "2024-01-02", "2024-01-03", "2024-01-02", "2024-01-03",
                "2024-01-02"],
        "y": [1.0, 0.0, 0.0, 1.0, 1.0, 0.0],
    })  # fmt: skip
    path = tmp_path / "log.csv.gz"
    frame.to_csv(path, index=False)
    roles = ColumnRoles(session="sid", timestamp="when", timestamp_unit="s", labels=["y"],
                        categorical=["day"])  # fmt: skip
    data = load_dataset(path, roles=roles, min_count=1)
    assert data.frame["timestamp"].tolist() == [1_600_000_000_250, 1_600_000_001_500,
                                                1_600_000_100_000, 1_600_000_100_750,
                                                1_600_000_200_000, 1_600_000_300_125]  # fmt: skip
    assert data.frame["label:y"].tolist() == [1, 0, 0, 1, 1, 0]
    assert set(data.vocabulary["value"]) <= {"2024-01-02", "2024-01-03"}
    assert data.frame["session_id"].tolist() == [0, 0, 1, 1, 2, 2]
