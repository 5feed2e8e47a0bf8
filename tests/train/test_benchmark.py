"""``train/benchmark.py``: the Table 1 builder, resuming, the quick profile and the studies."""

from __future__ import annotations

import contextlib
import io
import json
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import stats

import benchmark
from rmtl_bench import plots, tables
from rmtl_bench.run_folder import read_json

ROOT = Path(__file__).resolve().parents[2]


def per_seed(values: dict[str, list[float]]) -> list[dict]:
    """Per-seed ``{task: {metric: value}}`` with the AUC from ``values`` and fixed losses."""
    n = len(next(iter(values.values())))
    return [
        {task: {"auc": v[i], "logloss": 0.2, "s_logloss": 0.1} for task, v in values.items()}
        for i in range(n)
    ]


def test_table_builder_means_stds_and_significance_marks() -> None:
    base = [0.700, 0.705, 0.702, 0.699, 0.703]
    better = [b + d for b, d in zip(base, [0.010, 0.012, 0.011, 0.009, 0.010], strict=True)]
    noisy = [b + d for b, d in zip(base, [0.010, -0.012, 0.004, -0.003, 0.001], strict=True)]
    results = {"rr": {
        "ple": per_seed({"ctr": base}),
        "rmtl-ple": per_seed({"ctr": better}),
        "mmoe": per_seed({"ctr": base}),
        "rmtl-mmoe": per_seed({"ctr": noisy}),
    }}  # fmt: skip
    frame = tables.table1_frame(
        results,
        {"rmtl-ple": "ple", "rmtl-mmoe": "mmoe"},
        {"rr": {"ctr": {"auc": 0.8, "logloss": 0.1, "s_logloss": 0.05}}},
    )
    auc = frame[frame.metric == "auc"].set_index("method")
    assert auc.loc["rmtl-ple", "mean"] == pytest.approx(np.mean(better))
    assert auc.loc["rmtl-ple", "std"] == pytest.approx(np.std(better, ddof=1))
    assert auc.loc["rmtl-ple", "p_value"] == pytest.approx(stats.ttest_rel(better, base).pvalue)
    assert auc.loc["rmtl-ple", "significant"] and auc.loc["rmtl-ple", "p_value"] < 1e-4
    assert not auc.loc["rmtl-mmoe", "significant"] and auc.loc["rmtl-mmoe", "p_value"] > 0.5
    assert np.isnan(auc.loc["ple", "p_value"])  # backbones are not tested against anything
    text = tables.table1_markdown(frame, [0, 1, 2, 3, 4])
    row = next(line for line in text.splitlines() if "| AUC ↑ |" in line)
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[3] == f"{np.mean(base):.4f} ± {np.std(base, ddof=1):.4f}"
    assert cells[4].endswith("*") and not cells[6].endswith("*")
    assert cells[-1] == "0.8000"  # the oracle column
    assert "| rr | ctr | Logloss ↓ |" in text


def test_bar_plot_axis_leaves_out_only_a_collapsed_method() -> None:
    auc = np.array([0.7035, 0.7047, 0.7034, 0.7038, 0.7015, 0.5956, 0.6922, 0.6916, 0.6889])
    assert plots.off_scale(auc).tolist() == [False] * 5 + [True] + [False] * 3
    assert not plots.off_scale(np.full(4, 0.7)).any()


@dataclass
class Done:
    returncode: int
    stdout: str
    stderr: str


def run_benchmark(out: Path, *extra: str) -> Done:
    """``benchmark.main`` in this process, its output captured as a subprocess's would be."""
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        try:
            code = benchmark.main(
                ["--profile", "quick", "--out", str(out), "--no-cell-plots", *extra]
            )
        except SystemExit as exit:
            code = exit.code if isinstance(exit.code, int) else 1
            if isinstance(exit.code, str):
                print(exit.code, file=sys.stderr)
    return Done(code, stdout.getvalue(), stderr.getvalue())


@pytest.fixture(scope="module")
def quick(quick_benchmark: tuple[Path, str]) -> tuple[Path, Done]:
    """The session's quick profile (``tests/conftest.py``), shared with the docs test."""
    root, printed = quick_benchmark
    return root, Done(0, printed, "")


def test_quick_profile_writes_table1(quick) -> None:
    root, done = quick
    frame = pd.read_csv(root / "table1.csv")
    methods = [
        "single_task",
        "shared_bottom",
        "esmm",
        "mmoe",
        "ple",
        "d-ple",
        "rmtl-esmm",
        "rmtl-mmoe",
        "rmtl-ple",
        "oracle",
    ]
    assert list(dict.fromkeys(frame["method"])) == methods
    assert set(frame["dataset"]) == {"retailrocket-synthetic", "kuairand-synthetic"}
    assert len(frame) == 2 * 2 * 3 * len(methods)
    assert frame["mean"].notna().all()
    assert (root / "table1.md").read_text().count("\n| ") == 12 + 1  # header + 12 rows
    assert len(list(root.glob("table1_*.png"))) == 4
    assert not list(root.glob("*/seed0/*/*.png"))  # --no-cell-plots: the cells' own figures
    assert done.stdout.count("--- ") == 2 * (len(methods) - 1)  # every cell ran once
    # Each backbone runs right before the cells that load its checkpoint.
    ran = [line[4:] for line in done.stdout.splitlines() if line.startswith("--- kuairand")]
    assert [cell.rsplit("/", 1)[1] for cell in ran] == benchmark.RUN_ORDER
    assert sorted(benchmark.RUN_ORDER) == sorted(benchmark.METHODS)
    # table1_seeds.csv: the per-seed numbers behind every mean, straight from the cells.
    seeds = pd.read_csv(root / "table1_seeds.csv")
    assert len(seeds) == 2 * 9 * 2 and set(seeds["seed"]) == {0}
    cell = read_json(root / "kuairand-synthetic" / "seed0" / "rmtl-ple" / "metrics.json")
    row = seeds[(seeds["method"] == "rmtl-ple") & (seeds["task"] == "long_view")].iloc[0]
    assert row["auc"] == pytest.approx(cell["test"]["rmtl-ple"]["long_view"]["auc"], abs=1e-12)
    assert row["cell_seconds"] > 0
    mean_auc = frame[(frame["method"] == "esmm") & (frame["metric"] == "auc")]["mean"].to_numpy()
    assert np.allclose(np.sort(mean_auc), np.sort(seeds[seeds["method"] == "esmm"]["auc"]))
    footer = (root / "table1.md").read_text().split("## Provenance", 1)[1]
    assert "`python train/benchmark.py --profile quick --out " in footer
    assert "ran 18 cells" in footer and "logical CPUs" in footer
    assert footer.count("9 cells (seeds [0])") == 2
    assert footer.count("torch threads per cell: ") == 2
    assert all(read_json(cell)["seconds"] > 0 for cell in root.glob("*/seed0/*/metrics.json"))


def test_resume_skips_finished_cells(quick) -> None:
    root, first = quick
    cell = root / "kuairand-synthetic" / "seed0" / "esmm"
    before = read_json(cell / "metrics.json")["test"]
    (cell / "metrics.json").unlink()
    # An unfinished cell of an older version: its config.json differs, so it starts afresh.
    (cell / "config.json").write_text(json.dumps({"script": "mtl_baselines", "seed": 0}))
    again = run_benchmark(root.parent)
    assert again.returncode == 0, again.stderr[-3000:]
    ran = [line for line in again.stdout.splitlines() if line.startswith("--- ")]
    assert ran == ["--- kuairand-synthetic/seed0/esmm"]
    assert "esmm: unfinished, other configuration; rerun" in again.stdout
    assert read_json(cell / "metrics.json")["test"] == before


def test_workers_run_missing_seeds_in_parallel_processes(quick, tmp_path: Path, capfd) -> None:
    # A copy of the finished seed 0, so the other tests' one-seed tables stay as they are.
    root = tmp_path / "quick"
    seed0 = Path("kuairand-synthetic") / "seed0"
    shutil.copytree(quick[0] / seed0, root / seed0)
    methods = ("single_task", "esmm", "ple")  # three cells per seed say as much as nine
    done = run_benchmark(tmp_path, "--datasets", "kuairand-synthetic", "--seeds", "0", "1",
                         "--workers", "2", "--methods", *methods)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    workers = capfd.readouterr().out  # the worker processes print to the real stdout
    ran = [line for line in (workers + done.stdout).splitlines() if line.startswith("--- ")]
    assert sorted(ran) == [f"--- kuairand-synthetic/seed1/{m}" for m in sorted(methods)]
    config = read_json(root / "kuairand-synthetic" / "seed1" / "ple" / "config.json")
    assert config["environment"]["torch_threads"] == max(1, torch.get_num_threads() // 2)
    footer = (root / "table1.md").read_text().split("## Provenance", 1)[1]
    assert "2 worker(s); ran 3 cells" in footer and "reused 3 finished cells" in footer
    assert "6 cells (seeds [0, 1])" in footer
    frame = pd.read_csv(root / "table1.csv")
    kuairand_ple = frame[(frame["dataset"] == "kuairand-synthetic") & (frame["method"] == "ple")]
    assert (kuairand_ple["seeds"] == 2).all() and kuairand_ple["std"].notna().all()


def test_a_dependent_cell_retrains_a_backbone_whose_checkpoint_is_gone(quick, tmp_path) -> None:
    # A seed carried to this machine as JSON files: the PLE checkpoint did not come along.
    root = tmp_path / "quick"
    seed0 = root / "kuairand-synthetic" / "seed0"
    shutil.copytree(quick[0] / "kuairand-synthetic" / "seed0", seed0)
    before = read_json(seed0 / "ple" / "metrics.json")["test"]
    (seed0 / "ple" / "checkpoints" / "ple.pt").unlink()
    (seed0 / "esmm" / "checkpoints" / "esmm.pt").unlink()  # rmtl-esmm is finished: not needed
    shutil.rmtree(seed0 / "rmtl-ple")  # unfinished when the seed was carried
    done = run_benchmark(tmp_path, "--datasets", "kuairand-synthetic")
    assert done.returncode == 0, done.stderr[-3000:]
    ran = [line for line in done.stdout.splitlines() if line.startswith("--- ")]
    assert ran == ["--- kuairand-synthetic/seed0/ple", "--- kuairand-synthetic/seed0/rmtl-ple"]
    assert "kuairand-synthetic/seed0/ple: ple.pt does not load" in done.stdout
    # Same seed, same thread count: the retrained backbone is the one that was lost.
    assert read_json(seed0 / "ple" / "metrics.json")["test"] == before
    assert not (seed0 / "esmm" / "checkpoints" / "esmm.pt").exists()


def test_workers_must_be_positive(tmp_path: Path) -> None:
    done = run_benchmark(tmp_path, "--workers", "0")
    assert done.returncode == 2 and "--workers must be at least 1, got 0" in done.stderr


def test_ablation_study_reuses_the_backbone_and_critics(quick) -> None:
    root, _ = quick
    done = run_benchmark(root.parent, "--study", "ablation", "--datasets", "kuairand-synthetic")
    assert done.returncode == 0, done.stderr[-3000:]
    ran = [line for line in done.stdout.splitlines() if line.startswith("--- ")]
    assert sorted(ran) == [
        f"--- kuairand-synthetic/seed0/ablation-{v}" for v in ("cw", "nlc", "wl")
    ]
    frame = pd.read_csv(root / "study_ablation.csv")
    assert set(frame["variant"]) == {"backbone", "rmtl", "cw", "wl", "nlc"}
    text = (root / "study_ablation.md").read_text()
    assert text.startswith("# Ablation study on kuairand-synthetic")
    assert "| cw | is_click |" in text and "mean ± std over model seeds [0]" in text
    # Provenance counts every cell behind the numbers: 3 backbones, RMTL-PLE, 3 variants.
    footer = text.split("## Provenance", 1)[1]
    assert "ran 3 cells" in footer and "- kuairand-synthetic: 7 cells (seeds [0])" in footer


def test_transfer_study_fills_the_3x3_matrix_from_existing_critics(quick) -> None:
    root, _ = quick
    done = run_benchmark(root.parent, "--study", "transfer", "--datasets", "kuairand-synthetic")
    assert done.returncode == 0, done.stderr[-3000:]
    ran = sorted(line for line in done.stdout.splitlines() if line.startswith("--- "))
    models = ("esmm", "mmoe", "ple")
    expected = [
        f"--- kuairand-synthetic/seed0/transfer-{s}-to-{t}"
        for s in models
        for t in models
        if s != t
    ]
    assert ran == sorted(expected)  # the diagonal is the existing RMTL cells
    frame = pd.read_csv(root / "study_transfer.csv")
    assert len(frame) == 9 * 2 and frame["auc_delta"].notna().all()
    table = pd.read_csv(root / "table1.csv").set_index(["dataset", "task", "metric", "method"])
    diagonal = frame[(frame.source == "ple") & (frame.target == "ple")].set_index("task")
    for task, row in diagonal.iterrows():
        key = ("kuairand-synthetic", task, "auc")
        delta = table.loc[(*key, "rmtl-ple"), "mean"] - table.loc[(*key, "ple"), "mean"]
        assert row["auc_delta"] == pytest.approx(delta)
    assert (
        "| critic source \\ target | esmm | mmoe | ple |"
        in (root / "study_transfer.md").read_text()
    )
    assert (root / "study_transfer.png").stat().st_size > 0


def test_lambda_study_sweeps_every_lambda(quick) -> None:
    root, _ = quick
    done = run_benchmark(root.parent, "--study", "lambda", "--datasets", "kuairand-synthetic")
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("--- kuairand-synthetic/seed0/lambda-") == 7
    frame = pd.read_csv(root / "study_lambda.csv")
    assert sorted(set(frame["lambda"])) == [0.0, 0.1, 0.3, 0.5, 0.7, 0.9, 1.0]
    assert len(frame) == 7 * 2
    # The weights differ between lambdas, so the polished models do too.
    assert frame.groupby("task")["auc"].nunique().min() > 1
    assert (root / "study_lambda.png").stat().st_size > 0


def test_polish_study_compares_rmtl_with_cw_under_the_guarded_schedule(quick) -> None:
    root, _ = quick
    cell = root / "kuairand-synthetic" / "seed0" / "rmtl-esmm"
    before = json.loads((cell / "metrics.json").read_text())["test"]
    (cell / "checkpoints" / "critics.pt").unlink()  # carried without checkpoints: rerun it
    done = run_benchmark(root.parent, "--study", "polish", "--datasets", "kuairand-synthetic")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "rmtl-esmm: critics.pt does not load" in done.stdout
    # Same seed, same thread count: the same critics, so the same polished numbers.
    assert json.loads((cell / "metrics.json").read_text())["test"] == before
    frame = pd.read_csv(root / "study_polish.csv")
    assert list(dict.fromkeys(frame["variant"])) == ["backbone", "rmtl", "polish-rmtl", "polish-cw"]
    config = (root / "kuairand-synthetic" / "seed0" / "polish-cw" / "config.json").read_text()
    assert '"polish_lr": 0.0001' in config and '"polish_guard": true' in config
    assert '"weight_variant": "cw"' in config
    text = (root / "study_polish.md").read_text()
    assert "| polish-cw | " in text and "Paired comparisons" in text


def test_report_only_tabulates_finished_seeds_and_runs_nothing(quick) -> None:
    root, _ = quick
    (root / "kuairand-synthetic" / "seed0" / "d-ple" / "metrics.json").unlink()
    done = run_benchmark(root.parent, "--report-only")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "--- " not in done.stdout
    assert "kuairand-synthetic seed 0: not finished (kuairand-synthetic/seed0/d-ple" in done.stdout
    frame = pd.read_csv(root / "table1.csv")
    assert set(frame["dataset"]) == {"retailrocket-synthetic"}
    assert "ran 0 cells" in (root / "table1.md").read_text()
    study = run_benchmark(root.parent, "--report-only", "--study", "lambda")
    assert study.returncode != 0 and "--report-only: cell" in study.stderr


def test_balancers_block_runs_resumes_and_tests_against_equal_and_rmtl(tmp_path) -> None:
    """The quick profile of the block on the RetailRocket twin, two seeds: every panel's cells,
    the per-seed CSV matching the cells' metrics, paired tests computed with scipy, the plot;
    a second call reuses every cell."""
    argv = ["--block", "balancers", "--profile", "quick", "--datasets", "retailrocket-synthetic",
            "--weightings", "upgrad", "famo", "--seeds", "0", "1", "--out", str(tmp_path),
            "--no-cell-plots"]  # fmt: skip
    with contextlib.redirect_stdout(io.StringIO()):
        assert benchmark.main(argv) == 0
    root = tmp_path / "quick"
    rows = pd.read_csv(root / "balancers.csv")
    panels = set(zip(rows["protocol"], rows["backbone"], strict=True))
    assert panels == {("polish", "ple"), ("scratch", "ple"), ("polish", "esmm")}
    assert set(rows["method"]) == {"equal", "upgrad", "famo", "rmtl"}
    cell = root / "retailrocket-synthetic" / "seed1" / "ple-polish-upgrad"
    config = read_json(cell / "config.json")
    assert config["rmtl"]["polish_weighting"] == "upgrad"
    assert config["rmtl"]["weight_variant"] == "none"
    scratch = read_json(
        root / "retailrocket-synthetic" / "seed0" / "ple-scratch-famo" / "config.json"
    )
    assert scratch["train"]["weighting"] == "famo"
    got = rows[(rows.protocol == "polish") & (rows.backbone == "ple") & (rows.seed == 1)
               & (rows.method == "upgrad") & (rows.task == "ctr")]  # fmt: skip
    metrics = read_json(cell / "metrics.json")["test"]["rmtl-ple"]["ctr"]
    assert float(got["auc"].iloc[0]) == pytest.approx(metrics["auc"])
    summary = pd.read_csv(root / "balancers_summary.csv")
    one = summary[(summary.protocol == "scratch") & (summary.method == "famo")
                  & (summary.task == "ctcvr")].iloc[0]  # fmt: skip
    panel = rows[(rows.protocol == "scratch") & (rows.task == "ctcvr")]
    famo = panel[panel.method == "famo"].sort_values("seed")["auc"].to_numpy()
    for other in ("equal", "rmtl"):
        base = panel[panel.method == other].sort_values("seed")["auc"].to_numpy()
        assert one[f"auc_p_vs_{other}"] == pytest.approx(stats.ttest_rel(famo, base).pvalue)
        assert one[f"auc_diff_vs_{other}"] == pytest.approx(np.mean(famo - base))
    assert (root / "balancers.png").stat().st_size > 0
    assert "## retailrocket-synthetic: ESMM, polish" in (root / "balancers.md").read_text()
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        benchmark.main(argv)
    assert "(0 cells run," in out.getvalue()
    # The finished cells' summaries carried elsewhere tabulate the same block there.
    carried = tmp_path / "carried"
    with contextlib.redirect_stdout(io.StringIO()):
        benchmark.main([*argv, "--export-cells", str(carried)])
        assert not list(carried.rglob("*.pt")) and not list(carried.rglob("*.png"))
        moved = [a if a != str(tmp_path) else str(carried) for a in argv]
        assert benchmark.main([*moved, "--report-only"]) == 0
    again = pd.read_csv(carried / "quick" / "balancers.csv")
    pd.testing.assert_frame_equal(again.drop(columns="cell_seconds"),
                                  rows.drop(columns="cell_seconds"))  # fmt: skip
    # A seed not yet started is named and left out; the finished seeds are still tabulated.
    later = io.StringIO()
    with contextlib.redirect_stdout(later):
        assert benchmark.main([*moved, "--report-only", "--seeds", "0", "1", "2"]) == 0
    assert "seed 2: not finished" in later.getvalue()
    assert set(pd.read_csv(carried / "quick" / "balancers.csv")["seed"]) == {0, 1}
