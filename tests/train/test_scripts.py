"""One end-to-end smoke test per script, run as a user runs it (a subprocess, tiny configs)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[2]
TINY = ["--dataset", "kuairand-synthetic", "--scale", "tiny", "--embed-dim", "8",
        "--bottom-dims", "16", "8", "--tower-dims", "8", "--epochs", "1", "--batch-size", "512",
        "--no-progress"]  # fmt: skip


def run(script: str, *args: str) -> subprocess.CompletedProcess:
    command = [sys.executable, str(ROOT / "train" / f"{script}.py"), *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=600)


def test_mtl_baselines(tmp_path: Path) -> None:
    done = run("mtl_baselines", *TINY, "--model", "esmm", "ple", "--seed", "1",
               "--run-dir", str(tmp_path))  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "oracle" in done.stdout and "is_click:AUC" in done.stdout
    assert set(pd.read_csv(tmp_path / "metrics.csv")["method"]) == {"esmm", "ple", "oracle"}
    assert json.loads((tmp_path / "config.json").read_text())["models"] == ["esmm", "ple"]


def test_rmtl_ddpg(tmp_path: Path) -> None:
    done = run("rmtl_ddpg", *TINY, "--backbone", "esmm", "--critic-embed-dim", "8",
               "--critic-batch-size", "512", "--critic-epochs", "1", "--run-dir", str(tmp_path))  # fmt: skip
    assert done.returncode == 0, done.stderr
    for line in ("esmm ", "rmtl-esmm", "oracle", "long_view:s-Logloss", "Stage wall time"):
        assert line in done.stdout
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["rmtl"]["critic_epochs"] == 1 and config["rmtl"]["critic"]["embed_dim"] == 8
    # An in-memory run records no streaming or engine keys: its configuration is as before.
    assert not {"stream", "buffer_rows", "engine"} & set(config)
    assert "dropout_masks" not in config["train"]


def test_dple_sb3(tmp_path: Path) -> None:
    done = run("dple_sb3", *TINY, "--actor-steps", "48", "--actor-batch-size", "32",
               "--critic-batch-size", "256", "--critic-max-epochs", "2", "--run-dir", str(tmp_path))  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "d-ple" in done.stdout and "actor updates at lr 1e-06" in done.stdout
    assert set(pd.read_csv(tmp_path / "metrics.csv")["method"]) == {"ple", "d-ple", "oracle"}


def test_rmtl_ddpg_on_the_27k_twin_out_of_core_and_streamed(tmp_path: Path) -> None:
    twin = ["--dataset", "kuairand-27k-synthetic", "--scale", "1/4000"]
    done = run("rmtl_ddpg", *TINY, *twin, "--backbone", "esmm", "--critic-embed-dim", "8",
               "--critic-batch-size", "512", "--critic-epochs", "1", "--stream",
               "--buffer-rows", "1000", "--dropout-masks", "int16", "--run-dir", str(tmp_path))  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "rmtl-esmm" in done.stdout and "oracle" in done.stdout
    config = json.loads((tmp_path / "config.json").read_text())
    assert (config["dataset"], config["scale"]) == ("kuairand-27k-synthetic", "1/4000")
    assert "engine" not in config  # retired: DuckDB prepares every source
    assert config["stream"] is True and config["buffer_rows"] == 1000
    assert config["train"]["dropout_masks"] == "int16"
