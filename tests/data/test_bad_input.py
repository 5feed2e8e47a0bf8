"""Every documented bad-input case: a clear error naming file and column, or a counted fix."""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest

from rmtl_env.data import ColumnRoles, DataFormatError, MissingRawFilesError, load_dataset
from rmtl_env.data.kuairand import KuaiRandConfig, KuaiRandFiles
from rmtl_env.data.retailrocket import RetailRocketFiles
from rmtl_env.data.synthetic import write_twin

HEADER = "timestamp,visitorid,event,itemid,transactionid\n"


@pytest.fixture(scope="module")
def rr_raw(tmp_path_factory):
    return write_twin("retailrocket-synthetic", tmp_path_factory.mktemp("rr"), "tiny", 0)


@pytest.fixture(scope="module")
def kr_raw(tmp_path_factory):
    return write_twin("kuairand-synthetic", tmp_path_factory.mktemp("kr"), "tiny", 0)


def _events(tmp_path, text):
    path = tmp_path / "events.csv"
    path.write_text(text)
    return RetailRocketFiles(events=path)


def test_missing_files_are_listed_with_source_and_twin(tmp_path):
    (tmp_path / "events.csv").write_text(HEADER)
    with pytest.raises(MissingRawFilesError) as info:
        load_dataset("retailrocket", data_dir=tmp_path)
    message = str(info.value)
    assert "item_properties_part1.csv" in message and "item_properties_part2.csv" in message
    assert "events.csv\n" not in message  # present, so not listed
    assert "kaggle.com" in message and "retailrocket-synthetic" in message
    with pytest.raises(MissingRawFilesError, match="log_standard_4_08_to_4_21_1k.csv"):
        load_dataset("kuairand-1k", data_dir=tmp_path)


def test_renamed_column(prepare, tmp_path):
    files = _events(tmp_path, "timestamp,visitor,event,itemid,transactionid\n1,2,view,3,\n")
    with pytest.raises(DataFormatError, match=r"events\.csv.*missing column\(s\) \['visitorid'\]"):
        prepare(files)


def test_wrong_dtype_names_column_value_and_row(prepare, tmp_path):
    files = _events(tmp_path, HEADER + "1,2,view,3,\n12x,2,view,4,\n")
    with pytest.raises(
        DataFormatError, match=r"column 'timestamp' has value '12x' at line 3; expected an integer"
    ):
        prepare(files)


def test_unknown_event_type(prepare, tmp_path):
    files = _events(tmp_path, HEADER + "1,2,view,3,\n5,2,purchase,3,\n")
    with pytest.raises(DataFormatError, match=r"column 'event' has value 'purchase'"):
        prepare(files)


@pytest.mark.parametrize("text", ["", HEADER])
def test_empty_file(prepare, tmp_path, text):
    with pytest.raises(DataFormatError, match="events file .*empty|no data rows"):
        prepare(_events(tmp_path, text))


def test_missing_value_in_required_column(prepare, tmp_path):
    files = _events(tmp_path, HEADER + "1,,view,3,\n")
    with pytest.raises(DataFormatError, match="column 'visitorid' has 1 empty value"):
        prepare(files)


def test_duplicates_removed_and_counted_unsorted_rows_sorted(prepare, tmp_path, rr_raw):
    events = pd.read_csv(rr_raw / "events.csv")
    clean = events.drop_duplicates().sort_values(["visitorid", "timestamp"], kind="stable")
    folder = tmp_path / "sorted"
    shutil.copytree(rr_raw, folder)
    clean.to_csv(folder / "events.csv", index=False)
    reference = prepare(RetailRocketFiles.in_folder(folder))
    assert reference.meta["row_counts"]["duplicate_events_removed"] == 0
    noisy = pd.concat([clean, clean.iloc[:7]]).sample(frac=1, random_state=0)
    noisy.to_csv(folder / "events.csv", index=False)
    table = prepare(RetailRocketFiles.in_folder(folder))
    assert table.meta["row_counts"]["duplicate_events_removed"] == 7
    assert table.meta["row_counts"]["events_were_sorted"] is False
    pd.testing.assert_frame_equal(reference.frame, table.frame)


def test_property_file_bad_value(prepare, tmp_path, rr_raw):
    folder = tmp_path / "props"
    shutil.copytree(rr_raw, folder)
    path = folder / "item_properties_part2.csv"
    path.write_text(path.read_text() + "notatime,5,available,1\n")
    with pytest.raises(DataFormatError, match=r"item_properties_part2\.csv: column 'timestamp'"):
        prepare(RetailRocketFiles.in_folder(folder))


def _rewrite_log(kr_raw, tmp_path, edit):
    folder = tmp_path / "kr"
    shutil.copytree(kr_raw, folder)
    path = folder / "log_standard_4_08_to_4_21_1k.csv"
    log = pd.read_csv(path)
    edit(log)
    log.to_csv(path, index=False)
    return KuaiRandFiles.in_folder(folder)


def test_label_outside_binary(prepare, kr_raw, tmp_path):
    files = _rewrite_log(
        kr_raw,
        tmp_path,
        lambda log: log.__setitem__("is_click", log["is_click"].where(log.index != 3, 2)),
    )
    with pytest.raises(
        DataFormatError, match=r"label column 'is_click' has 1 value\(s\) outside \{0, 1\}"
    ):
        prepare(files)


def test_label_nan(prepare, kr_raw, tmp_path):
    def edit(log):
        log["long_view"] = log["long_view"].astype(float)
        log.loc[5, "long_view"] = np.nan

    files = _rewrite_log(kr_raw, tmp_path, edit)
    with pytest.raises(DataFormatError, match="column 'long_view' has 1 empty value"):
        prepare(files)


def test_log_missing_column(prepare, kr_raw, tmp_path):
    files = _rewrite_log(kr_raw, tmp_path, lambda log: log.pop("is_rand"))
    with pytest.raises(DataFormatError, match=r"missing column\(s\) \['is_rand'\]"):
        prepare(files)


def test_second_task_without_first(prepare, kr_raw, tmp_path):
    def edit(log):
        rows = log.index[log["is_click"] == 0][:4]
        log.loc[rows, "long_view"] = 1

    files = _rewrite_log(kr_raw, tmp_path, edit)
    with pytest.raises(DataFormatError, match="have long_view=1 but is_click=0"):
        prepare(files, KuaiRandConfig(nesting="error"))
    fixed = prepare(files, KuaiRandConfig(nesting="fix"))
    assert fixed.meta["row_counts"]["nesting_violations_changed"] >= 4
    labels = fixed.frame[["label:is_click", "label:long_view"]].to_numpy()
    assert (labels[:, 1] <= labels[:, 0]).all()
    kept = prepare(files, KuaiRandConfig(nesting="ignore"))
    assert (kept.frame["label:long_view"] > kept.frame["label:is_click"]).sum() >= 4


def _custom(tmp_path, frame, **roles):
    path = tmp_path / "log.csv"
    frame.to_csv(path, index=False)
    base = {
        "user": "uid",
        "timestamp": "ts",
        "labels": ["click", "buy"],
        "categorical": ["cat"],
        "numerical": ["price"],
    }
    return path, ColumnRoles(**{**base, **roles})


def _own_log(n=400, seed=0):
    rng = np.random.default_rng(seed)
    click = rng.integers(0, 2, n)
    return pd.DataFrame(
        {
            "uid": rng.integers(0, 20, n),
            "ts": rng.integers(0, 10**7, n) * 1000,
            "cat": rng.choice(["a", "b", "c"], n),
            "price": rng.normal(size=n),
            "click": click,
            "buy": click * rng.integers(0, 2, n),
        }
    )


def test_own_log_end_to_end(tmp_path):
    frame = _own_log()
    frame = pd.concat([frame, frame.iloc[:3]])
    path, roles = _custom(tmp_path, frame, nested_labels=True)
    dataset = load_dataset(path, roles=roles)
    assert dataset.tasks == ["click", "buy"]
    assert dataset.meta["row_counts"]["duplicate_rows_removed"] == 3
    assert len(dataset.frame) == 400
    assert dataset.meta["source"] == "custom"
    again = load_dataset(path, roles=roles)
    assert again.meta["cache_key"] == dataset.meta["cache_key"]


def test_own_log_bad_inputs(tmp_path):
    frame = _own_log()
    path, roles = _custom(tmp_path, frame.drop(columns=["price"]))
    with pytest.raises(DataFormatError, match=r"missing column\(s\) \['price'\]"):
        load_dataset(path, roles=roles)
    bad = frame.assign(click=frame["click"].replace(1, 3))
    path, roles = _custom(tmp_path, bad)
    with pytest.raises(DataFormatError, match="label column 'click'"):
        load_dataset(path, roles=roles)
    bad = frame.assign(price=frame["price"].astype(object))
    bad.loc[2, "price"] = "cheap"
    path, roles = _custom(tmp_path, bad)
    with pytest.raises(DataFormatError, match="numerical column 'price' has value 'cheap'"):
        load_dataset(path, roles=roles)
    bad = frame.assign(buy=1 - frame["click"])
    path, roles = _custom(tmp_path, bad, nested_labels=True)
    with pytest.raises(DataFormatError, match="buy=1 but click=0"):
        load_dataset(path, roles=roles)
    path, roles = _custom(tmp_path, bad, nested_labels=True, nesting="fix")
    fixed = load_dataset(path, roles=roles)
    assert fixed.meta["row_counts"]["nesting_violations_changed"] == int(
        (bad["buy"] > bad["click"]).sum()
    )
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(DataFormatError, match="empty"):
        load_dataset(tmp_path / "empty.csv", roles=roles)
    with pytest.raises(ValueError, match="exactly one of 'session' or 'user'"):
        ColumnRoles(timestamp="ts", labels=["click"])


def test_unknown_parameters_and_names():
    with pytest.raises(TypeError, match=r"unknown parameter\(s\) \['sesion_key'\]"):
        load_dataset("retailrocket-synthetic", scale="tiny", sesion_key="visitor")
    with pytest.raises(ValueError, match="unknown dataset 'movielens'"):
        load_dataset("movielens")
    with pytest.raises(ValueError, match="scale must be one of"):
        load_dataset("retailrocket-synthetic", scale="huge")
