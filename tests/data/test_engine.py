"""The DuckDB engine: KuaiRand preparation, bounded memory, work folders and error messages."""

from __future__ import annotations

import pandas as pd
import pytest

from rmtl_env.data import load_dataset
from rmtl_env.data.errors import DataFormatError


def tiny_kuairand_raw(tmp_path):
    """A private copy of the tiny KuaiRand twin's raw files, to damage."""
    from rmtl_env.data.catalog import synthetic_raw_dir

    folder = tmp_path / "raw"
    folder.mkdir()
    for path in synthetic_raw_dir("kuairand-synthetic", "tiny", 0).iterdir():
        (folder / path.name).write_bytes(path.read_bytes())
    return folder


def test_a_tiny_memory_limit_gives_the_same_rows() -> None:
    """100 MB and one thread (the small twin's raw tables alone are larger): DuckDB spills."""
    from test_processed_digest import CASES, dataset_digest

    digest, name, params = CASES["kuairand-synthetic small"]
    ours = load_dataset(name, memory_limit="100MB", threads=1, refresh=True, **params)
    assert ours.meta["params"]["engine"]["memory_limit"] == "100MB"
    assert dataset_digest(ours) == digest


def test_capped_and_hashed_vocabularies() -> None:
    params = {
        "scale": "tiny",
        "include_video_id": True,
        "max_vocab": {"author_id": 50},
        "hash_buckets": {"video_id": 997, "user_id": 31},
    }
    data = load_dataset("kuairand-synthetic", **params)
    dims = dict(zip(data.categorical_fields, data.field_dims, strict=True))
    assert dims["author_id"] == 51 and dims["video_id"] == 998 and dims["user_id"] == 32
    assert data.meta["hashed_fields"] == {"video_id": 997, "user_id": 31}
    assert set(data.vocabulary["field"]).isdisjoint({"video_id", "user_id"})


def test_bad_labels_name_the_file_and_column(tmp_path) -> None:
    from rmtl_env.data.kuairand import (
        STANDARD_LOGS,
        KuaiRandConfig,
        KuaiRandFiles,
        prepare_kuairand,
    )
    from rmtl_env.data.processing import ProcessingConfig

    folder = tiny_kuairand_raw(tmp_path)
    log = pd.read_csv(folder / STANDARD_LOGS[1])
    log.loc[3, "long_view"] = 2
    log.to_csv(folder / STANDARD_LOGS[1], index=False)
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(
        DataFormatError,
        match=f"{STANDARD_LOGS[1]}: label column 'long_view' has 1 value\\(s\\) outside",
    ):
        prepare_kuairand(KuaiRandFiles.in_folder(folder), KuaiRandConfig(), ProcessingConfig(), out)


def test_an_empty_file_is_named_not_a_pyarrow_error(tmp_path) -> None:
    from rmtl_env.data.catalog import synthetic_raw_dir
    from rmtl_env.data.kuairand import (
        STANDARD_LOGS,
        KuaiRandConfig,
        KuaiRandFiles,
        prepare_kuairand,
    )
    from rmtl_env.data.processing import ProcessingConfig

    raw = synthetic_raw_dir("kuairand-synthetic", "tiny", 0)
    for empty in (STANDARD_LOGS[0], "video_features_basic_1k.csv"):
        folder = tmp_path / f"raw-{empty}"
        folder.mkdir()
        for path in raw.iterdir():
            (folder / path.name).write_bytes(b"" if path.name == empty else path.read_bytes())
        out = tmp_path / f"out-{empty}"
        out.mkdir()
        files = KuaiRandFiles.in_folder(folder)
        with pytest.raises(DataFormatError, match=f"file {folder / empty} is empty"):
            prepare_kuairand(files, KuaiRandConfig(), ProcessingConfig(), out)


def test_readme_scale_example(run_readme) -> None:
    ns = run_readme("# Scale", {'scale="1/20"': 'scale="1/4000"'})
    data = ns["data"]
    dims = dict(zip(data.categorical_fields, data.field_dims, strict=True))
    assert dims["video_id"] == 1_000_001 and dims["author_id"] <= 200_001
    assert data.meta["params"]["engine"]["memory_limit"] == "4GB"


def test_a_memory_limit_too_small_is_named(tmp_path) -> None:
    from rmtl_env.data.catalog import synthetic_raw_dir
    from rmtl_env.data.kuairand import KuaiRandConfig, KuaiRandFiles, prepare_kuairand
    from rmtl_env.data.processing import ProcessingConfig

    files = KuaiRandFiles.in_folder(synthetic_raw_dir("kuairand-synthetic", "small", 0))
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(MemoryError, match="memory_limit='8MB' with 1 thread.*raise --memory-limit"):
        prepare_kuairand(files, KuaiRandConfig(), ProcessingConfig(), out, memory_limit="8MB",
                         threads=1, progress=False)  # fmt: skip


def test_a_header_only_log_is_refused(tmp_path) -> None:
    from rmtl_env.data.kuairand import (
        STANDARD_LOGS,
        KuaiRandConfig,
        KuaiRandFiles,
        prepare_kuairand,
    )
    from rmtl_env.data.processing import ProcessingConfig

    folder = tiny_kuairand_raw(tmp_path)
    header = (folder / STANDARD_LOGS[0]).read_text().splitlines()[0]
    (folder / STANDARD_LOGS[0]).write_text(header + "\n")
    out = tmp_path / "out"
    out.mkdir()
    files = KuaiRandFiles.in_folder(folder)
    with pytest.raises(DataFormatError, match=f"{STANDARD_LOGS[0]} has a header but no data rows"):
        prepare_kuairand(files, KuaiRandConfig(), ProcessingConfig(), out, progress=False)
    assert not list(tmp_path.glob(".duckdb-*"))  # the failed run's work folder is gone


@pytest.mark.parametrize("limit", ["-5GB", "0MB", "4 parsecs", "", "nan GB"])
def test_memory_limits_and_threads_are_checked_before_any_work(limit, tmp_path, capsys) -> None:
    from rmtl_env.data.__main__ import main

    with pytest.raises(ValueError, match=f"memory_limit must be a positive size.*got {limit!r}"):
        load_dataset("kuairand-synthetic", scale="tiny", memory_limit=limit,
                     refresh=True)  # fmt: skip
    with pytest.raises(ValueError, match="threads must be an integer >= 1, got 0"):
        load_dataset("kuairand-synthetic", scale="tiny", threads=0)
    args = ["prepare", "kuairand-synthetic", "--scale", "tiny"]
    with pytest.raises(SystemExit) as exit_:
        main([*args, f"--memory-limit={limit}"])
    assert exit_.value.code == 2 and "--memory-limit must be a positive size" in (
        capsys.readouterr().err
    )
    with pytest.raises(SystemExit):
        main([*args, "--threads=-1"])
    assert "--threads must be an integer >= 1, got '-1'" in capsys.readouterr().err


def test_a_dead_runs_work_folder_is_removed_and_sigterm_cleans_up(tmp_path) -> None:
    import os
    import signal
    import subprocess

    from rmtl_env.data.engine import work_folder

    dead = subprocess.Popen(["true"])
    dead.wait()
    stale = tmp_path / f".duckdb-{dead.pid}-abc"
    (stale / "spill").mkdir(parents=True)
    live = tmp_path / f".duckdb-{os.getppid()}-xyz"  # a live process's folder stays
    live.mkdir()
    with pytest.raises(KeyboardInterrupt), work_folder(tmp_path) as work:
        assert not stale.exists() and live.exists() and work.is_dir()
        os.kill(os.getpid(), signal.SIGTERM)
    assert not work.exists()
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the handler is put back


def test_a_wrong_value_is_named_in_our_words_not_duckdbs(tmp_path) -> None:
    from rmtl_env.data.engine import csv_problem
    from rmtl_env.data.kuairand import (
        STANDARD_LOGS,
        KuaiRandConfig,
        KuaiRandFiles,
        prepare_kuairand,
    )
    from rmtl_env.data.processing import ProcessingConfig

    folder = tiny_kuairand_raw(tmp_path)
    lines = (folder / STANDARD_LOGS[0]).read_text().splitlines()
    columns = lines[0].split(",")
    cells = lines[5].split(",")
    cells[columns.index("user_id")] = "abc"
    lines[5] = ",".join(cells)
    (folder / STANDARD_LOGS[0]).write_text("\n".join(lines) + "\n")
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(DataFormatError) as error:
        prepare_kuairand(KuaiRandFiles.in_folder(folder), KuaiRandConfig(), ProcessingConfig(),
                         out, progress=False)  # fmt: skip
    message = str(error.value)
    assert message == (
        f"interaction log file {folder / STANDARD_LOGS[0]}: column 'user_id' has value 'abc' at "
        "line 6; expected an integer"
    )
    # Any other DuckDB error: its first line, without the error class or the option dump.
    other = (
        "Invalid Input Error: CSV Error on Line: 9\nOriginal Line: 4,5\nExpected 3 columns\n  x = ,"
    )
    assert csv_problem(other) == "cannot be read: Expected 3 columns (line 9)"
    assert csv_problem("Binder Error: no such column\nLINE 1: select") == (
        "cannot be read: no such column"
    )


def test_split_statistics_and_the_oracle_match_scikit_learn() -> None:
    from sklearn.metrics import log_loss, roc_auc_score

    data = load_dataset("kuairand-synthetic", scale="tiny")
    for name, entry in data.meta["splits"].items():
        part = data.frame[data.frame["split"] == name]
        assert entry["impressions"] == len(part)
        assert entry["sessions"] == part["session_id"].nunique()
        for task in data.tasks:
            labels, probs = part[f"label:{task}"], part[f"p_true:{task}"].astype("float64")
            assert entry["label_rate"][task] == pytest.approx(labels.mean())
            oracle = entry["oracle"][task]
            assert oracle["auc"] == pytest.approx(roc_auc_score(labels, probs), abs=1e-12)
            clipped = probs.clip(1e-7, 1 - 1e-7)
            assert oracle["logloss"] == pytest.approx(log_loss(labels, clipped), rel=1e-6)


@pytest.mark.parametrize(
    ("table", "edit", "message"),
    [
        (
            "video_features_basic_1k.csv",
            lambda f: pd.concat([f, f.iloc[:1]]),
            "column 'video_id' must be unique",
        ),
        (
            "user_features_1k.csv",
            lambda f: f.assign(user_id=f["user_id"].astype(object).where(f.index != 2, "")),
            r"column 'user_id' has 1 empty value\(s\)",
        ),
        (
            "user_features_1k.csv",
            lambda f: f.assign(
                follow_user_num=f["follow_user_num"].astype(object).where(f.index != 4, "many")
            ),
            "column 'follow_user_num' has value 'many'",
        ),
    ],
)
def test_a_bad_feature_table_is_named(tmp_path, table, edit, message) -> None:
    from rmtl_env.data.kuairand import KuaiRandConfig, KuaiRandFiles, prepare_kuairand
    from rmtl_env.data.processing import ProcessingConfig

    folder = tiny_kuairand_raw(tmp_path)
    edit(pd.read_csv(folder / table)).to_csv(folder / table, index=False)
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(DataFormatError, match=message) as error:
        prepare_kuairand(KuaiRandFiles.in_folder(folder), KuaiRandConfig(), ProcessingConfig(),
                         out, progress=False)  # fmt: skip
    assert str(folder / table) in str(error.value)
