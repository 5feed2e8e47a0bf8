"""RetailRocket prepared with DuckDB: bounded memory, the property tie rules, bad input."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from rmtl_env.data import load_dataset
from rmtl_env.data.errors import DataFormatError


def tiny_twin_copy(tmp_path) -> Path:
    """A copy of the tiny RetailRocket twin's raw files, for a test to damage."""
    from rmtl_env.data.catalog import synthetic_raw_dir

    folder = tmp_path / "raw"
    folder.mkdir()
    for path in synthetic_raw_dir("retailrocket-synthetic", "tiny", 0).iterdir():
        (folder / path.name).write_bytes(path.read_bytes())
    return folder


def test_a_tiny_memory_limit_gives_the_same_rows() -> None:
    from test_processed_digest import CASES, dataset_digest

    digest, name, params = CASES["retailrocket-synthetic small"]
    ours = load_dataset(name, memory_limit="100MB", threads=1, refresh=True, **params)
    assert ours.meta["source"] == "retailrocket" and ours.has_true_probs
    assert dataset_digest(ours) == digest


def test_an_unknown_event_type_names_the_file_and_row(tmp_path) -> None:
    from rmtl_env.data.processing import ProcessingConfig
    from rmtl_env.data.retailrocket import (
        RetailRocketConfig,
        RetailRocketFiles,
        prepare_retailrocket,
    )

    folder = tiny_twin_copy(tmp_path)
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
    ours = load_dataset("retailrocket", data_dir=tmp_path, min_count=1)
    text = dict(zip(ours.vocabulary["id"].astype(str) + ours.vocabulary["field"],
                    ours.vocabulary["value"], strict=True))  # fmt: skip
    values = [text.get(f"{i}categoryid") for i in ours.frame["categoryid"]]
    assert values == [None, "y", "y"] * 3
    assert [text.get(f"{i}785") for i in ours.frame["785"]] == [None, "a", "c"] * 3
    assert ours.meta["row_counts"]["duplicate_property_rows_removed"] == 1


@pytest.mark.parametrize(
    "change, message",
    [("repeat", "1 extra row\\(s\\) for views already listed"), ("drop", "lacks rows for 1")],
)
def test_a_twin_truth_file_needs_exactly_one_row_per_view(tmp_path, change, message) -> None:
    """The true probabilities join the views on (visitor, item, time): a repeated row would
    duplicate a view and a missing one leave it without truth, so both are refused."""
    folder = tiny_twin_copy(tmp_path)
    truth = pd.read_csv(folder / "synthetic_truth.csv")
    truth = pd.concat([truth, truth.iloc[[3]]]) if change == "repeat" else truth.drop(index=3)
    truth.to_csv(folder / "synthetic_truth.csv", index=False)
    with pytest.raises(DataFormatError, match=f"synthetic_truth.csv.*{message}"):
        load_dataset("retailrocket", data_dir=folder, refresh=True)
