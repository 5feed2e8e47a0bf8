"""RetailRocket prepared with DuckDB gives the rows of the in-memory path (twins and the real
5,000-visitor sample)."""

from __future__ import annotations

import pandas as pd
import pytest

from rmtl_env.data import SessionDataset, load_dataset
from rmtl_env.data.errors import DataFormatError

pytest.importorskip("duckdb", reason="DuckDB is in the scale extra")

from test_outofcore import assert_same_dataset  # noqa: E402


def test_a_tiny_memory_limit_gives_the_in_memory_rows() -> None:
    theirs = load_dataset("retailrocket-synthetic", scale="small")
    ours = load_dataset(
        "retailrocket-synthetic", scale="small", engine="duckdb", memory_limit="100MB", threads=1
    )
    assert ours.meta["source"] == "retailrocket" and ours.has_true_probs
    assert_same_dataset(ours, theirs)


@pytest.mark.parametrize(
    "params",
    [
        {"session_key": "visitor", "include_itemid": True, "category_parent": True},
        {"session_gap_minutes": 5.0, "hash_buckets": {"785": 64}, "max_vocab": {"categoryid": 20}},
        {"share_threshold": {"776": 0.2, "364": 0.2}, "min_count": 3},  # the official rule
    ],
)
def test_loader_and_vocabulary_options(params) -> None:
    theirs = load_dataset("retailrocket-synthetic", scale="tiny", **params)
    ours = load_dataset("retailrocket-synthetic", scale="tiny", engine="duckdb", **params)
    assert_same_dataset(ours, theirs)


def test_the_real_events_sample(shared_raw, tmp_path) -> None:
    from rmtl_env.data.outofcore_retailrocket import prepare_retailrocket
    from rmtl_env.data.processing import ProcessingConfig, build_processed
    from rmtl_env.data.retailrocket import RetailRocketConfig, RetailRocketFiles, build_impressions

    files = RetailRocketFiles(events=shared_raw / "retailrocket/events_sample_5000visitors.csv.gz")
    config, processing = RetailRocketConfig(), ProcessingConfig()
    theirs = build_processed(build_impressions(files, config, "sample"), processing)
    out = tmp_path / "sample"
    out.mkdir()
    prepare_retailrocket(files, config, processing, out, "sample", progress=False)
    assert_same_dataset(SessionDataset.load(out), theirs)


def test_an_unknown_event_type_names_the_file_and_row(tmp_path) -> None:
    from rmtl_env.data.catalog import synthetic_raw_dir
    from rmtl_env.data.outofcore_retailrocket import prepare_retailrocket
    from rmtl_env.data.processing import ProcessingConfig
    from rmtl_env.data.retailrocket import RetailRocketConfig, RetailRocketFiles

    raw = synthetic_raw_dir("retailrocket-synthetic", "tiny", 0)
    folder = tmp_path / "raw"
    folder.mkdir()
    for path in raw.iterdir():
        (folder / path.name).write_bytes(path.read_bytes())
    events = pd.read_csv(folder / "events.csv")
    events.loc[6, "event"] = "purchase"
    events.to_csv(folder / "events.csv", index=False)
    out = tmp_path / "out"
    out.mkdir()
    files = RetailRocketFiles.in_folder(folder)
    with pytest.raises(DataFormatError, match=r"events.csv: column 'event' has value 'purchase' at "
                                              r"data row 7"):  # fmt: skip
        prepare_retailrocket(files, RetailRocketConfig(), ProcessingConfig(), out, progress=False)


def test_property_ties_the_last_distinct_row_in_file_order_is_in_force(tmp_path) -> None:
    """Rows with equal (item, property, time): the last in file order holds, where an exact
    duplicate counts at its first line (x, y, x again: y holds), across the two files."""
    (tmp_path / "events.csv").write_text(
        "timestamp,visitorid,event,itemid,transactionid\n"
        + "".join(f"{t},{v},view,1,\n" for v in (1, 2, 3) for t in (1000, 2000, 3000))
    )
    header = "timestamp,itemid,property,value\n"
    (tmp_path / "item_properties_part1.csv").write_text(
        header + "1500,1,categoryid,x\n1500,1,categoryid,y\n1500,1,785,a\n"
    )
    (tmp_path / "item_properties_part2.csv").write_text(
        header + "1500,1,categoryid,x\n2500,1,785,b\n2500,1,785,c\n"
    )
    params = {"data_dir": tmp_path, "min_count": 1}
    theirs = load_dataset("retailrocket", **params)
    ours = load_dataset("retailrocket", engine="duckdb", **params)
    assert_same_dataset(ours, theirs)
    text = dict(zip(ours.vocabulary["id"].astype(str) + ours.vocabulary["field"],
                    ours.vocabulary["value"], strict=True))  # fmt: skip
    values = [text.get(f"{i}categoryid") for i in ours.frame["categoryid"]]
    assert values == [None, "y", "y"] * 3
    assert [text.get(f"{i}785") for i in ours.frame["785"]] == [None, "a", "c"] * 3
    assert ours.meta["row_counts"]["duplicate_property_rows_removed"] == 1
