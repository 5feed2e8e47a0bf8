"""``torchrun --nproc_per_node=2 train/rmtl_ddpg.py`` as a user runs it: every stage data-parallel
on gloo, rank 0 alone writing the run folder, resuming as one process does, and the metrics of
the single-process run on the same data."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# Dropout off in both networks: its masks are drawn per process, so a rank's share of a batch
# would not see the single process's masks.
JOB = ["--dataset", "kuairand-synthetic", "--scale", "tiny", "--backbone", "esmm",
       "--embed-dim", "8", "--bottom-dims", "16", "8", "--tower-dims", "8", "--epochs", "2",
       "--batch-size", "512", "--dropout", "0", "--critic-embed-dim", "8", "--critic-dropout",
       "0", "--critic-batch-size", "512", "--critic-epochs", "2", "--no-progress"]  # fmt: skip
ONE_THREAD = {**os.environ, "OMP_NUM_THREADS": "1"}  # what torchrun gives each rank


def rmtl(*args: str, ranks: int = 0) -> subprocess.CompletedProcess:
    """``train/rmtl_ddpg.py`` in one process (``ranks`` 0) or under torchrun."""
    launcher = [sys.executable]
    if ranks:
        launcher += ["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={ranks}"]
    command = [*launcher, str(ROOT / "train" / "rmtl_ddpg.py"), *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=600, env=ONE_THREAD)


def split_metrics(folder: Path) -> dict:
    return json.loads((folder / "metrics.json").read_text())["test"]


@pytest.mark.slow
def test_torchrun_two_ranks_match_one_process_and_resume(tmp_path: Path) -> None:
    two, one = tmp_path / "two", tmp_path / "one"
    done = rmtl(*JOB, "--run-dir", str(two), ranks=2)
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("Test split of") == 1  # rank 0 alone prints
    names = sorted(p.relative_to(two).as_posix() for p in two.rglob("*") if p.is_file())
    assert names == sorted(
        [
            "config.json",
            "manifest.json",
            "metrics.json",
            "metrics.csv",
            "critic_history.csv",
            "stages/pretrain.json",
            "stages/critics.json",
            "stages/polish.json",
            "checkpoints/backbone.pt",
            "checkpoints/critics.pt",
            "checkpoints/rmtl_backbone.pt",
            "critic_training.png",
            "learning_curves.png",
            "loss_weights.png",
            "metrics.png",
        ]
    )  # fmt: skip  (and no temporary file of a second writer)

    alone = rmtl(*JOB, "--run-dir", str(one))
    assert alone.returncode == 0, alone.stderr
    parallel, single = split_metrics(two), split_metrics(one)
    assert parallel["oracle"] == single["oracle"]
    for method in ("esmm", "rmtl-esmm"):
        for task, metrics in single[method].items():
            # Measured: the backbone's metrics 4e-10 apart, RMTL's 4.1e-6 after the critics and
            # the polish (the gradient average sums floats in another order).
            tolerance = 1e-6 if method == "esmm" else 1e-4
            for name, value in metrics.items():
                assert abs(parallel[method][task][name] - value) < tolerance, (method, task, name)

    again = rmtl(*JOB, "--run-dir", str(two), ranks=2)
    assert again.returncode == 0, again.stderr
    for stage in ("pretrain", "critics", "polish"):
        assert f"[{stage}] already finished in this run folder" in again.stdout
    assert split_metrics(two) == parallel

    other = rmtl(*JOB, "--epochs", "3", "--run-dir", str(two), ranks=2)  # another configuration
    assert other.returncode != 0  # every rank raises rank 0's decision; none waits in a collective
    assert "holds a run with a different configuration" in other.stderr


def test_torchrun_needs_one_run_folder_for_all_ranks() -> None:
    done = rmtl(*JOB, ranks=2)
    assert done.returncode != 0
    assert "under torchrun give every rank the same --run-dir" in done.stderr
