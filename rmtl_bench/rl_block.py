"""The RL reference block (``python train/benchmark.py --block rl``): what standard RL algorithms
reach on SessionRecEnv, next to the supervised models, in one normalised score.

Rows, per twin and seed (every row scored by ``rmtl_env.evaluate_policy`` on the test split):

- ``uniform`` and ``constant`` (each task's training base rate, the score's 0);
- ``ple``, ``rmtl-ple``, ``d-ple``: the Table 1 cells of the same profile (shared with Table 1's
  runs under ``<out>/<profile>``), or their exported summaries beside the seed's RL cells
  (``seed<k>/supervised/<method>/``, written by ``--export-cells``);
- the online SB3 agents of ``agents.rl_reference`` at one budget of env steps;
- the offline d3rlpy algorithms of ``agents.offline_rl`` at one budget of gradient steps, run in
  d3rlpy's own virtual environment (``RMTL_D3RLPY_PYTHON``, or this Python if it has d3rlpy).

Each RL cell is a folder ``<out>/rl-<profile>/<dataset>/seed<k>/<method>/`` with ``config.json``,
``metrics.json`` (test metrics, score, return, wall time) and ``curve.csv`` (the validation
score along training); a cell with ``metrics.json`` is finished and skipped, so the block resumes.
Results: ``rl_algorithms.md``/``.csv`` (per seed) and ``rl_curves_<dataset>.png``.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from agents import pipeline
from agents.offline_rl import OFFLINE_METHODS, OfflineConfig
from agents.rl_reference import ONLINE_METHODS, OnlineConfig
from rmtl_bench import plots
from rmtl_bench.cells import Cells, MissingCell, whole_seeds
from rmtl_bench.run_folder import (
    copy_summaries,
    environment_info,
    export_cells,
    read_json,
    write_json,
)
from rmtl_bench.tables import paired_p_value
from rmtl_env.data.io import atomic_write_bytes
from rmtl_env.evaluation import constant_policy, evaluate_policy, uniform_policy

FIXED = ("uniform", "constant")
SUPERVISED_ROWS = ("ple", "rmtl-ple", "d-ple")
METHODS = (*FIXED, *SUPERVISED_ROWS, *ONLINE_METHODS, *OFFLINE_METHODS)
FAMILY = {
    **dict.fromkeys(FIXED, "fixed"), **dict.fromkeys(SUPERVISED_ROWS, "supervised / RMTL"),
    **dict.fromkeys(ONLINE_METHODS, "online RL (SB3)"),
    **dict.fromkeys(OFFLINE_METHODS, "offline RL (d3rlpy)"),
}  # fmt: skip


@dataclass(frozen=True)
class Budget:
    """The block's budgets: every online agent's and every offline algorithm's."""

    online: OnlineConfig
    offline: OfflineConfig


BUDGETS = {
    "full": Budget(OnlineConfig(), OfflineConfig()),
    "quick": Budget(
        OnlineConfig(
            env_steps=256,
            eval_every=128,
            learning_starts=64,
            ppo_n_steps=16,
            batch_size=32,
            net_arch=(32,),
        ),  # fmt: skip
        OfflineConfig(gradient_steps=40, eval_every=20, batch_size=32),
    ),
}
BUDGETS["bf16"] = BUDGETS["full"]


def rl_root(args: argparse.Namespace) -> Path:
    """The block's folder: ``<out>/rl-<profile>``."""
    return args.out / f"rl-{args.profile}"


def rl_folder(cells: Cells, dataset: str, seed: int, method: str) -> Path:
    return rl_root(cells.args) / dataset / f"seed{seed}" / method


def exported_supervised(cells: Cells, dataset: str, seed: int, method: str) -> Path:
    """Where ``--export-cells`` keeps a supervised row's summaries: beside the seed's RL cells,
    so that the exported block is whole (Table 1's own cells of the same profile may differ, in
    torch threads, from the block's)."""
    return rl_folder(cells, dataset, seed, "supervised") / method


def supervised_row(cells: Cells, dataset: str, seed: int, method: str) -> Path:
    """The folder of the supervised row the block reads: its exported summaries beside the
    seed's RL cells when they are finished, else Table 1's cell of the same profile."""
    exported = exported_supervised(cells, dataset, seed, method)
    if (exported / "metrics.json").is_file():
        return exported
    return cells.folder(dataset, seed, method)


def export_rl_cells(cells: Cells, target: Path) -> tuple[int, Path]:
    """Copy every finished RL cell's summaries and, for each exported seed, its finished
    supervised rows (those the block reads: an exported row before Table 1's cell) to
    ``target/rl-<profile>``; a ``--report-only`` run with ``--out target`` tabulates them as
    they are. Returns the number of cells and the folder."""
    root = rl_root(cells.args)
    out = target / root.name
    count = export_cells(root, out)
    for seed_folder in sorted(root.glob("*/seed*")):
        dataset, seed = seed_folder.parent.name, int(seed_folder.name.removeprefix("seed"))
        for method in SUPERVISED_ROWS:
            cell = supervised_row(cells, dataset, seed, method)
            if (cell / "metrics.json").is_file():
                copy_summaries(cell, out / dataset / seed_folder.name / "supervised" / method)
                count += 1
    return count, out


def write_cell(folder: Path, config: dict, score, curve: list[dict], seconds: float) -> None:
    """A finished RL cell: ``config.json``, ``curve.csv`` and, last, ``metrics.json``."""
    write_json(folder / "config.json", {**config, "environment": environment_info()})
    atomic_write_bytes(folder / "curve.csv", pd.DataFrame(curve).to_csv(index=False).encode())
    write_json(folder / "metrics.json", {
        "test": score.metrics, "score": score.score, "mean_return": score.mean_return,
        "seconds": seconds,
    })  # fmt: skip


def d3rlpy_python() -> str:
    """The Python that has d3rlpy: ``RMTL_D3RLPY_PYTHON``, else this one if it imports d3rlpy."""
    given = os.environ.get("RMTL_D3RLPY_PYTHON")
    if given:
        return given
    try:
        import d3rlpy  # noqa: F401
    except ImportError:
        raise SystemExit(
            "--block rl: the offline rows need d3rlpy, which pins gymnasium==1.0.0; build its "
            "virtual environment (python3 -m venv .venv-d3rlpy && .venv-d3rlpy/bin/pip install "
            "torch==2.13.0 -e '.[d3rlpy]') and set RMTL_D3RLPY_PYTHON=.venv-d3rlpy/bin/python, or "
            "leave the offline methods out with --rl-methods"
        ) from None
    return sys.executable


def run_cell(cells: Cells, dataset: str, seed: int, method: str) -> dict:
    """The cell's ``metrics.json``, running it first unless it finished before."""
    if method in SUPERVISED_ROWS:
        folder = supervised_row(cells, dataset, seed, method)
        if folder == cells.folder(dataset, seed, method):  # Table 1's cell: run or resume it
            cells.method(dataset, seed, method)
        metrics = read_json(folder / "metrics.json")
        scores = metrics.get("policy_scores") or {}
        if method not in scores:
            raise SystemExit(f"{folder}: metrics.json has no policy score (a cell of an older "
                             "version of the package); delete the folder to rerun it")  # fmt: skip
        return {"test": metrics["test"][method], **scores[method], "seconds": metrics["seconds"]}
    folder = rl_folder(cells, dataset, seed, method)
    if not (folder / "metrics.json").is_file():
        if cells.args.report_only:
            raise MissingCell(str(folder))
        print(f"--- rl/{dataset}/seed{seed}/{method}", flush=True)
        run_rl_cell(cells, dataset, seed, method, folder)
    return read_json(folder / "metrics.json")


def run_rl_cell(cells: Cells, dataset: str, seed: int, method: str, folder: Path) -> None:
    budget = BUDGETS[cells.args.profile]
    data = pipeline.load_splits(cells.job(dataset, seed).data).dataset
    base = {"dataset": dataset, "seed": seed, "method": method, "command": cells.args.command}
    if method in FIXED:
        started = time.perf_counter()
        if method == "uniform":
            policy = uniform_policy(len(data.tasks), seed)
        else:
            policy = constant_policy(data.split("train").labels.mean(axis=0, dtype=np.float64))
        score = evaluate_policy(policy, data, "test")
        write_cell(folder, base, score, [], time.perf_counter() - started)
    elif method in ONLINE_METHODS:
        from agents.rl_reference import train_online

        checkpoint = None
        if method == "td3-ple":  # a backbone folder carried without its checkpoint is retrained
            checkpoint = cells.backbone(dataset, seed, "ple", for_cell=folder)[0]
        # Off-policy runs save their state at every curve point and a rerun continues from it
        # (a TD3-PLE cell on the KuaiRand twin takes hours); PPO's take minutes and restart.
        state = None if method == "ppo" else folder / "checkpoints" / "training_state.pt"
        run = train_online(method, data, budget.online, seed, checkpoint,
                           progress=cells.args.progress, state_path=state)  # fmt: skip
        config = {**base, "budget": budget.online.to_dict(), "env_steps_per_second":
                  run.env_steps_per_second, "resumed_at_env_steps": run.resumed_at}  # fmt: skip
        write_cell(folder, config, run.test, run.curve, run.seconds)
        if state is not None:  # the cell is done; its state is as large as two actors
            state.unlink(missing_ok=True)
    else:
        command = [
            d3rlpy_python(), "-m", "rmtl_bench.offline_d3rlpy", method,
            "--dataset", dataset, "--scale", cells.profile.scale, "--seed", str(seed),
            "--command", cells.args.command,
            "--out", str(folder), "--gradient-steps", str(budget.offline.gradient_steps),
            "--eval-every", str(budget.offline.eval_every),
            "--batch-size", str(budget.offline.batch_size),
        ]  # fmt: skip
        folder.mkdir(parents=True, exist_ok=True)
        with open(folder / "d3rlpy.log", "w") as log:  # d3rlpy logs every epoch's losses
            done = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT)
        tail = (folder / "d3rlpy.log").read_text().splitlines()[-15:]
        if done.returncode != 0:
            raise SystemExit(f"{folder}: the d3rlpy run failed:\n" + "\n".join(tail))
        print(tail[-1] if tail else "", flush=True)


def rl_frame(cells: Cells, datasets: list[str], methods: list[str], seeds: list[int]):
    """Per (dataset, seed, method, task): the test metrics, the score, the return, wall time."""
    rows = []
    for dataset in datasets:
        for seed in seeds:
            for method in methods:
                cell = run_cell(cells, dataset, seed, method)
                for task, values in cell["test"].items():
                    rows.append({
                        "dataset": dataset, "seed": seed, "method": method,
                        "family": FAMILY[method], "task": task, **values,
                        "score": cell["score"], "mean_return": cell["mean_return"],
                        "cell_seconds": cell["seconds"],
                    })  # fmt: skip
    return pd.DataFrame(rows)


def curves_frame(cells: Cells, datasets: list[str], methods: list[str], seeds: list[int]):
    parts = []
    for dataset in datasets:
        for seed in seeds:
            for method in methods:
                path = rl_folder(cells, dataset, seed, method) / "curve.csv"
                if method in (*ONLINE_METHODS, *OFFLINE_METHODS) and path.is_file():
                    curve = pd.read_csv(path).assign(
                        dataset=dataset, seed=seed, method=method, family=FAMILY[method]
                    )
                    parts.append(curve)
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()


def last_quarter_change(curves: pd.DataFrame) -> dict[tuple[str, str], float]:
    """``{(dataset, method): change}``: the mean validation score over the curve's last quarter
    minus that over the quarter before, averaged over seeds. Near 0 (against the score's scale)
    the curve has flattened at the budget; a large value says it was still moving."""
    out: dict[tuple[str, str], list[float]] = {}
    for (dataset, method, _seed), c in curves.groupby(["dataset", "method", "seed"], sort=False):
        scores = c.sort_values("steps")["score"].to_numpy(float)
        quarter = max(1, len(scores) // 4)
        if len(scores) >= 2 * quarter:
            change = scores[-quarter:].mean() - scores[-2 * quarter : -quarter].mean()
            out.setdefault((dataset, method), []).append(change)
    return {key: float(np.mean(values)) for key, values in out.items()}


def rl_markdown(rows: pd.DataFrame, budget: Budget, seeds: list[int],
                changes: dict[tuple[str, str], float] | None = None) -> str:  # fmt: skip
    """One table per twin: the score, the return and each task's metrics, mean ± std, the wall
    time, and for the trained rows the last quarter's change of the validation score."""
    lines = [
        "# Reference scores of standard RL algorithms on SessionRecEnv", "",
        f"Test split, mean ± std over seeds {seeds}. Score = 100 (R - R_const) / (R_oracle - "
        "R_const): 0 is the best state-blind policy (each task's training base rate), 100 the "
        "twin's true probabilities. Online agents: "
        f"{budget.online.env_steps:,} env steps each ({budget.online.n_envs} envs, "
        f"{budget.online.gradient_steps} gradient steps per vector step); offline algorithms: "
        f"{budget.offline.gradient_steps:,} gradient steps each.", "",
    ]  # fmt: skip
    for dataset, d in rows.groupby("dataset", sort=False):
        tasks = list(dict.fromkeys(d["task"]))
        lines += [f"## {dataset}", "",
                  "| method | family | score | return | " + " | ".join(
                      f"{t} AUC | {t} Logloss | {t} s-Logloss" for t in tasks)
                  + " | wall s | last-quarter score change |",
                  "|---" * (6 + 3 * len(tasks)) + "|"]  # fmt: skip
        for method, m in d.groupby("method", sort=False):
            first = m[m["task"] == tasks[0]]
            cells_ = [method, FAMILY[method], _ms(first["score"]), _ms(first["mean_return"], 3)]
            for task in tasks:
                t = m[m["task"] == task]
                cells_ += [_ms(t["auc"], 4), _ms(t["logloss"], 4), _ms(t["s_logloss"], 4)]
            cells_.append(f"{first['cell_seconds'].mean():.0f}")
            change = (changes or {}).get((dataset, method))
            cells_.append("-" if change is None else f"{change:+.1f}")
            lines.append("| " + " | ".join(cells_) + " |")
        lines.append("")
    return "\n".join(lines)


def paired_score_markdown(rows: pd.DataFrame, baseline: str = "ple") -> str:
    """Per twin, each row's score against ``baseline``'s and against 0 (the state-blind base
    rates, the same on every seed): the mean difference over seeds and its two-sided paired
    t-test p-value. Empty when the baseline is not a row or fewer than 2 seeds are in."""
    scores = rows.drop_duplicates(["dataset", "seed", "method"])
    lines: list[str] = []
    for dataset, d in scores.groupby("dataset", sort=False):
        table = d.pivot(index="seed", columns="method", values="score")
        if baseline not in table or len(table) < 2:
            continue
        header = f"| method | score - {baseline} | p | score - 0 | p |"
        lines += [f"### {dataset}", "", header, "|---" * 5 + "|"]
        zero, versus = np.zeros(len(table)), table[baseline].to_numpy(float)
        for method in dict.fromkeys(d["method"]):
            if method == "constant":
                continue
            score = table[method].to_numpy(float)
            against_baseline = (
                "- | -" if method == baseline
                else f"{np.mean(score - versus):+.1f} | {_p(paired_p_value(score, versus))}"
            )  # fmt: skip
            lines.append(f"| {method} | {against_baseline} | {np.mean(score):+.1f} | "
                         f"{_p(paired_p_value(score, zero))} |")  # fmt: skip
        lines.append("")
    if not lines:
        return ""
    intro = (
        "## Paired tests of the score over seeds\n\nTwo-sided paired t-tests over the seeds "
        f"of each row's score against {baseline}'s and against 0 (the state-blind base rates); "
        "`*`: p < 0.05; `-`: the difference is the same on every seed, so the test is "
        "undefined.\n\n"
    )
    return intro + "\n".join(lines)


def _p(value: float) -> str:
    return "-" if np.isnan(value) else f"{value:.3f}" + ("*" if value < 0.05 else "")


def _ms(values: pd.Series, digits: int = 1) -> str:
    values = values.astype(float)
    if values.isna().all():
        return "-"
    std = values.std(ddof=1) if len(values) > 1 else 0.0
    return f"{values.mean():.{digits}f} ± {std:.{digits}f}"


def rl_block(args: argparse.Namespace, seeds: list[int]) -> Path:
    """Run the missing cells, then write the tables and the learning curves; the results folder."""
    cells = Cells(args)
    methods = list(args.rl_methods)
    rows, done = whole_seeds(  # whole seeds only, as Table 1
        seeds, lambda seed: rl_frame(cells, args.datasets, methods, [seed]), "the RL block"
    )
    out = rl_root(args)
    budget = BUDGETS[args.profile]
    atomic_write_bytes(out / "rl_algorithms.csv", rows.to_csv(index=False).encode())
    curves = curves_frame(cells, args.datasets, methods, done)
    changes = last_quarter_change(curves) if len(curves) else {}
    paired = paired_score_markdown(rows)
    text = rl_markdown(rows, budget, done, changes) + "\n" + (f"{paired}\n" if paired else "") + (
        f"Command: `{args.command}`; {environment_info()['cpu']}, "
        f"{time.strftime('%Y-%m-%d', time.gmtime())}.\n"
    )  # fmt: skip
    atomic_write_bytes(out / "rl_algorithms.md", text.encode())
    for dataset in args.datasets:
        if len(curves) and (curves["dataset"] == dataset).any():
            plots.plot_rl_curves(curves[curves["dataset"] == dataset], dataset,
                                 out / f"rl_curves_{dataset}.png")  # fmt: skip
    print(text)
    return out
