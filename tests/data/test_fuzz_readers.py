"""Property-based fuzzing of the raw-file readers: a mutated file (cut short, bytes overwritten,
lines dropped, duplicated or swapped) is either read or refused with one of the package's own
documented errors, never a crash from deep inside pandas, pyarrow or numpy."""

from __future__ import annotations

import contextlib
import shutil
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rmtl_env.data import (
    ColumnRoles,
    DataFormatError,
    MissingRawFilesError,
    custom,
    kuairand,
    retailrocket,
)
from rmtl_env.data.processing import ProcessingConfig
from rmtl_env.data.synthetic import write_twin

DOCUMENTED = (DataFormatError, MissingRawFilesError)
FUZZ = settings(max_examples=25, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture])  # fmt: skip


@st.composite
def mutations(draw) -> tuple[str, float, int, bytes]:
    kind = draw(st.sampled_from(["truncate", "overwrite", "drop_lines", "duplicate", "swap"]))
    return (
        kind,
        draw(st.floats(0.0, 1.0)),
        draw(st.integers(1, 40)),
        draw(st.binary(min_size=1, max_size=12)),
    )


def mutate(path: Path, mutation: tuple[str, float, int, bytes]) -> None:
    kind, where, count, noise = mutation
    data = path.read_bytes()
    at = int(where * len(data))
    if kind == "truncate":
        path.write_bytes(data[:at])
    elif kind == "overwrite":
        path.write_bytes(data[:at] + noise + data[at + len(noise) :])
    else:
        lines = data.split(b"\n")
        i = min(int(where * len(lines)), len(lines) - 1)
        if kind == "drop_lines":
            del lines[i : i + count]
        elif kind == "duplicate":
            lines[i:i] = lines[i : i + count]
        else:
            j = min(i + count, len(lines) - 1)
            lines[i], lines[j] = lines[j], lines[i]
        path.write_bytes(b"\n".join(lines))


@pytest.fixture(scope="module")
def twins(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("twins")
    return {name: write_twin(f"{name}-synthetic", root / name, "tiny", 0)
            for name in ("retailrocket", "kuairand")}  # fmt: skip


def fresh_copy(source: Path, tmp_path: Path, n: int) -> Path:
    target = tmp_path / f"copy{n}"
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(source, target)
    return target


COUNTER = iter(range(10**6))


def read_mutated_copy(source: Path, tmp_path: Path, which: str, mutation, read) -> None:
    """Mutate raw file ``which`` in a fresh copy of ``source`` and ``read`` the copied folder;
    only the package's documented errors may come out."""
    folder = fresh_copy(source, tmp_path, next(COUNTER))
    mutate(folder / which, mutation)
    with contextlib.suppress(*DOCUMENTED):
        read(folder)


def _out(folder: Path) -> Path:
    out = folder.parent / f"{folder.name}-processed"
    out.mkdir()
    return out


def read_retailrocket(folder: Path) -> None:
    files = retailrocket.RetailRocketFiles.in_folder(folder)
    config = retailrocket.RetailRocketConfig(category_parent=True)  # the tree is read too
    retailrocket.prepare_retailrocket(files, config, ProcessingConfig(), _out(folder),
                                      progress=False)  # fmt: skip


def read_kuairand(folder: Path) -> None:
    files = kuairand.KuaiRandFiles.in_folder(folder)
    kuairand.prepare_kuairand(files, kuairand.KuaiRandConfig(), ProcessingConfig(), _out(folder),
                              progress=False)  # fmt: skip


@FUZZ
@given(mutation=mutations(), which=st.sampled_from(["events.csv", "item_properties_part1.csv",
                                                     "category_tree.csv"]))  # fmt: skip
def test_retailrocket_reader(twins, tmp_path, mutation, which) -> None:
    read_mutated_copy(twins["retailrocket"], tmp_path, which, mutation, read_retailrocket)


@FUZZ
@given(mutation=mutations(), which=st.sampled_from(["log_standard_4_08_to_4_21_1k.csv",
                                                     "user_features_1k.csv",
                                                     "video_features_basic_1k.csv"]))  # fmt: skip
def test_kuairand_reader(twins, tmp_path, mutation, which) -> None:
    read_mutated_copy(twins["kuairand"], tmp_path, which, mutation, read_kuairand)


@FUZZ
@given(mutation=mutations())
def test_own_log_reader(twins, tmp_path, mutation) -> None:
    log = pd.read_csv(twins["kuairand"] / "log_standard_4_08_to_4_21_1k.csv", nrows=2000)
    path = tmp_path / f"log{next(COUNTER)}.csv"
    log.to_csv(path, index=False)
    mutate(path, mutation)
    roles = ColumnRoles(user="user_id", timestamp="time_ms", labels=["is_click", "long_view"],
                        categorical=["video_id"], numerical=["play_time_ms"])  # fmt: skip
    with contextlib.suppress(*DOCUMENTED):
        custom.prepare_custom(path, roles, ProcessingConfig(), _out(path), "fuzz", progress=False)
