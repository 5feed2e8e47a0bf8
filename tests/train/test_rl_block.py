"""The RL reference block (``train/benchmark.py --block rl``) and its online and offline
runners: one quick run of every kind of row, resumed without rerunning, and the refusals."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pandas as pd
import pytest

import benchmark
from agents.offline_rl import OfflineConfig, split_method
from agents.rl_reference import OnlineConfig, make_online
from rmtl_env.data import load_dataset

ROOT = Path(__file__).resolve().parents[2]


def test_unknown_methods_budgets_and_checkpoints_are_refused() -> None:
    tiny = load_dataset("retailrocket-synthetic", scale="tiny", seed=0)
    with pytest.raises(ValueError, match="unknown online method 'a2c'; valid: ddpg, td3"):
        make_online("a2c", tiny, OnlineConfig(), seed=0)
    with pytest.raises(ValueError, match="needed by td3-ple and only by it"):
        make_online("td3-ple", tiny, OnlineConfig(), seed=0)
    with pytest.raises(ValueError, match="multiple of n_envs"):
        OnlineConfig(eval_every=100, n_envs=8)
    with pytest.raises(ValueError, match="OfflineConfig.gradient_steps must be an integer >= 1"):
        OfflineConfig(gradient_steps=0)
    assert split_method("td3+bc-labels") == ("td3+bc", "labels")
    assert split_method("iql") == ("iql", "uniform")
    with pytest.raises(ValueError, match="unknown offline method 'awac'"):
        split_method("awac")


def test_online_agents_learn_the_given_budget_and_keep_a_curve() -> None:
    from agents.rl_reference import train_online

    tiny = load_dataset("retailrocket-synthetic", scale="tiny", seed=0)
    config = OnlineConfig(env_steps=128, eval_every=64, learning_starts=32, batch_size=16,
                          net_arch=(16,), ppo_n_steps=16)  # fmt: skip
    for method in ("td3-flat", "ppo"):
        run = train_online(method, tiny, config, seed=0, progress=False)
        assert run.model.num_timesteps == 128
        assert [p["steps"] for p in run.curve] == [0, 64, 128]
        assert run.test.score is not None and run.test.steps == len(tiny.split("test"))


def quick_block(out: Path, methods: list[str], dataset: str = "retailrocket-synthetic") -> int:
    return benchmark.main(["--block", "rl", "--profile", "quick", "--datasets", dataset,
                           "--seeds", "0", "--out", str(out), "--rl-methods", *methods])  # fmt: skip


@pytest.mark.slow
def test_quick_block_tabulates_every_kind_of_row_and_resumes(tmp_path, capsys) -> None:
    methods = ["uniform", "constant", "ple", "td3", "td3-ple"]
    offline = bool(os.environ.get("RMTL_D3RLPY_PYTHON"))
    if offline:  # CI builds d3rlpy's own virtual environment
        methods.append("bc-labels")
    assert quick_block(tmp_path, methods) == 0
    out = tmp_path / "rl-quick"
    assert not list(out.rglob("training_state.pt"))  # a finished cell drops its saved state
    rows = pd.read_csv(out / "rl_algorithms.csv")
    assert list(dict.fromkeys(rows["method"])) == methods
    score = rows.groupby("method")["score"].first()
    assert score["constant"] == pytest.approx(0.0, abs=1e-9)
    assert score["uniform"] < -1000  # far below the state-blind base rates
    assert (out / "rl_curves_retailrocket-synthetic.png").stat().st_size > 0
    table = (out / "rl_algorithms.md").read_text()
    assert "| td3-ple | online RL (SB3) |" in table and "51,200" not in table
    curve = pd.read_csv(out / "retailrocket-synthetic" / "seed0" / "td3" / "curve.csv")
    assert list(curve["steps"]) == [0, 128, 256]
    capsys.readouterr()
    assert quick_block(tmp_path, methods) == 0  # everything finished: nothing runs again
    assert "--- " not in capsys.readouterr().out

    # a backbone carried without its checkpoint (summaries only) is retrained for TD3-PLE
    seed0 = tmp_path / "quick" / "retailrocket-synthetic" / "seed0" / "ple"
    (seed0 / "checkpoints" / "ple.pt").unlink()
    shutil.rmtree(out / "retailrocket-synthetic" / "seed0" / "td3-ple")
    assert quick_block(tmp_path, methods) == 0
    assert "ple.pt does not load" in capsys.readouterr().out
    assert (seed0 / "checkpoints" / "ple.pt").is_file()
    again = pd.read_csv(out / "rl_algorithms.csv")  # same seed, same weights, same scores
    timeless = ["cell_seconds"]
    pd.testing.assert_frame_equal(again.drop(columns=timeless), rows.drop(columns=timeless))
    assert quick_block(tmp_path, methods) == 0  # tabulates the retrained backbone's own row
    rows = pd.read_csv(out / "rl_algorithms.csv")

    # exported (summaries only, the supervised rows beside the RL cells), the block tabulates
    # the same rows from the export alone: no Table 1 run folder, no checkpoint
    exported = tmp_path / "exported"
    assert benchmark.main(["--block", "rl", "--profile", "quick", "--out", str(tmp_path),
                           "--export-cells", str(exported)]) == 0  # fmt: skip
    supervised = exported / "rl-quick" / "retailrocket-synthetic" / "seed0" / "supervised"
    assert sorted(p.name for p in supervised.iterdir()) == ["ple"]
    assert not list(exported.rglob("*.pt")) and not (exported / "quick").exists()
    assert benchmark.main(["--block", "rl", "--profile", "quick", "--datasets",
                           "retailrocket-synthetic", "--seeds", "0", "--out", str(exported),
                           "--rl-methods", *methods, "--report-only"]) == 0  # fmt: skip
    rebuilt = pd.read_csv(exported / "rl-quick" / "rl_algorithms.csv")
    pd.testing.assert_frame_equal(rebuilt, rows)

    # a block resumed from an export (the supervised rows copied beside its RL cells) exports
    # the rows it reads, not Table 1's cells of the same seed
    shutil.copytree(supervised, out / "retailrocket-synthetic" / "seed0" / "supervised")
    table1 = tmp_path / "quick" / "retailrocket-synthetic" / "seed0" / "ple" / "metrics.json"
    table1.write_text(json.dumps({**json.loads(table1.read_text()), "seconds": 1e9}))
    again = tmp_path / "again"
    assert benchmark.main(["--block", "rl", "--profile", "quick", "--out", str(tmp_path),
                           "--export-cells", str(again)]) == 0  # fmt: skip
    ple = again / "rl-quick" / "retailrocket-synthetic" / "seed0" / "supervised" / "ple"
    assert json.loads((ple / "metrics.json").read_text())["seconds"] < 1e9


@pytest.mark.slow
def test_offline_rows_learn_on_a_twin_with_a_constant_feature(tmp_path) -> None:
    """The KuaiRand twin's training split has an observation column with one value: d3rlpy's
    fitted min-max scaler divides by its empty range and trains on NaN (the run then fails on
    the first NaN action); ``agents.offline_rl.observation_scaler`` gives it a unit range."""
    if not os.environ.get("RMTL_D3RLPY_PYTHON"):
        pytest.skip("d3rlpy runs in its own virtual environment: set RMTL_D3RLPY_PYTHON (CI does)")
    assert quick_block(tmp_path, ["constant", "bc"], "kuairand-synthetic") == 0
    rows = pd.read_csv(tmp_path / "rl-quick" / "rl_algorithms.csv")
    bc = rows[rows["method"] == "bc"]
    assert len(bc) == 2 and bc[["auc", "logloss", "score"]].notna().all().all()


def test_the_block_refuses_workers_and_names_the_missing_d3rlpy(tmp_path, monkeypatch) -> None:
    with pytest.raises(SystemExit):
        benchmark.parse_args(["--block", "rl", "--workers", "2"])
    for flags in (["--block", "rl", "--rl-threads", "0"], ["--rl-threads", "2"]):
        with pytest.raises(SystemExit):
            benchmark.parse_args(flags)
    monkeypatch.delenv("RMTL_D3RLPY_PYTHON", raising=False)
    try:
        import d3rlpy  # noqa: F401
    except ImportError:
        with pytest.raises(SystemExit, match="RMTL_D3RLPY_PYTHON"):
            quick_block(tmp_path, ["bc"])


def test_rl_threads_reach_the_cells_and_are_recorded(tmp_path) -> None:
    import torch

    before = torch.get_num_threads()
    try:
        assert benchmark.main(["--block", "rl", "--profile", "quick", "--seeds", "0",
                               "--datasets", "retailrocket-synthetic", "--rl-methods", "constant",
                               "--rl-threads", "2", "--out", str(tmp_path)]) == 0  # fmt: skip
    finally:
        torch.set_num_threads(before)
    config = json.loads(next(tmp_path.rglob("constant/config.json")).read_text())
    assert config["environment"]["torch_threads"] == 2


def test_paired_score_tests_compare_each_row_with_ple_and_with_zero_over_seeds() -> None:
    from rmtl_bench.rl_block import paired_score_markdown

    scores = {"ple": [30.0, 20.0, 25.0], "constant": [0.0] * 3, "sac": [-50.0, -70.0, -60.0],
              "ppo": [-9.0] * 3, "cql": [2.0, -3.0, 4.0]}  # fmt: skip
    rows = pd.DataFrame([
        {"dataset": "twin", "seed": seed, "method": method, "task": task, "score": values[seed]}
        for method, values in scores.items() for seed in range(3) for task in ("a", "b")
    ])  # fmt: skip
    text = paired_score_markdown(rows)
    lines = {line.split(" | ")[0][2:]: line for line in text.splitlines() if line.startswith("| ")}
    assert "constant" not in lines  # 0 on every seed by construction
    assert lines["ple"] == "| ple | - | - | +25.0 | 0.013* |"
    assert lines["sac"] == "| sac | -85.0 | 0.001* | -60.0 | 0.009* |"
    assert lines["ppo"].endswith("| -9.0 | - |")  # the same on every seed: t-test undefined
    assert lines["cql"].split(" | ")[1:] == ["-24.0", "0.007*", "+1.0", "0.678 |"]
    assert paired_score_markdown(rows[rows["seed"] == 0]) == ""  # one seed: nothing to test
    assert paired_score_markdown(rows[rows["method"] != "ple"]) == ""
