"""Pinned digests of processed datasets: the tiny twins and the real RetailRocket sample give
exactly these arrays (rows, order, dtypes, vocabularies, field sizes and standardisation). A
change of preparation engine or a refactor of the data layer must leave them equal, so that
every committed result stays reproducible. A digest changes only with an intended change of the
processed-dataset contract: then update it here and say so in the commit."""

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


TWINS = {
    (
        "retailrocket-synthetic",
        "tiny",
    ): "e17cc0485dd726bc089fdecdfbaa4b71f0ea8ce636d4031101e1bc22c5d4120b",
    (
        "kuairand-synthetic",
        "tiny",
    ): "cee5b539cfe1f751bd831a2e42c56f58215b787d5b8ca282ee72dbdb3d6f0c47",
    (
        "retailrocket-synthetic",
        "small",
    ): "3b6c557b69ab576558448471a7c8533d14f8acc4ae44ca1d24da27701ec47f69",
    (
        "kuairand-synthetic",
        "small",
    ): "6ca08a48cc6f869febc7c20a82d85d0d3c73bbe2a923123c112b2fa8f1901a50",
}


@pytest.mark.parametrize("engine", ["pandas", "duckdb"])
@pytest.mark.parametrize(("name", "scale"), list(TWINS))
def test_twins_give_the_pinned_arrays_with_either_engine(name, scale, engine) -> None:
    if engine == "duckdb":
        pytest.importorskip("duckdb", reason="DuckDB is in the scale extra")
    dataset = load_dataset(name, scale=scale, seed=0, engine=engine)
    assert dataset_digest(dataset) == TWINS[name, scale]


def test_the_real_retailrocket_sample_gives_the_pinned_arrays(shared_raw) -> None:
    # The sample holds events only (no item properties): the impressions with every property
    # unknown, processed with the default settings.
    from rmtl_env.data.processing import ProcessingConfig, build_processed
    from rmtl_env.data.retailrocket import RetailRocketConfig, RetailRocketFiles, build_impressions

    files = RetailRocketFiles(
        events=shared_raw / "retailrocket" / "events_sample_5000visitors.csv.gz"
    )
    dataset = build_processed(build_impressions(files, RetailRocketConfig()), ProcessingConfig())
    assert dataset_digest(dataset) == REAL_RETAILROCKET


REAL_RETAILROCKET = "b374265e32e36565a53b9ad495e86c0dbacfe138013b72a02d33a198e37ec9d2"
