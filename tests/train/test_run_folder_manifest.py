"""A run folder cannot be fooled: a resume must match the recorded configuration, package
version and data, and every checkpoint must be as its stage wrote it (``manifest.json``)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rmtl_bench.run_folder import DifferentConfig, RunFolder

ROOT = Path(__file__).resolve().parents[2]

CONFIG = {"job": "baselines", "dataset": "twin", "train": {"lr": 0.001, "epochs": 3}, "seed": 0}


def run_stage(folder: Path, config=CONFIG, data="key-1", fresh=False) -> RunFolder:
    run = RunFolder(folder, config, data=data, fresh=fresh).open()

    def write() -> dict:
        (folder / "checkpoints").mkdir(exist_ok=True)
        (folder / "checkpoints" / "ple.pt").write_bytes(b"weights")
        return {}

    run.stage("pretrain", lambda: (folder / "checkpoints" / "ple.pt").read_bytes(), write)
    return run


def test_a_resume_matches_or_names_what_differs(tmp_path) -> None:
    folder = tmp_path / "run"
    run_stage(folder)
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["data"] == "key-1" and list(manifest["stages"]["pretrain"]) == ["ple.pt"]
    run_stage(folder)  # the same request resumes
    other = {**CONFIG, "train": {"lr": 0.01, "epochs": 3}, "seed": 1}
    with pytest.raises(DifferentConfig, match=r"\(seed, train.lr differ\).*--fresh"):
        run_stage(folder, other)
    with pytest.raises(DifferentConfig, match="written with data 'key-1', this run has 'key-2'"):
        run_stage(folder, data="key-2")
    manifest["version"] = "0.0.1"
    (folder / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(DifferentConfig, match="package version '0.0.1'"):
        run_stage(folder)


def test_a_changed_checkpoint_is_refused_and_fresh_starts_over(tmp_path) -> None:
    folder = tmp_path / "run"
    run_stage(folder)
    (folder / "checkpoints" / "ple.pt").write_bytes(b"someone else's weights")
    with pytest.raises(DifferentConfig, match=r"ple.pt changed since stage 'pretrain' wrote it"):
        run_stage(folder)
    (folder / "notes.txt").write_text("a stale file of the old run")
    run_stage(folder, data="key-2", fresh=True)  # starts over: no refusal, nothing old left
    assert not (folder / "notes.txt").exists()
    assert (folder / "checkpoints" / "ple.pt").read_bytes() == b"weights"
    assert json.loads((folder / "manifest.json").read_text())["data"] == "key-2"


def test_fresh_never_clears_a_folder_that_holds_no_run(tmp_path) -> None:
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "thesis.tex").write_text("not a run")
    run_stage(folder, fresh=True)
    assert (folder / "thesis.tex").is_file()


def test_a_full_disk_names_the_stage_and_the_file_and_leaves_nothing_partial(
    tmp_path, monkeypatch
) -> None:
    import errno
    import os

    from rmtl_env.data import io

    class FullDisk:
        def __init__(self, fd, mode):
            os.close(fd)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def write(self, payload):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    folder = tmp_path / "run"
    run = RunFolder(folder, CONFIG, data="key").open()
    monkeypatch.setattr(io.os, "fdopen", FullDisk)
    target = folder / "checkpoints" / "ple.pt"
    with pytest.raises(OSError) as error:
        run.stage("pretrain", lambda: None, lambda: io.atomic_write_bytes(target, b"w") or {})
    assert str(error.value) == (
        f"[Errno 28] stage 'pretrain' of {folder} stopped: cannot write {target}: "
        "No space left on device"
    )
    assert list((folder / "checkpoints").iterdir()) == []  # no file, no temporary file
    assert not (folder / "stages").exists()  # the stage is not recorded: a resume redoes it
