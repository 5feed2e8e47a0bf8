"""Subprocess smoke test of ``train/dple_sb3.py`` on the tiny KuaiRand twin."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[2]


def test_dple_run_folder(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    command = [
        sys.executable, str(ROOT / "train" / "dple_sb3.py"), "--dataset", "kuairand-synthetic",
        "--scale", "tiny", "--embed-dim", "8", "--bottom-dims", "16", "8", "--tower-dims", "8",
        "--epochs", "2", "--total-steps", "300", "--learning-starts", "100", "--batch-size", "32",
        "--run-dir", str(run_dir), "--no-progress",
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert "d-ple" in done.stdout and "steps/s" in done.stdout
    metrics = pd.read_csv(run_dir / "metrics.csv")
    assert set(metrics["method"]) == {"ple", "d-ple", "oracle"}
    assert metrics[["auc", "logloss"]].notna().all().all()
    summary = json.loads((run_dir / "metrics.json").read_text())
    assert summary["env_steps_per_second"] > 0
    for name in ("backbone.pt", "dple_backbone.pt", "ddpg.zip"):
        assert (run_dir / "checkpoints" / name).is_file()
    assert any((run_dir / "tensorboard").rglob("events.out.tfevents.*"))
