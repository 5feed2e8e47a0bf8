"""Table 1 of the RMTL paper, its ablation, transferability and lambda studies, in one command.

    python train/benchmark.py                                  # full: both twins, 9 methods, 5 seeds
    python train/benchmark.py --profile quick                  # tiny twins, 1 seed, few epochs (CI)
    python train/benchmark.py --study ablation|transfer|lambda
    python train/benchmark.py --datasets retailrocket kuairand-1k --data-dir retailrocket=~/rr ...
    python train/benchmark.py --report-only                    # table of the finished cells so far
    python train/benchmark.py --workers 2                      # two seeds at once, 1 process each

Every (dataset, seed, method) cell is a run folder of ``mtl_baselines.py``, ``rmtl_ddpg.py`` or
``dple_sb3.py`` under ``--out``; a cell with a ``metrics.json`` is finished and skipped, so an
interrupted benchmark resumes. Each pretrained backbone is trained once per (dataset, seed) and
shared by its RMTL variant and by D-PLE. Results: ``table1.md``/``table1.csv`` (mean ± std over
seeds, ``*`` where an RMTL variant differs from its backbone with paired t-test p < 0.05, the
oracle column on synthetic data), ``table1_seeds.csv`` (every cell's per-seed metrics) and one bar
plot per dataset and task. Cells run seed by seed, so a benchmark stopped part-way has whole
seeds to report; ``--report-only`` tabulates the seeds whose cells are all finished without
running anything. ``table1.md`` ends with its provenance: the command, date, machine, this
invocation's wall time and the recorded time of every cell.
"""

from __future__ import annotations

import argparse
import datetime
import multiprocessing
import shlex
import shutil
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from functools import partial
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch

import dple_sb3
import mtl_baselines
import rmtl_ddpg
import runlib
import tables
from rmtl_env.data.io import atomic_write_bytes

SUPERVISED = ["single_task", "shared_bottom", "esmm", "mmoe", "ple"]
RMTL = {"rmtl-esmm": "esmm", "rmtl-mmoe": "mmoe", "rmtl-ple": "ple"}
METHODS = [*SUPERVISED, "d-ple", *RMTL]
# Each backbone's cell runs right before the cells that load its checkpoint, so a seed cut off
# part-way leaves at most one finished backbone with dependents still to run: its finished cells'
# summaries (JSON files, without checkpoints) resume it on another machine, where that one
# backbone is retrained (``Cells.backbone``).
RUN_ORDER = ["single_task", "shared_bottom", "esmm", "rmtl-esmm", "mmoe", "rmtl-mmoe", "ple",
             "rmtl-ple", "d-ple"]  # fmt: skip
LAMBDAS = [0.0, 0.1, 0.3, 0.5, 0.7, 0.9, 1.0]
# The polish study: RMTL and its constant-weight control retrained from the backbone at a tenth
# of the pretraining learning rate, the backbone competing in early stopping (the guard).
POLISH_BACKBONE, POLISH_LR = "esmm", 1e-4
POLISH_FLAGS = ("--polish-lr", str(POLISH_LR), "--polish-guard")
PROFILES = {
    # Paper dimensions, early stopping, critics to convergence; small twins.
    "full": {"scale": "small", "seeds": [0, 1, 2, 3, 4], "model": [], "rmtl": [], "dple": []},
    # Smoke test: tiny twins, small networks, a few epochs and steps.
    "quick": {
        "scale": "tiny",
        "seeds": [0],
        "model": ["--embed-dim", "8", "--bottom-dims", "16", "8", "--tower-dims", "8",
                  "--epochs", "2", "--batch-size", "512"],
        "rmtl": ["--critic-embed-dim", "8", "--critic-batch-size", "512", "--critic-epochs", "2"],
        "dple": ["--actor-steps", "200", "--actor-batch-size", "32", "--critic-batch-size", "256"],
    },
}  # fmt: skip


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--datasets", nargs="+", default=["retailrocket-synthetic", "kuairand-synthetic"]
    )
    p.add_argument(
        "--data-dir",
        nargs="*",
        default=[],
        metavar="DATASET=DIR",
        help="raw-file folder per real dataset, e.g. retailrocket=~/data/rr",
    )
    p.add_argument("--methods", nargs="+", default=METHODS, choices=METHODS)
    p.add_argument("--seeds", nargs="+", type=int, default=None, help="default: the profile's")
    p.add_argument("--profile", choices=sorted(PROFILES), default="full")
    p.add_argument(
        "--study",
        choices=["table1", "ablation", "transfer", "lambda", "polish"],
        default="table1",
    )
    p.add_argument("--out", type=Path, default=Path("runs/benchmark"), help="benchmark folder")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument("--progress", action="store_true", help="show the per-cell tqdm bars")
    p.add_argument(
        "--workers",
        type=int,
        default=1,
        help="run this many seeds at once, each in its own process with an equal share of the "
        "torch threads (on 2 CPU cores, 2 workers finish about 1.4x as many cells per hour)",
    )
    p.add_argument(
        "--report-only",
        action="store_true",
        help="run nothing; tabulate the seeds whose cells are all finished",
    )
    args = p.parse_args(argv)
    args.command = "python train/benchmark.py " + shlex.join(sys.argv[1:] if argv is None else argv)
    args.data_dirs = dict(item.split("=", 1) for item in args.data_dir)
    if args.workers < 1:
        p.error(f"--workers must be at least 1, got {args.workers}")
    return args


class MissingCell(Exception):
    """A cell that ``--report-only`` would have had to run."""


class Cells:
    """Runs each cell's script in-process unless the cell folder already has ``metrics.json``;
    records each run cell's wall time in its ``cell.json``."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args, self.profile = args, PROFILES[args.profile]
        self.root = args.out / args.profile
        self.ran: list[float] = []  # wall seconds of the cells this invocation ran
        self.reused: set[Path] = set()  # cells finished before this invocation started
        self.used: dict[Path, None] = {}  # every cell read or run, in order (an ordered set)
        self.started, self.started_wall = time.time(), time.perf_counter()

    def common(self, dataset: str, seed: int) -> list[str]:
        flags = ["--dataset", dataset, "--seed", str(seed), "--device", self.args.device]
        if dataset.endswith("synthetic"):
            flags += ["--scale", self.profile["scale"]]
        if dataset in self.args.data_dirs:
            flags += ["--data-dir", self.args.data_dirs[dataset]]
        return flags + ([] if self.args.progress else ["--no-progress"])

    def run(self, folder: Path, script, flags: list[str]) -> dict:
        self.used[folder] = None
        if (folder / "metrics.json").is_file():
            # Not counted: cells that this invocation's --workers processes just finished.
            if (folder / "metrics.json").stat().st_mtime < self.started:
                self.reused.add(folder)  # a set: RMTL and D-PLE cells read their backbone's too
        elif self.args.report_only:
            raise MissingCell(str(folder.relative_to(self.root)))
        else:
            print(f"--- {folder.relative_to(self.root)}", flush=True)
            started = time.perf_counter()
            script.main([*flags, "--run-dir", str(folder)])
            self.ran.append(time.perf_counter() - started)
            runlib.write_json(
                folder / "cell.json", {"seconds": self.ran[-1], "finished": utc_now()}
            )
        return runlib.read_json(folder / "metrics.json")["test"]

    def folder(self, dataset: str, seed: int, name: str) -> Path:
        """The run folder of one (dataset, seed, method or backbone) cell."""
        return self.root / dataset / f"seed{seed}" / name

    def backbone(
        self, dataset: str, seed: int, model: str, for_cell: Path | None = None
    ) -> tuple[Path, dict]:
        """The backbone cell's checkpoint and test metrics. ``for_cell``: the dependent cell that
        is about to load the checkpoint; if that cell will run and the finished backbone's
        checkpoint is gone (its summary was carried here without it, or it was deleted to save
        disk), the backbone is retrained: same seed and thread count, same weights."""
        folder = self.folder(dataset, seed, model)
        checkpoint = folder / "checkpoints" / f"{model}.pt"
        will_run = for_cell is not None and not (for_cell / "metrics.json").is_file()
        lost = (folder / "metrics.json").is_file() and not checkpoint.is_file()
        if will_run and lost and not self.args.report_only:
            print(f"{folder.relative_to(self.root)}: no checkpoint for {for_cell.name}; retrain")
            shutil.rmtree(folder)  # its summary is stale; a fresh run folder, not a resume
        flags = [*self.common(dataset, seed), "--model", model, *self.profile["model"]]
        return checkpoint, self.run(folder, mtl_baselines, flags)

    def rmtl(self, dataset: str, seed: int, model: str, name: str, *extra: str) -> dict:
        folder = self.folder(dataset, seed, name)
        checkpoint, _ = self.backbone(dataset, seed, model, for_cell=folder)
        flags = [
            *self.common(dataset, seed),
            "--backbone",
            model,
            "--backbone-checkpoint",
            str(checkpoint),
            *self.profile["model"],
            *self.profile["rmtl"],
            *extra,
        ]
        return self.run(folder, rmtl_ddpg, flags)

    def critics(self, dataset: str, seed: int, model: str) -> Path:
        """The critics of the ``rmtl-<model>`` cell, rerun (same seed, same critics) if its
        summary came here without its checkpoints."""
        folder = self.folder(dataset, seed, f"rmtl-{model}")
        path = folder / "checkpoints" / "critics.pt"
        if (folder / "metrics.json").is_file() and not path.is_file() and not self.args.report_only:
            print(f"{folder.relative_to(self.root)}: no critics checkpoint; rerun")
            shutil.rmtree(folder)  # a fresh run folder: the old config may predate new options
        self.rmtl(dataset, seed, model, f"rmtl-{model}")
        return path

    def dple(self, dataset: str, seed: int) -> dict:
        folder = self.folder(dataset, seed, "d-ple")
        checkpoint, _ = self.backbone(dataset, seed, "ple", for_cell=folder)
        flags = [
            *self.common(dataset, seed),
            "--backbone-checkpoint",
            str(checkpoint),
            *self.profile["model"],
            *self.profile["dple"],
        ]
        return self.run(folder, dple_sb3, flags)


def run_order(methods: list[str]) -> list[str]:
    """``methods`` in the order their cells run (``RUN_ORDER``)."""
    return sorted(methods, key=RUN_ORDER.index)


def method_metrics(cells: Cells, dataset: str, seed: int, method: str) -> dict:
    """``{task: metrics}`` of ``method`` in one (dataset, seed) cell."""
    if method in SUPERVISED:
        return cells.backbone(dataset, seed, method)[1][method]
    if method == "d-ple":
        return cells.dple(dataset, seed)["d-ple"]
    return cells.rmtl(dataset, seed, RMTL[method], method)[method]


def table1(cells: Cells, args: argparse.Namespace, seeds: list[int]) -> None:
    results: dict[str, dict[str, list]] = {}
    used_seeds: dict[str, list[int]] = {}
    oracles: dict[str, dict] = {}
    for dataset in args.datasets:
        by_seed = {}
        for seed in seeds:  # seed by seed: a stopped benchmark leaves whole seeds behind
            try:
                done = {m: method_metrics(cells, dataset, seed, m) for m in run_order(args.methods)}
                by_seed[seed] = {m: done[m] for m in args.methods}
            except MissingCell as missing:
                print(f"{dataset} seed {seed}: not finished ({missing} has no metrics.json)")
        if not by_seed:
            continue
        used_seeds[dataset] = list(by_seed)
        results[dataset] = {m: [by_seed[s][m] for s in by_seed] for m in args.methods}
        # Every script scores the oracle, and the data seed is fixed across seeds.
        first = cells.folder(dataset, used_seeds[dataset][0], args.methods[0])
        oracle = runlib.read_json(first / "metrics.json")["test"].get("oracle")
        if oracle is not None:
            oracles[dataset] = oracle
    if not results:
        raise SystemExit("no dataset has a seed with every cell finished; nothing to tabulate")
    pairs = {m: RMTL[m] for m in args.methods if m in RMTL and RMTL[m] in args.methods}
    frame = tables.table1_frame(results, pairs, oracles)
    out = cells.root
    atomic_write_bytes(out / "table1.csv", frame.to_csv(index=False).encode())
    seed_rows = per_seed_frame(cells, results, used_seeds)
    atomic_write_bytes(out / "table1_seeds.csv", seed_rows.to_csv(index=False).encode())
    names = set(args.methods) | {RMTL[m] for m in args.methods if m in RMTL}
    names |= {"ple"} if "d-ple" in names else set()  # D-PLE's pretrained backbone
    folders = {
        dataset: [cells.folder(dataset, s, name) for s in seeds for name in sorted(names)]
        for dataset, seeds in used_seeds.items()
    }
    text = tables.table1_markdown(frame, used_seeds) + "\n" + provenance(cells, folders)
    atomic_write_bytes(out / "table1.md", text.encode())
    for dataset, by_method in results.items():
        for task in next(iter(by_method.values()))[0]:
            plot_bars(by_method, task, out / f"table1_{dataset}_{task}.png", f"{dataset} {task}")
    print(text)


def per_seed_frame(
    cells: Cells, results: dict[str, dict[str, list]], used_seeds: dict[str, list[int]]
) -> pd.DataFrame:
    """One row per dataset, seed, method and task: the cell's test metrics and its wall time,
    the numbers behind every mean, std and t-test of ``table1.csv``."""
    rows = []
    for dataset, by_method in results.items():
        for method, per_seed in by_method.items():
            for seed, tasks in zip(used_seeds[dataset], per_seed, strict=True):
                seconds = cell_seconds(cells.folder(dataset, seed, method))
                for task, metrics in tasks.items():
                    rows.append(
                        {"dataset": dataset, "seed": seed, "method": method, "task": task,
                         **metrics, "cell_seconds": seconds}
                    )  # fmt: skip
    return pd.DataFrame(rows)


def utc_now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")


def cell_seconds(folder: Path) -> float:
    """A finished cell's recorded wall time; for cells finished before ``cell.json`` existed, the
    time between its ``config.json`` (written first) and its ``metrics.json`` (written last)."""
    record = folder / "cell.json"
    if record.is_file():
        return float(runlib.read_json(record)["seconds"])
    return (folder / "metrics.json").stat().st_mtime - (folder / "config.json").stat().st_mtime


def provenance(cells: Cells, folders: dict[str, list[Path]]) -> str:
    """Markdown footer: command, date, machine, this invocation's wall time, and per dataset the
    recorded wall time of the cells behind the numbers (``folders``)."""
    env = runlib.environment_info()
    lines = [
        "## Provenance",
        "",
        f"- Command: `{cells.args.command}` (profile `{cells.args.profile}`)",
        f"- Written: {utc_now()}",
        f"- Machine: {env['cpu']}, {env['logical_cpus']} logical CPUs, {env['platform']}; "
        f"Python {env['python']}, torch {env['torch']}, "
        f"device `{cells.args.device}`",
        f"- This invocation: {duration(time.perf_counter() - cells.started_wall)} wall time, "
        f"{cells.args.workers} worker(s); ran {len(cells.ran)} cells "
        f"({duration(sum(cells.ran))} of cell time), reused {len(cells.reused)} finished cells",
    ]
    for dataset, cell_folders in folders.items():
        seeds = sorted({int(f.parent.name.removeprefix("seed")) for f in cell_folders})
        total = sum(cell_seconds(f) for f in cell_folders)
        threads = sorted(
            {runlib.read_json(f / "config.json")["environment"]["torch_threads"]
             for f in cell_folders}
        )  # fmt: skip
        lines.append(
            f"- {dataset}: {len(cell_folders)} cells (seeds {seeds}), {duration(total)} of "
            f"recorded cell wall time; torch threads per cell: {', '.join(map(str, threads))}"
        )
    return "\n".join(lines) + "\n"


def duration(seconds: float) -> str:
    if seconds < 3600:
        return f"{seconds / 60:.1f} min"
    return f"{int(seconds // 3600)} h {int(seconds % 3600 // 60):02d} min"


def plot_bars(by_method: dict[str, list], task: str, path: Path, title: str) -> None:
    """Mean ± std bars per method; the axis fits the methods that are close together, so a
    collapsed method (D-PLE on the twins) does not flatten the others: its bar runs off the axis
    and its mean is written at the edge."""
    fig, axes = plt.subplots(1, len(runlib.METRICS), figsize=(15, 3.8))
    methods = list(by_method)
    for ax, metric in zip(axes, runlib.METRICS, strict=True):
        values = np.array([[seed[task][metric] for seed in by_method[m]] for m in methods])
        mean, std = values.mean(1), values.std(1)
        ax.bar(
            range(len(methods)),
            mean,
            yerr=std,
            capsize=3,
            color=[plt.cm.tab10.colors[i % 10] for i in range(len(methods))],
        )
        ax.set_xticks(range(len(methods)), methods, rotation=40, ha="right", fontsize=8)
        inside = ~off_scale(mean)
        low, high = (mean - std)[inside].min(), (mean + std)[inside].max()
        pad = (high - low) * 0.3 + 1e-4
        ax.set_ylim(low - pad, high + pad)
        for i in np.flatnonzero((mean < low - pad) | (mean > high + pad)):
            edge = low - pad * 0.9 if mean[i] < low else high + pad * 0.9
            arrow = "↓" if mean[i] < low else "↑"
            ax.text(
                i,
                edge,
                f"{arrow}{mean[i]:.3f}",
                ha="center",
                va="center",
                fontsize=7,
                bbox={"facecolor": "white", "edgecolor": "none", "pad": 1},
            )
        ax.set_title(f"{title} {runlib.METRIC_LABELS[metric]}")
    runlib.save_figure(fig, path)


def off_scale(means: np.ndarray, spread: float = 8.0) -> np.ndarray:
    """Means more than ``spread`` median absolute deviations from the median of all methods."""
    deviation = np.abs(means - np.median(means))
    return deviation > spread * max(float(np.median(deviation)), 1e-9)


STUDY_TITLES = {
    "ablation": "RMTL-PLE against its ablations: `cw` constant weight 0.5, `wl` weight "
    "1 - lambda y Q, `nlc` weight -Q; `rmtl` is the full method (1 - lambda Q), `backbone` the "
    "pretrained PLE before any polish",
    "transfer": "Critics trained with one backbone (source) weighting the polish of another "
    "(target); the diagonal is RMTL itself",
    "lambda": "RMTL-PLE polished with the RMTL-PLE critics at each lambda (weight 1 - lambda Q; "
    "lambda 0 is unweighted retraining)",
    "polish": f"RMTL-{POLISH_BACKBONE.upper()} polished so that retraining cannot overshoot: "
    f"learning rate {POLISH_LR:g} (a tenth of pretraining's) and the pretrained backbone "
    "competing in the polish's early stopping (the guard). `polish-rmtl` weights each loss "
    "1 - lambda Q with the RMTL critics, `polish-cw` is its constant-weight control (0.5) under "
    "the same schedule, `rmtl` the faithful polish (Table 1), `backbone` the pretrained model",
}


def study(cells: Cells, args: argparse.Namespace, seeds: list[int]) -> None:
    """Ablation, transfer or lambda study on the first dataset; one CSV and plot or table each."""
    frame = pd.DataFrame([row for seed in seeds for row in study_rows(cells, args, seed)])
    atomic_write_bytes(cells.root / f"study_{args.study}.csv", frame.to_csv(index=False).encode())
    dataset = args.datasets[0]
    text = "\n".join(
        [
            f"# {args.study.capitalize()} study on {dataset}",
            "",
            f"{STUDY_TITLES[args.study]}. Test split, mean ± std over model seeds {seeds}.",
            "",
            tables.study_markdown(frame, args.study),
            *([polish_comparisons(frame)] if args.study == "polish" else []),
            provenance(cells, {dataset: list(cells.used)}),
        ]
    )
    atomic_write_bytes(cells.root / f"study_{args.study}.md", text.encode())
    if args.study == "lambda":
        plot_lambda(frame, cells.root / "study_lambda.png")
    elif args.study == "transfer":
        plot_transfer(frame, cells.root / "study_transfer.png")
    print(text)


def polish_comparisons(frame: pd.DataFrame) -> str:
    """Paired t-tests of the polish study: the weighting (RMTL vs CW under the same schedule) and
    each against the backbone."""
    results = {
        variant: [
            {t: dict(g.loc[g["task"] == t, list(runlib.METRICS)].iloc[0]) for t in g["task"]}
            for _, g in group.groupby("seed", sort=True)
        ]
        for variant, group in frame.groupby("variant", sort=False)
    }
    tasks = list(dict.fromkeys(frame["task"]))
    rows = tables.comparison_rows(
        results, {"polish-rmtl": "polish-cw", "polish-cw": "backbone"}, tasks
    ) + tables.comparison_rows(results, {"polish-rmtl": "backbone"}, tasks)
    return (
        "\nPaired comparisons over seeds (`*`: two-sided paired t-test p < 0.05):\n\n"
        + tables.comparison_markdown(rows)
        + "\n"
    )


def study_rows(cells: Cells, args: argparse.Namespace, seed: int) -> list[dict]:
    """One seed's rows of the study named by ``args.study``, running its missing cells."""
    dataset = args.datasets[0]
    base = {m: cells.backbone(dataset, seed, m)[1][m] for m in ("esmm", "mmoe", "ple")}
    rows: list[dict] = []
    if args.study == "ablation":
        critics = cells.critics(dataset, seed, "ple")
        variants = {"rmtl": cells.rmtl(dataset, seed, "ple", "rmtl-ple")["rmtl-ple"]}
        for v in ("cw", "wl", "nlc"):
            variants[v] = cells.rmtl(
                dataset,
                seed,
                "ple",
                f"ablation-{v}",
                "--weight-variant",
                v,
                "--critics-from",
                str(critics),
            )["rmtl-ple"]
        rows += [
            {"seed": seed, "variant": v, "task": t, **m}
            for v, r in {"backbone": base["ple"], **variants}.items()
            for t, m in r.items()
        ]
    elif args.study == "transfer":
        for source in ("esmm", "mmoe", "ple"):
            critics = cells.critics(dataset, seed, source)
            for target in ("esmm", "mmoe", "ple"):
                name = f"rmtl-{target}" if source == target else f"transfer-{source}-to-{target}"
                res = cells.rmtl(dataset, seed, target, name, "--critics-from", str(critics))
                rows += [
                    {
                        "seed": seed,
                        "source": source,
                        "target": target,
                        "task": t,
                        "auc_delta": m["auc"] - base[target][t]["auc"],
                        **m,
                    }
                    for t, m in res[f"rmtl-{target}"].items()
                ]
    elif args.study == "polish":
        b = POLISH_BACKBONE
        critics = cells.critics(dataset, seed, b)
        variants = {
            "backbone": base[b],
            "rmtl": cells.rmtl(dataset, seed, b, f"rmtl-{b}")[f"rmtl-{b}"],
        }
        for v in ("rmtl", "cw"):
            variants[f"polish-{v}"] = cells.rmtl(
                dataset, seed, b, f"polish-{v}", *POLISH_FLAGS, "--weight-variant", v,
                "--critics-from", str(critics),
            )[f"rmtl-{b}"]  # fmt: skip
        rows += [
            {"seed": seed, "variant": v, "task": t, **m}
            for v, r in variants.items()
            for t, m in r.items()
        ]
    else:
        critics = cells.critics(dataset, seed, "ple")
        for lam in LAMBDAS:
            res = cells.rmtl(
                dataset,
                seed,
                "ple",
                f"lambda-{lam}",
                "--lam",
                str(lam),
                "--critics-from",
                str(critics),
            )["rmtl-ple"]
            rows += [{"seed": seed, "lambda": lam, "task": t, **m} for t, m in res.items()]
    return rows


def run_seed(args: argparse.Namespace, seed: int, torch_threads: int) -> list[float]:
    """Worker process: run every missing cell of one seed; the wall seconds of those it ran."""
    torch.set_num_threads(torch_threads)
    cells = Cells(args)
    if args.study == "table1":
        for dataset in args.datasets:
            for method in run_order(args.methods):
                method_metrics(cells, dataset, seed, method)
    else:
        study_rows(cells, args, seed)
    return cells.ran


def run_seeds_in_parallel(cells: Cells, args: argparse.Namespace, seeds: list[int]) -> None:
    """Run the seeds' missing cells in ``args.workers`` processes, each with its share of the
    torch threads: small networks use two threads poorly, so two single-thread processes on two
    cores finish more cells per hour than one two-thread process. Results are then read back."""
    threads = max(1, torch.get_num_threads() // args.workers)
    spawn = multiprocessing.get_context("spawn")  # no forked torch thread pools
    with ProcessPoolExecutor(args.workers, mp_context=spawn) as pool:
        for ran in pool.map(partial(run_seed, args, torch_threads=threads), seeds):
            cells.ran += ran


def plot_lambda(frame: pd.DataFrame, path: Path) -> None:
    """AUC and Logloss (rows) of each task (columns) against lambda, mean ± std over seeds; each
    panel has its own y axis, since the tasks' levels differ far more than lambda moves them."""
    tasks = list(dict.fromkeys(frame["task"]))
    fig, axes = plt.subplots(
        2, len(tasks), figsize=(5.5 * len(tasks), 7), squeeze=False, layout="constrained"
    )
    for row, metric in enumerate(("auc", "logloss")):
        for ax, task in zip(axes[row], tasks, strict=True):
            stats_by_lambda = frame[frame["task"] == task].groupby("lambda")[metric]
            mean, std = stats_by_lambda.mean(), stats_by_lambda.std().fillna(0.0)
            ax.errorbar(mean.index, mean.values, yerr=std.values, marker="o", capsize=3)
            label = runlib.METRIC_LABELS[metric]
            ax.set(xlabel="lambda", ylabel=label, title=f"RMTL-PLE {task} {label} vs lambda")
            ax.grid(alpha=0.3)
    runlib.save_figure(fig, path)


def plot_transfer(frame: pd.DataFrame, path: Path) -> None:
    """One heatmap per task: mean AUC delta of each (critic source, target backbone) pair."""
    tasks = list(dict.fromkeys(frame["task"]))
    fig, axes = plt.subplots(
        1, len(tasks), figsize=(6 * len(tasks), 4), squeeze=False, layout="constrained"
    )
    for ax, task in zip(axes[0], tasks, strict=True):
        matrix = frame[frame["task"] == task].pivot_table(
            index="source", columns="target", values="auc_delta", aggfunc="mean"
        )
        limit = max(float(np.abs(matrix.values).max()), 1e-6)
        image = ax.imshow(matrix.values, cmap="RdBu", vmin=-limit, vmax=limit)
        for (i, j), value in np.ndenumerate(matrix.values):
            color = "white" if abs(value) > 0.6 * limit else "black"  # readable on dark cells
            ax.text(j, i, f"{value:+.4f}", ha="center", va="center", fontsize=9, color=color)
        ax.set_xticks(range(len(matrix.columns)), matrix.columns)
        ax.set_yticks(range(len(matrix.index)), matrix.index)
        ax.set(xlabel="target backbone (polished)", ylabel="critics trained with",
               title=f"{task}: AUC delta vs target backbone")  # fmt: skip
        fig.colorbar(image, ax=ax, shrink=0.8)
    runlib.save_figure(fig, path)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    cells = Cells(args)
    seeds = args.seeds if args.seeds is not None else PROFILES[args.profile]["seeds"]
    cells.root.mkdir(parents=True, exist_ok=True)
    try:
        if args.workers > 1 and not args.report_only:
            run_seeds_in_parallel(cells, args, seeds)
        if args.study == "table1":
            table1(cells, args, seeds)
        else:
            study(cells, args, seeds)
    except MissingCell as missing:
        raise SystemExit(f"--report-only: cell {missing} is not finished") from None
    print(
        f"\nWall time {time.perf_counter() - cells.started_wall:.0f} s ({len(cells.ran)} cells run, "
        f"{len(cells.reused)} reused); results in {cells.root}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
