"""export-official: the official RMTL code's processed format reads back to our rows exactly."""

from __future__ import annotations

import ast
import json
import pickle
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from rmtl_env.data import DataFormatError, load_dataset
from rmtl_env.data.dataset import SPLITS
from rmtl_env.data.official import (
    OFFICIAL_FIELDS,
    SPLIT_COLUMNS,
    export_official,
    identity_catemap,
    read_official_split,
)
from rmtl_env.data.retailrocket import RetailRocketFiles


@pytest.fixture(scope="module")
def tiny():
    return load_dataset("retailrocket-synthetic", scale="tiny", seed=3)


def check_reads_back(dataset, root, official_roles=False):
    """Every split file, joined to item_feadf.csv, gives our rows, labels, sessions, features."""
    for split in SPLITS:
        ours = dataset.split(split)
        theirs = read_official_split(root, split)
        assert list(theirs.columns[: len(SPLIT_COLUMNS)]) == list(SPLIT_COLUMNS)
        assert len(theirs) == len(ours)
        np.testing.assert_array_equal(theirs["visitorid"].to_numpy(), ours.session_id)
        np.testing.assert_array_equal(theirs["timestamp"].to_numpy(), ours.timestamp)
        np.testing.assert_array_equal(theirs[list(OFFICIAL_FIELDS)].to_numpy(), ours.categorical)
        np.testing.assert_array_equal(theirs[["click", "pay"]].to_numpy(), ours.labels)
        np.testing.assert_array_equal(
            theirs[dataset.numerical_fields].to_numpy(np.float32), ours.numerical
        )
        # The official env reads the last row's next_state of each session: its items in order.
        for _, session in theirs.groupby("visitorid", sort=False):
            listed = [entry[0] for entry in ast.literal_eval(session["next_state"].iloc[-1])]
            assert listed == session["itemid"].tolist()
    record = json.loads((root / "export.json").read_text())
    expected = "test.csv" if official_roles else "val.csv"
    assert record["files"]["val"] == f"dataset/rt/{expected}"


def test_export_reads_back_to_our_rows(tiny, tmp_path):
    export = export_official(tiny, tmp_path / "official")
    check_reads_back(tiny, export.root)
    assert export.rows == {s: len(tiny.split(s)) for s in SPLITS}
    # Item ids are per impression: every row has its own, so item_feadf.csv has one row per row.
    features = pd.read_csv(export.data_dir / "item_feadf.csv")
    assert features["itemid"].is_unique and len(features) == len(tiny.frame)


def test_identity_category_mapper_keeps_ids_and_vocabulary(tiny, tmp_path):
    export = export_official(tiny, tmp_path / "official")
    written = (export.root / "pretrain" / "catemap.pkl").read_bytes()
    expected = identity_catemap(tiny.field_dims)
    assert written == pickle.dumps(expected, protocol=4)  # compared as bytes: nothing unpickled
    # The official load_mapper takes each field's size from its last value, plus one.
    assert [list(m.values())[-1] + 1 for m in expected.values()] == tiny.field_dims
    assert list(expected) == list(OFFICIAL_FIELDS)
    assert json.loads((export.root / "pretrain" / "catemap.json").read_text()) == {
        k: {str(v): v for v in m} for k, m in expected.items()
    }


def test_official_roles_swap_val_and_test(tiny, tmp_path):
    export = export_official(tiny, tmp_path / "official", official_roles=True)
    check_reads_back(tiny, export.root, official_roles=True)
    # The unpatched SLmain.py validates on test.csv: that file now holds our validation split.
    assert len(pd.read_csv(export.data_dir / "test.csv")) == len(tiny.split("val"))


def test_exported_loader_matches_our_split(tiny, tmp_path):
    """The written dataset/rtrl.py (for the official code) yields our arrays."""
    torch = pytest.importorskip("torch")  # the loader is a torch Dataset
    export = export_official(tiny, tmp_path / "official")
    code = (
        "import sys, numpy as np; sys.path.insert(0, '.');"
        "from dataset.rtrl import RetailRocketRLDataset as D;"
        "d = D('dataset/rt/train.csv');"
        "np.save('cat.npy', d.categorical_data); np.save('num.npy', d.numerical_data);"
        "np.save('lab.npy', d.labels); np.save('sess.npy', d.session_id)"
    )
    subprocess.run([sys.executable, "-c", code], cwd=export.root, check=True)
    train = tiny.split("train")
    np.testing.assert_array_equal(np.load(export.root / "cat.npy"), train.categorical)
    np.testing.assert_array_equal(np.load(export.root / "num.npy"), train.numerical)
    np.testing.assert_array_equal(np.load(export.root / "lab.npy"), train.labels)
    np.testing.assert_array_equal(np.load(export.root / "sess.npy"), train.session_id)
    del torch


def test_export_of_the_real_events_sample(shared_raw, tmp_path, prepare):
    dataset = prepare(
        RetailRocketFiles(events=shared_raw / "retailrocket/events_sample_5000visitors.csv.gz")
    )
    export = export_official(dataset, tmp_path / "official")
    check_reads_back(dataset, export.root)
    assert sum(export.rows.values()) == len(dataset.frame)


def test_refuses_what_the_official_code_cannot_read(tmp_path, tiny):
    kuairand = load_dataset("kuairand-synthetic", scale="tiny", seed=3)
    with pytest.raises(DataFormatError, match="categorical fields"):
        export_official(kuairand, tmp_path / "a")
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "keep.txt").write_text("x")
    with pytest.raises(FileExistsError, match="not empty"):
        export_official(tiny, tmp_path / "b")


def test_cli_export(tmp_path):
    out = tmp_path / "official"
    done = subprocess.run(
        [sys.executable, "-m", "rmtl_env.data", "export-official", "retailrocket-synthetic",
         "--scale", "tiny", "--seed", "3", "--out", str(out)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert "official RMTL format" in done.stdout
    assert (out / "dataset" / "rt" / "train.csv").is_file()
    again = subprocess.run(
        [sys.executable, "-m", "rmtl_env.data", "export-official", "retailrocket-synthetic",
         "--scale", "tiny", "--seed", "3", "--out", str(out)],
        capture_output=True, text=True,
    )  # fmt: skip
    assert again.returncode == 2 and "not empty" in again.stderr
