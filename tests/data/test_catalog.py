"""Catalog, cache reuse and the command line."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from rmtl_env.data import load_dataset
from rmtl_env.data.dataset import SessionDataset


def test_second_load_reuses_the_cache_without_rebuilding(monkeypatch):
    # The mechanism, not a timing (speed belongs in benchmarks/bench_data.py): the second load
    # must not call the builder at all.
    from rmtl_env.data import catalog

    first = load_dataset("retailrocket-synthetic", scale="tiny", seed=11)

    def refuse(*args, **kwargs):
        raise AssertionError("the cached dataset was rebuilt")

    monkeypatch.setattr(catalog.retailrocket, "prepare_retailrocket", refuse)
    second = load_dataset("retailrocket-synthetic", scale="tiny", seed=11)
    assert second.meta["cache_key"] == first.meta["cache_key"]
    assert second.frame.equals(first.frame)
    with pytest.raises(AssertionError, match="rebuilt"):  # the patch does reach the builder
        load_dataset("retailrocket-synthetic", scale="tiny", seed=11, refresh=True)


def test_parameters_change_the_cache_key():
    a = load_dataset("retailrocket-synthetic", scale="tiny", seed=11)
    b = load_dataset("retailrocket-synthetic", scale="tiny", seed=11, session_key="visitor")
    c = load_dataset(
        "retailrocket-synthetic", scale="tiny", seed=11, share_threshold={"776": 0.2, "364": 0.2}
    )
    assert len({a.meta["cache_key"], b.meta["cache_key"], c.meta["cache_key"]}) == 3
    assert b.meta["params"]["retailrocket"]["session_key"] == "visitor"
    assert b.frame["session_id"].nunique() <= a.frame["session_id"].nunique()
    fields = c.categorical_fields
    assert c.field_dims[fields.index("776")] < a.field_dims[fields.index("776")]


def test_processed_folder_loads_and_meta_is_complete():
    dataset = load_dataset(
        "kuairand-synthetic", scale="tiny", seed=1, tasks=("is_click", "long_view", "is_like")
    )
    assert dataset.tasks == ["is_click", "long_view", "is_like"]
    again = load_dataset(dataset.meta["path"])
    assert isinstance(again, SessionDataset) and again.tasks == dataset.tasks
    meta = again.meta
    for key in (
        "tasks",
        "categorical_fields",
        "field_dims",
        "numerical_fields",
        "params",
        "raw_files",
        "splits",
    ):
        assert key in meta
    assert all(len(entry["md5"]) == 32 for entry in meta["raw_files"])
    assert set(meta["splits"]) == {"train", "val", "test"}
    split = again.split("train")
    assert split.labels.shape[1] == 3 and split.true_probs.shape[1] == 3
    assert (split.categorical < np.array(again.field_dims)).all()


def test_cli_stats_prepare_and_synth(tmp_path, capsys):
    """``python -m rmtl_env.data`` once as a user runs it; its other commands in-process."""
    from rmtl_env.data.__main__ import main

    out = subprocess.run(
        [sys.executable, "-m", "rmtl_env.data", "stats", "kuairand-synthetic", "--scale", "tiny"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "oracle_auc:is_click" in out.stdout and "train" in out.stdout
    assert main(["prepare", "retailrocket-synthetic", "--scale", "tiny"]) == 0
    assert "processed dataset" in capsys.readouterr().out
    main(["synth", "retailrocket-synthetic", "--scale", "tiny", "--out", str(tmp_path)])
    assert (tmp_path / "events.csv").is_file() and (
        tmp_path / "item_properties_part2.csv"
    ).is_file()
    assert main(["stats", "retailrocket", "--data-dir", str(tmp_path / "nowhere")]) == 2
    assert "events.csv" in capsys.readouterr().err
    # --scale takes what load_dataset takes: a fraction for the 27K twin, one line otherwise.
    assert main(["synth", "kuairand-27k-synthetic", "--scale", "1/4000", "--out",
                 str(tmp_path / "k27")]) == 0  # fmt: skip
    assert main(["stats", "kuairand-27k-synthetic", "--scale", "2"]) == 2
    assert "fraction in (0, 1]" in capsys.readouterr().err


def test_an_empty_data_dir_variable_means_the_default_cache(monkeypatch) -> None:
    # Path("") is the working folder: processed/ and raw/ would land in the user's checkout.
    from pathlib import Path

    from rmtl_env.data import catalog

    monkeypatch.setenv("RMTL_DATA_DIR", "")
    assert catalog.cache_root() == Path.home() / ".cache" / "rmtl"
