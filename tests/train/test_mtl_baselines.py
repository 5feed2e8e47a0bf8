"""Subprocess smoke test of ``train/mtl_baselines.py`` on the tiny KuaiRand twin."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[2]


def test_two_models_write_a_complete_run_folder(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    command = [
        sys.executable,
        str(ROOT / "train" / "mtl_baselines.py"),
        "--model",
        "esmm",
        "ple",
        "--dataset",
        "kuairand-synthetic",
        "--scale",
        "tiny",
        "--seed",
        "1",
        "--epochs",
        "2",
        "--batch-size",
        "512",
        "--embed-dim",
        "8",
        "--bottom-dims",
        "32",
        "16",
        "--tower-dims",
        "8",
        "--run-dir",
        str(run_dir),
        "--no-progress",
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "oracle" in done.stdout and "is_click:AUC" in done.stdout
    config = json.loads((run_dir / "config.json").read_text())
    assert config["models"] == ["esmm", "ple"] and config["seed"] == 1
    environment = config["environment"]
    assert environment["logical_cpus"] >= 1 and environment["torch_threads"] >= 1
    assert environment["cpu"]
    # x86 and ARM CPUs flush subnormals: a saturated model would otherwise crawl.
    assert environment["flush_denormal"] is True
    metrics = pd.read_csv(run_dir / "metrics.csv")
    assert set(metrics["method"]) == {"esmm", "ple", "oracle"}
    assert set(metrics["task"]) == {"is_click", "long_view"}
    assert metrics[["auc", "logloss", "s_logloss"]].notna().all().all()
    assert (run_dir / "checkpoints" / "esmm.pt").is_file()
    assert (run_dir / "checkpoints" / "ple.pt").is_file()
    assert (run_dir / "learning_curves.png").stat().st_size > 1000
    assert len(pd.read_csv(run_dir / "history.csv")) == 4


def test_unknown_model_is_a_clear_error() -> None:
    command = [sys.executable, str(ROOT / "train" / "mtl_baselines.py"), "--model", "xgboost"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "unknown ['xgboost']" in done.stderr
