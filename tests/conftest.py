"""Shared fixtures: a private cache folder for the whole run and the real raw samples."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

SHARED_RAW = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "raw"


@pytest.fixture(scope="session", autouse=True)
def private_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Point ``$RMTL_DATA_DIR`` at a fresh folder so tests never touch a user's cache."""
    folder = tmp_path_factory.mktemp("rmtl-cache")
    previous = os.environ.get("RMTL_DATA_DIR")
    os.environ["RMTL_DATA_DIR"] = str(folder)
    yield folder
    if previous is None:
        os.environ.pop("RMTL_DATA_DIR", None)
    else:
        os.environ["RMTL_DATA_DIR"] = previous


@pytest.fixture(scope="session")
def shared_raw() -> Path:
    """``../shared/data/raw`` beside the checkout; tests that need it skip when it is absent."""
    if not SHARED_RAW.is_dir():
        pytest.skip(f"real raw samples not found at {SHARED_RAW} (a user's clone has no ../shared)")
    return SHARED_RAW


@pytest.fixture(scope="session")
def rr_small():
    from rmtl_env.data import load_dataset

    return load_dataset("retailrocket-synthetic", scale="small", seed=0)


@pytest.fixture(scope="session")
def kr_small():
    from rmtl_env.data import load_dataset

    return load_dataset("kuairand-synthetic", scale="small", seed=0)
