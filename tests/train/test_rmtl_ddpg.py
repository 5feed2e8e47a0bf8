"""Subprocess smoke tests of ``train/rmtl_ddpg.py`` on the tiny KuaiRand twin: outputs, resume."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "train" / "rmtl_ddpg.py"
TINY = [
    "--dataset",
    "kuairand-synthetic",
    "--scale",
    "tiny",
    "--embed-dim",
    "8",
    "--bottom-dims",
    "32",
    "16",
    "--tower-dims",
    "8",
    "--batch-size",
    "512",
    "--epochs",
    "3",
    "--critic-embed-dim",
    "8",
    "--critic-batch-size",
    "512",
    "--critic-epochs",
    "3",
    "--no-progress",
]


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=600
    )


@pytest.fixture(scope="module")
def finished_run(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[Path, subprocess.CompletedProcess]:
    run_dir = tmp_path_factory.mktemp("rmtl") / "run"
    done = run(*TINY, "--backbone", "esmm", "--seed", "2", "--run-dir", str(run_dir))
    assert done.returncode == 0, done.stderr
    return run_dir, done


def test_writes_the_run_folder_and_prints_the_table(finished_run) -> None:
    run_dir, done = finished_run
    for line in ("esmm ", "rmtl-esmm", "oracle", "is_click:AUC", "long_view:s-Logloss"):
        assert line in done.stdout
    metrics = pd.read_csv(run_dir / "metrics.csv")
    assert list(dict.fromkeys(metrics["method"])) == ["esmm", "rmtl-esmm", "oracle"]
    assert metrics[["auc", "logloss", "s_logloss"]].notna().all().all()
    config = json.loads((run_dir / "config.json").read_text())
    assert config["rmtl"]["gamma"] == 0.95 and config["rmtl"]["lam"] == 0.7
    assert config["rmtl"]["critic_fixed_epochs"] == 3
    for name in ("backbone", "critics", "rmtl_backbone"):
        assert (run_dir / "checkpoints" / f"{name}.pt").is_file()
    for plot in ("critic_training", "loss_weights", "learning_curves", "metrics"):
        assert (run_dir / f"{plot}.png").stat().st_size > 1000
    summary = json.loads((run_dir / "metrics.json").read_text())
    assert set(summary["stage_seconds"]) == {"pretrain", "critics", "polish", "evaluate"}
    assert summary["loss_weights_train"]["is_click"]["min"] >= 1.0
    assert len(pd.read_csv(run_dir / "critic_history.csv")) == 3


def test_rerun_resumes_from_finished_stages(finished_run) -> None:
    run_dir, first = finished_run
    again = run(*TINY, "--backbone", "esmm", "--seed", "2", "--run-dir", str(run_dir))
    assert again.returncode == 0, again.stderr
    for stage in ("pretrain", "critics", "polish"):
        assert f"[{stage}] already finished" in again.stdout
    table = lambda out: out[out.index("Test split") : out.index("Stage wall time")]  # noqa: E731
    assert table(again.stdout) == table(first.stdout)


def test_a_stage_whose_output_is_gone_is_redone_with_everything_after_it(finished_run) -> None:
    run_dir, first = finished_run
    (run_dir / "checkpoints" / "critics.pt").unlink()
    again = run(*TINY, "--backbone", "esmm", "--seed", "2", "--run-dir", str(run_dir))
    assert again.returncode == 0, again.stderr
    assert "[pretrain] already finished" in again.stdout
    assert (
        "[critics] finished before, but" in again.stdout and "critics.pt is missing" in again.stdout
    )
    assert "[critics] done in" in again.stdout and "[polish] done in" in again.stdout
    assert (run_dir / "checkpoints" / "critics.pt").is_file()
    table = lambda out: out[out.index("Test split") : out.index("Stage wall time")]  # noqa: E731
    assert table(again.stdout) == table(first.stdout)  # same seed: the same critics and polish


def test_a_different_configuration_is_refused(finished_run) -> None:
    run_dir, _ = finished_run
    done = run(
        *TINY, "--backbone", "esmm", "--seed", "2", "--lam", "0.3", "--run-dir", str(run_dir)
    )
    assert done.returncode != 0
    assert "different configuration" in done.stderr


def test_help_documents_every_flag() -> None:
    done = run("--help")
    assert done.returncode == 0
    for flag in (
        "--gamma",
        "--lam",
        "--tau",
        "--preset",
        "--weight-variant",
        "--critics-from",
        "--backbone",
        "--dataset",
        "--seed",
        "--device",
        "--actor-update",
    ):
        assert flag in done.stdout
