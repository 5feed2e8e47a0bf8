"""The jobs behind the scripts and the benchmark, in-process on the tiny KuaiRand twin: run
folders, resume, redo of stages whose outputs are gone or corrupt, refusal of another config."""

from __future__ import annotations

import contextlib
import io
import json
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest

from agents.critic import CriticConfig
from agents.dple import DPLEConfig
from agents.models import ModelConfig
from agents.pipeline import DataConfig
from agents.rmtl import PRESETS
from agents.trainer import TrainConfig
from rmtl_bench import jobs
from rmtl_bench.run_folder import DifferentConfig

JOB = jobs.Job(DataConfig("kuairand-synthetic", "tiny"), seed=2, device="cpu")
MODEL = ModelConfig(embed_dim=8, bottom_dims=(32, 16), tower_dims=(8,))
TRAIN = TrainConfig(epochs=3, batch_size=512, seed=2)
RMTL = replace(PRESETS["paper"], critic_batch_size=512, critic_epochs=3,
               critic=CriticConfig(embed_dim=8), seed=2)  # fmt: skip


def quiet(fn, *args, **kwargs) -> tuple[object, str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        result = fn(*args, **kwargs)
    return result, out.getvalue()


def rmtl(folder: Path, **changes) -> tuple[dict, str]:
    return quiet(jobs.run_rmtl, folder, JOB, "esmm", MODEL, TRAIN, replace(RMTL, **changes))


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    folder = tmp_path_factory.mktemp("rmtl") / "run"
    results, _ = rmtl(folder)
    return folder, results


def test_rmtl_writes_the_run_folder(finished) -> None:
    folder, results = finished
    assert list(results) == ["esmm", "rmtl-esmm", "oracle"]
    metrics = pd.read_csv(folder / "metrics.csv")
    assert list(dict.fromkeys(metrics["method"])) == ["esmm", "rmtl-esmm", "oracle"]
    assert metrics[["auc", "logloss", "s_logloss"]].notna().all().all()
    config = json.loads((folder / "config.json").read_text())
    assert config["rmtl"]["gamma"] == 0.95 and config["rmtl"]["lam"] == 0.7
    assert config["rmtl"]["critic_epochs"] == 3 and config["environment"]["torch_threads"] >= 1
    for name in ("backbone", "critics", "rmtl_backbone"):
        assert (folder / "checkpoints" / f"{name}.pt").is_file()
    for plot in ("critic_training", "loss_weights", "learning_curves", "metrics"):
        assert (folder / f"{plot}.png").stat().st_size > 1000
    summary = json.loads((folder / "metrics.json").read_text())
    assert set(summary["stage_seconds"]) == {"pretrain", "critics", "polish", "evaluate"}
    assert summary["loss_weights_train"]["is_click"]["min"] >= 1.0 and summary["seconds"] > 0
    assert len(pd.read_csv(folder / "critic_history.csv")) == 3
    scores = summary["policy_scores"]  # evaluate_policy's, from the test predictions
    assert set(scores) == {"esmm", "rmtl-esmm"}
    assert all(s["mean_return"] < 0 and s["score"] is not None for s in scores.values())


def test_rerun_resumes_every_stage(finished) -> None:
    folder, results = finished
    again, out = rmtl(folder)
    for stage in ("pretrain", "critics", "polish"):
        assert f"[{stage}] already finished" in out
    assert again == results


@pytest.mark.parametrize("damage", ["delete", "truncate"])
def test_a_stage_whose_output_does_not_load_is_redone_with_every_later_one(
    finished, tmp_path: Path, damage: str
) -> None:
    source, results = finished
    folder = tmp_path / "run"
    folder.mkdir()
    for path in source.rglob("*"):
        if path.is_file():
            (folder / path.relative_to(source)).parent.mkdir(parents=True, exist_ok=True)
            (folder / path.relative_to(source)).write_bytes(path.read_bytes())
    critics = folder / "checkpoints" / "critics.pt"
    if damage == "delete":
        critics.unlink()
    else:  # changed since its stage wrote it: refused (manifest.json), unless started afresh
        critics.write_bytes(critics.read_bytes()[:100])
        with pytest.raises(DifferentConfig, match="critics.pt changed since stage 'critics'"):
            rmtl(folder)
        (folder / "manifest.json").unlink()  # a folder of an older version: no manifest
    again, out = rmtl(folder)
    assert "[pretrain] already finished" in out
    assert "[critics] finished before, but its output does not load" in out
    assert "[critics] done in" in out and "[polish] done in" in out
    assert again == results  # same seed: the same critics and the same polish


def test_a_different_configuration_is_refused(finished) -> None:
    folder, _ = finished
    with pytest.raises(DifferentConfig, match="different configuration"):
        rmtl(folder, lam=0.3)


def test_baselines_folder(tmp_path: Path) -> None:
    results, _ = quiet(jobs.run_baselines, tmp_path, JOB, ["esmm", "ple"], MODEL, TRAIN)
    assert list(results) == ["esmm", "ple", "oracle"]
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["models"] == ["esmm", "ple"] and config["seed"] == 2
    environment = config["environment"]
    assert environment["logical_cpus"] >= 1 and environment["cpu"]
    # x86 and ARM CPUs flush subnormals: a saturated model would otherwise crawl.
    assert environment["flush_denormal"] is True
    assert set(pd.read_csv(tmp_path / "metrics.csv")["task"]) == {"is_click", "long_view"}
    for name in ("esmm", "ple"):
        assert (tmp_path / "checkpoints" / f"{name}.pt").is_file()
    assert (tmp_path / "learning_curves.png").stat().st_size > 1000
    assert len(pd.read_csv(tmp_path / "history.csv")) == 6
    again, out = quiet(jobs.run_baselines, tmp_path, JOB, ["esmm", "ple"], MODEL, TRAIN)
    assert again == results and "[pretrain-ple] already finished" in out


def test_dple_folder(tmp_path: Path) -> None:
    dple = DPLEConfig(actor_steps=300, actor_batch_size=32, critic_batch_size=256,
                      critic_max_epochs=5)  # fmt: skip
    model = ModelConfig(embed_dim=8, bottom_dims=(16, 8), tower_dims=(8,))
    results, out = quiet(jobs.run_dple, tmp_path, JOB, dple, "ple", model, TRAIN)
    assert list(results) == ["ple", "d-ple", "oracle"] and "actor updates at lr 1e-06" in out
    summary = json.loads((tmp_path / "metrics.json").read_text())
    assert summary["env_steps_per_second"] > 0 and summary["actor_lr"] == 1e-6
    assert summary["dple"]["actor_updates"] > 0 and 1 <= summary["dple"]["critic_epochs"] <= 5
    assert summary["mean_abs_prediction_change_test"] > 0  # the actor was trained
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["train"]["batch_size"] == 512 and config["dple"]["actor_batch_size"] == 32
    assert (tmp_path / "critic_phase.png").stat().st_size > 1000
    for name in ("backbone.pt", "dple_backbone.pt", "ddpg.zip"):
        assert (tmp_path / "checkpoints" / name).is_file()
    assert any((tmp_path / "tensorboard").rglob("events.out.tfevents.*"))


def test_dple_job_refuses_streaming_before_any_stage(tmp_path) -> None:
    from agents.pipeline import DataConfig

    job = jobs.Job(DataConfig("kuairand-synthetic", scale="tiny", stream=True))
    with pytest.raises(SystemExit, match="run train/dple_sb3.py without --stream"):
        jobs.run_dple(tmp_path / "run", job)
    assert not (tmp_path / "run").exists()  # refused before the folder or any stage


def test_a_checkpoints_architecture_is_what_the_run_records(tmp_path: Path) -> None:
    # The backbone's dimensions come from the checkpoint: the run folder records those, and a
    # command that asks for other ones (or another backbone) is refused naming both.
    from agents.checkpoint import CheckpointError, save_model
    from agents.models import build_model
    from rmtl_bench.run_folder import read_json
    from rmtl_env.data import load_dataset

    data = load_dataset("kuairand-synthetic", scale="tiny")
    small = ModelConfig(embed_dim=4, bottom_dims=(8,), tower_dims=(4,), num_experts=2)
    network = build_model("ple", data.field_dims, len(data.numerical_fields), 2,
                          **small.to_dict())  # fmt: skip
    checkpoint = save_model(network, tmp_path / "ple.pt")
    with pytest.raises(CheckpointError, match="holds a ple backbone, but the command asks for "
                                              "'esmm'"):  # fmt: skip
        jobs.run_rmtl(tmp_path / "a", JOB, "esmm", small, TRAIN, RMTL, checkpoint)
    with pytest.raises(CheckpointError, match=r"asks for embed_dim 16 \(checkpoint: 4\)"):
        jobs.run_rmtl(tmp_path / "b", JOB, "ple", ModelConfig(embed_dim=16), TRAIN, RMTL,
                      checkpoint)  # fmt: skip
    quiet(jobs.run_rmtl, tmp_path / "c", JOB, "ple", ModelConfig(), TRAIN, RMTL, checkpoint)
    assert read_json(tmp_path / "c" / "config.json")["model"]["embed_dim"] == 4
