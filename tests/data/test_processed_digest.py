"""Pinned digests of processed datasets: the twins at tiny and small scale, the 27K twin and
the loader and vocabulary options, the real RetailRocket sample and the real KuaiRand feature
files give exactly these arrays
(rows, order, dtypes, vocabularies, field sizes and standardisation). The digests were taken
with the retired pandas engine, and the DuckDB engine gives the same: every committed result
stays reproducible. A refactor of the data layer must leave them equal; a digest changes only
with an intended change of the processed-dataset contract: then update it here and say so in
the commit. (Own logs: ``test_own_logs.py``.)"""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd
import pytest

from rmtl_env.data import load_dataset
from rmtl_env.data.dataset import SessionDataset


def dataset_digest(dataset: SessionDataset) -> str:
    """sha256 over every column of the impressions (name, dtype, values) and of the vocabulary,
    the field sizes and the numerical standardisation (at float32 precision)."""
    h = hashlib.sha256()

    def frame(table: pd.DataFrame) -> None:
        for name in table.columns:
            column = table[name]
            h.update(f"{name}:{column.dtype}".encode())
            if isinstance(column.dtype, pd.CategoricalDtype):
                h.update(repr(list(column.cat.categories)).encode())
                column = column.cat.codes
            values = column.to_numpy()
            if values.dtype == object:
                h.update("\x1f".join(map(str, values)).encode())
            else:
                h.update(np.ascontiguousarray(values).tobytes())

    frame(dataset.frame)
    frame(dataset.vocabulary)
    h.update(repr(dataset.field_dims).encode())
    # The standardisation at the stored features' float32 precision: engines sum in different
    # orders, so the float64 means differ in their last bits while the features are equal.
    stats = {
        field: {k: float(np.float32(v)) for k, v in sorted(values.items())}
        for field, values in sorted(dataset.meta["numerical_stats"].items())
    }
    h.update(repr(stats).encode())
    return h.hexdigest()


CASES = {
    "retailrocket-synthetic tiny": (
        "e17cc0485dd726bc089fdecdfbaa4b71f0ea8ce636d4031101e1bc22c5d4120b",
        "retailrocket-synthetic",
        {"scale": "tiny"},
    ),
    "kuairand-synthetic tiny": (
        "cee5b539cfe1f751bd831a2e42c56f58215b787d5b8ca282ee72dbdb3d6f0c47",
        "kuairand-synthetic",
        {"scale": "tiny"},
    ),
    "retailrocket-synthetic small": (
        "3b6c557b69ab576558448471a7c8533d14f8acc4ae44ca1d24da27701ec47f69",
        "retailrocket-synthetic",
        {"scale": "small"},
    ),
    "kuairand-synthetic small": ("6ca08a48cc6f869febc7c20a82d85d0d3c73bbe2a923123c112b2fa8f1901a50", "kuairand-synthetic", {"scale": "small"}),
    "27K twin, random log and video ids": (
        "c7616f6e88a194bf4f558c7883fc90f819718e84a481dd96ea9af163778d46a0",
        "kuairand-27k-synthetic",
        {"scale": "1/4000", "include_random_log": True, "include_video_id": True},
    ),
    "KuaiRand capped and hashed vocabularies": (
        "aed5f559917ff659a110bd01ef803d5cb687ab064f58664c3f4bb241928997d2",
        "kuairand-synthetic",
        {"scale": "tiny", "include_video_id": True, "max_vocab": {"author_id": 50},
         "hash_buckets": {"video_id": 997, "user_id": 31}},
    ),
    "RetailRocket visitor sessions, item id, category parent": (
        "90cd04717575cedf09dccf761b80aa7ba576a524775da0e20ad30d620254f527",
        "retailrocket-synthetic",
        {"scale": "tiny", "session_key": "visitor", "include_itemid": True,
         "category_parent": True},
    ),
    "RetailRocket 5-minute gap, hashed and capped fields": (
        "905c7a728317eb1ac2f021111be0d95f518232858b87cf0ba47bab70cf455592",
        "retailrocket-synthetic",
        {"scale": "tiny", "session_gap_minutes": 5.0, "hash_buckets": {"785": 64},
         "max_vocab": {"categoryid": 20}},
    ),
    "RetailRocket official share_threshold rule": (
        "b49bd3d64039cbd0a78caeed2818c290081c60536225edbfc0c528211c9b0ca9",
        "retailrocket-synthetic",
        {"scale": "tiny", "share_threshold": {"776": 0.2, "364": 0.2}, "min_count": 3},
    ),
}  # fmt: skip


@pytest.mark.parametrize("case", list(CASES))
def test_the_pinned_arrays(case) -> None:
    digest, name, params = CASES[case]
    assert dataset_digest(load_dataset(name, **params)) == digest


def test_the_retired_engine_argument_warns_and_changes_nothing() -> None:
    digest, name, params = CASES["kuairand-synthetic tiny"]
    for engine in ("pandas", "duckdb"):
        with pytest.warns(FutureWarning, match="no longer needed: DuckDB prepares every source"):
            assert dataset_digest(load_dataset(name, engine=engine, **params)) == digest
    with pytest.raises(ValueError, match="engine must be 'pandas' or 'duckdb'"):
        load_dataset(name, engine="spark", **params)


def test_the_real_retailrocket_sample_gives_the_pinned_arrays(shared_raw, tmp_path) -> None:
    # The sample holds events only (no item properties): the impressions with every property
    # unknown, processed with the default settings.
    from rmtl_env.data.dataset import SessionDataset
    from rmtl_env.data.processing import ProcessingConfig
    from rmtl_env.data.retailrocket import (
        RetailRocketConfig,
        RetailRocketFiles,
        prepare_retailrocket,
    )

    files = RetailRocketFiles(
        events=shared_raw / "retailrocket" / "events_sample_5000visitors.csv.gz"
    )
    out = tmp_path / "processed"
    out.mkdir()
    prepare_retailrocket(files, RetailRocketConfig(), ProcessingConfig(), out, progress=False)
    assert dataset_digest(SessionDataset.load(out)) == REAL_RETAILROCKET


REAL_RETAILROCKET = "b374265e32e36565a53b9ad495e86c0dbacfe138013b72a02d33a198e37ec9d2"


def real_kuairand_raw(shared_raw, folder):
    """A KuaiRand-1K folder from the real KuaiRand-Pure feature files (the sample has no logs):
    the tiny twin's logs, their user and video ids re-keyed to the real files' ids (every other
    cell kept as written), beside the real ``user_features`` and ``video_features_basic``."""
    import gzip
    import shutil

    from rmtl_env.data.synthetic import write_twin

    twin = write_twin("kuairand-synthetic", folder / "twin", scale="tiny", seed=0)
    raw = folder / "raw"
    raw.mkdir()
    real = shared_raw / "kuairand"

    def ids(name: str, column: str) -> np.ndarray:
        with gzip.open(real / name, "rt") as handle:
            return np.sort(pd.read_csv(handle, usecols=[column])[column].unique())

    users = ids("user_features_pure.csv.gz", "user_id")
    videos = ids("video_features_basic_pure.csv.gz", "video_id")
    for log in sorted(twin.glob("log_*.csv")):
        frame = pd.read_csv(log, dtype=str, keep_default_na=False)
        frame["user_id"] = users[frame["user_id"].astype(int) % len(users)].astype(str)
        frame["video_id"] = videos[frame["video_id"].astype(int) % len(videos)].astype(str)
        frame.to_csv(raw / log.name, index=False)
    shutil.copy(real / "user_features_pure.csv.gz", raw / "user_features_1k.csv.gz")
    shutil.copy(real / "video_features_basic_pure.csv.gz", raw / "video_features_basic_1k.csv.gz")
    return raw


def test_the_real_kuairand_features_give_the_pinned_arrays(shared_raw, tmp_path) -> None:
    # Pinned from the retired pandas engine (d6a6016) on the same folder; DuckDB gives the same.
    data = load_dataset("kuairand-1k", data_dir=real_kuairand_raw(shared_raw, tmp_path))
    assert data.meta["row_counts"]["rows_without_user_features"] == 0
    assert data.meta["row_counts"]["rows_without_video_features"] == 0
    assert dataset_digest(data) == REAL_KUAIRAND


REAL_KUAIRAND = "8b129a70bf2713cec6c53a20022936e0d337b172e40758d44a09da1614352aaf"
