"""Streamed splits read the processed Parquet file block by block and give exactly the rows of
the in-memory split (their training minibatches: ``tests/agents/test_batching.py``)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from rmtl_env.data import DataFormatError, StreamedDataset, load_dataset


def test_streamed_rows_equal_the_in_memory_split(kr_tiny_regrouped) -> None:
    data, streamed = kr_tiny_regrouped
    for name in ("train", "val", "test"):
        memory, split = data.split(name), streamed.split(name)
        assert len(split) == len(memory)
        blocks = split.blocks()
        assert len(blocks) > 2 and blocks[0].offset == 0
        assert [b.offset for b in blocks[1:]] == list(np.cumsum([len(b) for b in blocks[:-1]]))
        rows = list(split.iter_rows())
        for field in ("categorical", "numerical", "labels", "session_id"):
            joined = np.concatenate([getattr(r, field) for r in rows])
            assert np.array_equal(joined, getattr(memory, field)), (name, field)
        assert np.array_equal(split.labels, memory.labels)
        assert np.array_equal(split.session_id, memory.session_id)
        assert np.array_equal(split.true_probs, memory.true_probs)
        for b in blocks[1:]:
            head = split.read_head(b)
            assert head.index.tolist() == [b.offset]
            assert np.array_equal(head.categorical[0], memory.categorical[b.offset])


def test_load_dataset_stream_reads_meta_only(kr_tiny_regrouped) -> None:
    data, _ = kr_tiny_regrouped
    streamed = load_dataset("kuairand-synthetic", scale="tiny", stream=True)
    assert isinstance(streamed, StreamedDataset)
    assert not hasattr(streamed, "frame")
    assert (streamed.field_dims, streamed.tasks) == (data.field_dims, data.tasks)
    assert streamed.numerical_fields == data.numerical_fields
    assert isinstance(load_dataset(data.meta["path"], stream=True), StreamedDataset)
    with pytest.raises(ValueError, match="split must be one of"):
        streamed.split("validation")
    assert streamed.split("test", tasks=["long_view"]).tasks == ("long_view",)


def _copy(data, tmp_path: Path) -> Path:
    folder = tmp_path / "copy"
    shutil.copytree(data.meta["path"], folder)
    return folder


def test_a_split_that_is_not_one_run_of_rows_is_refused(kr_tiny_regrouped, tmp_path) -> None:
    data, _ = kr_tiny_regrouped
    folder = _copy(data, tmp_path)
    frame = pd.read_parquet(folder / "impressions.parquet")
    split = frame["split"].astype(str).to_numpy(copy=True)
    split[:5] = "test"  # test rows before the train rows
    frame["split"] = split
    frame.to_parquet(folder / "impressions.parquet", index=False)
    streamed = StreamedDataset(folder)
    with pytest.raises(DataFormatError, match=r"impressions.parquet: the 'test' rows are not one"):
        streamed.split("test")


def test_missing_columns_and_bad_meta_are_named(kr_tiny_regrouped, tmp_path) -> None:
    data, _ = kr_tiny_regrouped
    folder = _copy(data, tmp_path)
    frame = pd.read_parquet(folder / "impressions.parquet")
    frame.drop(columns=[data.numerical_fields[0]]).to_parquet(folder / "impressions.parquet")
    with pytest.raises(DataFormatError, match=f"lacks columns \\['{data.numerical_fields[0]}'\\]"):
        StreamedDataset(folder)
    (folder / "meta.json").write_text(json.dumps({"dataset": "x"}))
    with pytest.raises(DataFormatError, match="meta.json lacks keys"):
        StreamedDataset(folder)
    (folder / "meta.json").write_text("{not json")
    with pytest.raises(DataFormatError, match="meta.json is not valid JSON"):
        StreamedDataset(folder)
    with pytest.raises(ValueError, match="buffer_rows must be >= 1"):
        StreamedDataset(data.meta["path"], buffer_rows=0)
