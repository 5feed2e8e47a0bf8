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
        "--epochs", "2", "--batch-size", "512", "--actor-steps", "300", "--actor-batch-size", "32",
        "--critic-batch-size", "256", "--critic-max-epochs", "5",
        "--run-dir", str(run_dir), "--no-progress",
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert "d-ple" in done.stdout and "actor updates at lr 1e-06" in done.stdout
    metrics = pd.read_csv(run_dir / "metrics.csv")
    assert set(metrics["method"]) == {"ple", "d-ple", "oracle"}
    assert metrics[["auc", "logloss"]].notna().all().all()
    summary = json.loads((run_dir / "metrics.json").read_text())
    assert summary["env_steps_per_second"] > 0 and summary["actor_lr"] == 1e-6
    assert summary["dple"]["actor_updates"] > 0 and 1 <= summary["dple"]["critic_epochs"] <= 5
    assert summary["mean_abs_prediction_change_test"] > 0  # the actor was trained
    config = json.loads((run_dir / "config.json").read_text())
    assert config["train"]["batch_size"] == 512 and config["dple"]["actor_batch_size"] == 32
    assert (run_dir / "critic_phase.png").stat().st_size > 1000
    for name in ("backbone.pt", "dple_backbone.pt", "ddpg.zip"):
        assert (run_dir / "checkpoints" / name).is_file()
    assert any((run_dir / "tensorboard").rglob("events.out.tfevents.*"))
