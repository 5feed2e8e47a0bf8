"""Table 1 of the RMTL paper, its ablation, transferability, lambda and polish studies, in one command.

    python train/benchmark.py                                  # full: both twins, 9 methods, 5 seeds
    python train/benchmark.py --profile quick                  # tiny twins, 1 seed, few epochs (CI)
    python train/benchmark.py --study ablation|transfer|lambda|polish
    python train/benchmark.py --datasets retailrocket kuairand-1k --data-dir retailrocket=~/rr ...
    python train/benchmark.py --report-only                    # table of the finished cells so far
    python train/benchmark.py --workers 2                      # two seeds at once, 1 process each
    python train/benchmark.py --block balancers --workers 2    # RMTL vs the loss balancers (bf16)
    python train/benchmark.py --weighting upgrad               # Table 1 with another weighting
    python train/benchmark.py --block rl                       # standard RL algorithms' scores

Every (dataset, seed, method) cell is one run folder of a ``jobs`` job under ``--out``, run
in-process; a cell with ``metrics.json`` is finished and skipped, so an interrupted benchmark
resumes. Each pretrained backbone is trained once per (dataset, seed) and shared by its RMTL
variant and by D-PLE; a dependent cell whose backbone or critics checkpoint no longer loads gets
them retrained (same seed, same weights). Results: ``table1.md``/``table1.csv`` (mean ± std over
seeds, ``*`` where an RMTL variant differs from its backbone with paired t-test p < 0.05, the
oracle column on synthetic data), ``table1_seeds.csv`` (every cell's per-seed metrics) and one bar
plot per dataset and task. ``--report-only`` tabulates the seeds whose cells are all finished.
"""

from __future__ import annotations

import argparse
import multiprocessing
import shlex
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from functools import partial
from pathlib import Path

import pandas as pd
import torch

from agents.weighting import WEIGHTINGS
from rmtl_bench import blocks, plots, rl_block, tables
from rmtl_bench.cells import Cells, MissingCell, whole_seeds
from rmtl_bench.run_folder import environment_info, export_cells, read_json, run_seconds
from rmtl_bench.studies import METHODS, PROFILES, RMTL, RUN_ORDER, STUDIES
from rmtl_env.data.errors import run_command
from rmtl_env.data.io import atomic_write_bytes


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    # fmt: off
    p.add_argument("--datasets", nargs="+", default=["retailrocket-synthetic", "kuairand-synthetic"])
    p.add_argument("--data-dir", nargs="*", default=[], metavar="DATASET=DIR",
                   help="raw-file folder per real dataset, e.g. retailrocket=~/data/rr")
    p.add_argument("--methods", nargs="+", default=METHODS, choices=METHODS)
    p.add_argument("--seeds", nargs="+", type=int, default=None, help="default: the profile's")
    p.add_argument("--profile", choices=sorted(PROFILES), default=None,
                   help="default: full, or bf16 for --block balancers")
    p.add_argument("--study", choices=["table1", *STUDIES], default="table1")
    p.add_argument("--block", choices=["balancers", *blocks.SWEEPS, "rl"], default=None,
                   help="balancers: RMTL against every loss weighting, from scratch and as a "
                   "polish of the same backbone; conflict or noise: equal, RMTL and "
                   "--weightings polishing PLE on the RetailRocket twin at three levels of that "
                   "generator knob (rmtl_bench/blocks.py); rl: reference scores of standard online "
                   "and offline RL algorithms beside the supervised models (rmtl_bench/rl_block.py)")
    p.add_argument("--rl-methods", nargs="+", choices=rl_block.METHODS,
                   default=list(rl_block.METHODS), help="the rows of --block rl")
    p.add_argument("--weightings", nargs="+", choices=WEIGHTINGS, default=list(WEIGHTINGS),
                   help="the block's weightings (RMTL always runs)")
    p.add_argument("--weighting", choices=WEIGHTINGS, default="equal",
                   help="Table 1 and the studies with this loss weighting in every training "
                   "(TrainConfig.weighting); results under <out>/<profile>-<weighting>")
    p.add_argument("--out", type=Path, default=Path("runs/benchmark"), help="benchmark folder")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument("--progress", action="store_true", help="show the per-cell tqdm bars")
    p.add_argument("--cell-plots", action=argparse.BooleanOptionalAction, default=True,
                   help="each cell's own PNG figures (the tables' bar plots are always written)")
    p.add_argument("--workers", type=int, default=1,
                   help="run this many seeds at once, each in its own process with an equal share "
                   "of the torch threads (on 2 CPU cores, 2 workers finish about 1.4x as many "
                   "cells per hour)")
    p.add_argument("--rl-threads", type=int, default=1,
                   help="torch threads of --block rl's cells: 1 suits its small networks; TD3 "
                   "from the pretrained PLE (a paper-size actor) runs 1.6x faster on 2")
    p.add_argument("--report-only", action="store_true",
                   help="run nothing; tabulate the seeds whose cells are all finished")
    p.add_argument("--export-cells", type=Path, metavar="DIR",
                   help="run nothing; copy every finished cell's summaries (JSON and CSV, no "
                   "checkpoints or figures) from <out>/<profile> to DIR/<profile>, to commit "
                   "them or resume elsewhere; with --block rl, those of <out>/rl-<profile> and "
                   "each of its seeds' supervised rows, to DIR/rl-<profile>")
    # fmt: on
    args = p.parse_args(argv)
    args.command = "python train/benchmark.py " + shlex.join(sys.argv[1:] if argv is None else argv)
    args.data_dirs = dict(item.split("=", 1) for item in args.data_dir)
    if args.workers < 1:
        p.error(f"--workers must be at least 1, got {args.workers}")
    if args.rl_threads < 1 or (args.rl_threads != 1 and args.block != "rl"):
        p.error(
            f"--rl-threads takes an integer >= 1 and only with --block rl, got "
            f"{args.rl_threads} with --block {args.block}"
        )
    if args.block is not None and (args.study != "table1" or args.weighting != "equal"):
        p.error("--block runs its own cells: give it without --study and --weighting")
    if args.profile is None:
        args.profile = "bf16" if args.block not in (None, "rl") else "full"
    if args.block == "rl" and args.workers > 1:
        p.error("--block rl runs one cell at a time (--workers 1)")
    if args.block in blocks.SWEEPS and args.weightings == list(WEIGHTINGS):
        p.error(f"--block {args.block}: name the balancers to sweep with --weightings")
    args.weightings = list(dict.fromkeys(["equal", *args.weightings]))  # the control first
    return args


def table1(cells: Cells, args: argparse.Namespace, seeds: list[int]) -> None:
    results, used_seeds, oracles = {}, {}, {}
    methods = sorted(args.methods, key=RUN_ORDER.index)  # each backbone right before its users
    for dataset in args.datasets:
        by_seed = {}
        for seed in seeds:  # seed by seed: a stopped benchmark leaves whole seeds behind
            try:
                done = {m: cells.method(dataset, seed, m) for m in methods}
                by_seed[seed] = {m: done[m] for m in args.methods}
            except MissingCell as missing:
                print(f"{dataset} seed {seed}: not finished ({missing} has no metrics.json)")
        if not by_seed:
            continue
        used_seeds[dataset] = list(by_seed)
        results[dataset] = {m: [by_seed[s][m] for s in by_seed] for m in args.methods}
        first = cells.folder(dataset, used_seeds[dataset][0], args.methods[0])
        oracle = read_json(first / "metrics.json")["test"].get("oracle")  # fixed data seed
        if oracle is not None:
            oracles[dataset] = oracle
    if not results:
        raise SystemExit("no dataset has a seed with every cell finished; nothing to tabulate")
    pairs = {m: RMTL[m] for m in args.methods if m in RMTL and RMTL[m] in args.methods}
    frame = tables.table1_frame(results, pairs, oracles)
    out = cells.root
    atomic_write_bytes(out / "table1.csv", frame.to_csv(index=False).encode())
    seed_rows = tables.per_seed_frame(
        results, used_seeds, lambda d, s, m: run_seconds(cells.folder(d, s, m))
    )
    atomic_write_bytes(out / "table1_seeds.csv", seed_rows.to_csv(index=False).encode())
    names = set(args.methods) | {RMTL[m] for m in args.methods if m in RMTL}
    names |= {"ple"} if "d-ple" in names else set()  # D-PLE's pretrained backbone
    folders = {d: [cells.folder(d, s, n) for s in ss for n in sorted(names)]
               for d, ss in used_seeds.items()}  # fmt: skip
    text = tables.table1_markdown(frame, used_seeds) + "\n" + provenance(cells, folders)
    atomic_write_bytes(out / "table1.md", text.encode())
    for dataset, by_method in results.items():
        for task in next(iter(by_method.values()))[0]:
            plots.plot_bars(
                by_method, task, out / f"table1_{dataset}_{task}.png", f"{dataset} {task}"
            )
    print(text)


def provenance(cells: Cells, folders: dict[str, list[Path]]) -> str:
    """Markdown footer: command, date, machine, this invocation's wall time, and per dataset the
    recorded wall time of the cells behind the numbers (``folders``)."""
    threads = {
        d: sorted({read_json(f / "config.json")["environment"]["torch_threads"] for f in fs})
        for d, fs in folders.items()
    }
    seconds = {d: sum(run_seconds(f) for f in fs) for d, fs in folders.items()}
    return tables.provenance_markdown(
        args=cells.args, env=environment_info(), folders=folders, seconds=seconds,
        threads=threads, wall=time.perf_counter() - cells.started_wall, ran=len(cells.ran),
        ran_seconds=sum(cells.ran), reused=len(cells.reused),
    )  # fmt: skip


def study(cells: Cells, args: argparse.Namespace, seeds: list[int]) -> None:
    """One study on the first dataset: its CSV, Markdown table and plot."""
    frame = pd.DataFrame([row for seed in seeds for row in study_rows(cells, args, seed)])
    atomic_write_bytes(cells.root / f"study_{args.study}.csv", frame.to_csv(index=False).encode())
    spec, dataset = STUDIES[args.study], args.datasets[0]
    text = "\n".join([
        f"# {args.study.capitalize()} study on {dataset}", "",
        f"{spec.title}. Test split, mean ± std over model seeds {seeds}.", "",
        tables.study_markdown(frame, args.study),
        *([tables.paired_markdown(frame, "variant", spec.pairs)] if spec.pairs else []),
        provenance(cells, {dataset: list(cells.used)}),
    ])  # fmt: skip
    atomic_write_bytes(cells.root / f"study_{args.study}.md", text.encode())
    if spec.plot is not None:
        spec.plot(frame, cells.root / f"study_{args.study}.png")
    print(text)


def study_rows(cells: Cells, args: argparse.Namespace, seed: int) -> list[dict]:
    """One seed's rows of ``args.study``, running its missing cells."""
    dataset, spec = args.datasets[0], STUDIES[args.study]
    base = {m: cells.backbone(dataset, seed, m)[1][m] for m in ("esmm", "mmoe", "ple")}
    rows = [{"seed": seed, "variant": "backbone", "task": t, **m}
            for t, m in (base[spec.backbone] if spec.backbone else {}).items()]  # fmt: skip
    for variant in spec.variants:
        for task, metrics in cells.rmtl(dataset, seed, variant).items():
            delta = {"auc_delta": metrics["auc"] - base[variant.target][task]["auc"]}
            rows.append({"seed": seed, **variant.labels, "task": task,
                         **(delta if spec.delta else {}), **metrics})  # fmt: skip
    return rows


def balancers(cells: Cells, args: argparse.Namespace, seeds: list[int]) -> None:
    """The balancers block: ``balancers.csv`` (every cell's per-seed metrics),
    ``balancers_summary.csv``, ``balancers.md`` and ``balancers.png``."""
    methods = [*args.weightings, blocks.RMTL_METHOD]
    rows, done = whole_seeds(  # whole seeds only, as Table 1
        seeds, lambda seed: blocks.block_frame(cells, args.datasets, methods, [seed], run_seconds),
        "the block",
    )  # fmt: skip
    order = {
        (p.dataset, p.protocol, p.backbone): i for i, p in enumerate(blocks.panels(args.datasets))
    }
    panel = rows[["dataset", "protocol", "backbone"]].apply(tuple, axis=1).map(order)
    rows = rows.iloc[panel.argsort(kind="stable")].reset_index(drop=True)  # panel by panel
    summary = blocks.summary_frame(rows, tables.paired_p_value)
    out = cells.root
    atomic_write_bytes(out / "balancers.csv", rows.to_csv(index=False).encode())
    atomic_write_bytes(out / "balancers_summary.csv", summary.to_csv(index=False).encode())
    # The cells behind the table: of the tabulated seeds only (an unfinished seed's probe may
    # have named a folder that does not exist yet).
    folders = {d: [f for f in cells.used if any(f == cells.folder(d, s, f.name) for s in done)]
               for d in args.datasets}  # fmt: skip
    text = (
        tables.balancers_markdown(summary, done)
        + "\n"
        + provenance(cells, {d: fs for d, fs in folders.items() if fs})
    )
    atomic_write_bytes(out / "balancers.md", text.encode())
    plots.plot_balancers(rows, out / "balancers.png")
    print(text)


def sweep(cells: Cells, args: argparse.Namespace, seeds: list[int]) -> None:
    """A knob sweep: ``sweep_<knob>.csv`` (per seed), ``sweep_<knob>_gains.csv``, ``.md`` and
    ``.png`` (each method's AUC gain over equal weighting against the knob)."""
    knob, methods = args.block, [*args.weightings, blocks.RMTL_METHOD]
    rows = blocks.sweep_frame(cells, knob, methods, seeds, run_seconds)
    gains = blocks.sweep_gains(rows, tables.paired_p_value)
    out = cells.root
    atomic_write_bytes(out / f"sweep_{knob}.csv", rows.to_csv(index=False).encode())
    atomic_write_bytes(out / f"sweep_{knob}_gains.csv", gains.to_csv(index=False).encode())
    text = (
        tables.sweep_markdown(gains, knob, seeds)
        + "\n"
        + provenance(cells, {blocks.SWEEP_DATASET: list(cells.used)})
    )
    atomic_write_bytes(out / f"sweep_{knob}.md", text.encode())
    plots.plot_sweep(gains, knob, out / f"sweep_{knob}.png")
    print(text)


def run_seed(args: argparse.Namespace, seed: int, torch_threads: int) -> list[float]:
    """Worker process: run every missing cell of one seed; the wall seconds of those it ran."""
    torch.set_num_threads(torch_threads)
    cells = Cells(args)
    if args.block == "balancers":
        blocks.block_frame(cells, args.datasets, [*args.weightings, blocks.RMTL_METHOD], [seed],
                           run_seconds)  # fmt: skip
    elif args.block in blocks.SWEEPS:
        blocks.sweep_frame(cells, args.block, [*args.weightings, blocks.RMTL_METHOD], [seed],
                           run_seconds)  # fmt: skip
    elif args.study == "table1":
        for dataset in args.datasets:
            for method in sorted(args.methods, key=RUN_ORDER.index):
                cells.method(dataset, seed, method)
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


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    cells = Cells(args)
    if args.export_cells is not None:
        if args.block == "rl":
            count, target = rl_block.export_rl_cells(cells, args.export_cells)
        else:
            target = args.export_cells / cells.root.name
            count = export_cells(cells.root, target)
        print(f"{count} finished cells exported to {target}")
        return 0
    seeds = args.seeds if args.seeds is not None else list(PROFILES[args.profile].seeds)
    cells.root.mkdir(parents=True, exist_ok=True)
    if args.profile == "quick":
        print("Profile quick: a smoke run (tiny twins, tiny networks, two epochs) that checks "
              "every stage runs; its metrics are not comparable with the full profile's.")  # fmt: skip
    if args.block == "rl":
        torch.set_num_threads(args.rl_threads)  # 1 by default: small networks use 2 poorly
        rl_block.rl_block(args, seeds)
        return 0
    try:
        if args.workers > 1 and not args.report_only:
            run_seeds_in_parallel(cells, args, seeds)
        if args.block == "balancers":
            balancers(cells, args, seeds)
        elif args.block in blocks.SWEEPS:
            sweep(cells, args, seeds)
        else:
            (table1 if args.study == "table1" else study)(cells, args, seeds)
    except MissingCell as missing:
        raise SystemExit(f"--report-only: cell {missing} is not finished") from None
    print(
        f"\nWall time {time.perf_counter() - cells.started_wall:.0f} s ({len(cells.ran)} cells run, "
        f"{len(cells.reused)} reused); results in {cells.root}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(run_command(main))
