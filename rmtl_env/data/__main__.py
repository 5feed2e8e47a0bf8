"""Command line: ``python -m rmtl_env.data {prepare,stats,synth,export-official} NAME ...``."""

from __future__ import annotations

import argparse
import json
import sys
import time

from rmtl_env.data.catalog import CATALOG, ENGINES, check_engine_settings, load_dataset
from rmtl_env.data.errors import DataFormatError, run_command
from rmtl_env.data.official import export_official
from rmtl_env.data.stats import format_statistics
from rmtl_env.data.synthetic import SCALES, TWINS, write_twin

SCALE_HELP = (
    f"synthetic twin size: one of {list(SCALES)}; the 27K twin also a fraction of full "
    "size such as 1/20"
)


def add_dataset_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", help=f"one of {list(CATALOG)}, a processed folder, or a log file")
    parser.add_argument("--data-dir", help="folder of the real raw files")
    parser.add_argument("--scale", default="small", help=SCALE_HELP)
    parser.add_argument("--seed", type=int, default=0, help="synthetic twin seed")
    parser.add_argument("--roles", help="column-role JSON for a log file")
    parser.add_argument("--session-key", choices=["gap", "visitor"], help="RetailRocket sessions")
    parser.add_argument("--session-gap-minutes", type=float, help="inactivity gap ending a session")
    parser.add_argument("--tasks", nargs="+", help="KuaiRand feedback columns used as tasks")
    parser.add_argument("--min-count", type=int, help="training occurrences for an own id")
    parser.add_argument("--refresh", action="store_true", help="rebuild even if cached")


def loader_params_from_args(args: argparse.Namespace) -> dict:
    """The loader options given on the command line (JSON values: they also go into a Minari
    dataset's environment spec)."""
    params = {
        "session_key": args.session_key,
        "session_gap_minutes": args.session_gap_minutes,
        "tasks": list(args.tasks) if args.tasks else None,
        "min_count": args.min_count,
    }
    return {k: v for k, v in params.items() if v is not None}


def load_from_args(args: argparse.Namespace):
    params = loader_params_from_args(args)
    if hasattr(args, "memory_limit"):  # prepare's DuckDB settings
        params.update(engine=args.engine, memory_limit=args.memory_limit, threads=args.threads)
    return load_dataset(
        args.name, data_dir=args.data_dir, scale=args.scale, seed=args.seed,
        refresh=args.refresh, roles=args.roles, **params,
    )  # fmt: skip


def _memory_limit(text: str) -> str:
    try:
        check_engine_settings(text, 1)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(
            str(exc).replace("memory_limit", "--memory-limit")
        ) from None
    return text


def _threads(text: str) -> int:
    try:
        threads = int(text)
        check_engine_settings("1GB", threads)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--threads must be an integer >= 1, got {text!r}"
        ) from None
    return threads


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m rmtl_env.data", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    prepare = commands.add_parser("prepare", help="build (or reuse) the processed dataset")
    add_dataset_args(prepare)
    prepare.add_argument(
        "--engine", choices=ENGINES, help="no longer needed: DuckDB prepares every source"
    )
    prepare.add_argument(
        "--memory-limit", default="4GB", type=_memory_limit,
        help="DuckDB memory limit, a positive size such as 4GB or 500MB",
    )  # fmt: skip
    prepare.add_argument("--threads", type=_threads, default=2, help="DuckDB threads (>= 1)")
    stats = commands.add_parser("stats", help="print per-split statistics")
    add_dataset_args(stats)
    stats.add_argument("--json", action="store_true", help="print meta.json's statistics as JSON")
    synth = commands.add_parser("synth", help="write a synthetic twin's raw files")
    synth.add_argument("name", choices=list(TWINS))
    synth.add_argument("--scale", default="small", help=SCALE_HELP)
    synth.add_argument("--seed", type=int, default=0)
    synth.add_argument("--out", required=True, help="output folder")
    export = commands.add_parser(
        "export-official",
        help="write the processed dataset in the official RMTL code's format (dataset/rt/...)",
    )
    add_dataset_args(export)
    export.add_argument("--out", required=True, help="folder to create (the official repo root)")
    export.add_argument(
        "--official-roles",
        action="store_true",
        help="write our val split to test.csv and our test split to val.csv, the roles the "
        "unpatched official SLmain.py gives them",
    )
    moved = commands.add_parser(
        "export-minari", help="moved: python train/export_minari.py (the same flags)"
    )
    moved.add_argument("rest", nargs=argparse.REMAINDER)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    start = time.perf_counter()
    if args.command == "export-minari":  # a model's actions belong to the models' side
        print("error: export-minari moved to `python train/export_minari.py` (the same flags; "
              "--checkpoint needs the models, which the data layer does not import)",
              file=sys.stderr)  # fmt: skip
        return 2
    if args.command == "synth":
        out = write_twin(args.name, args.out, scale=args.scale, seed=args.seed)
        print(f"wrote {args.name} ({args.scale}, seed {args.seed}) to {out} in "
              f"{time.perf_counter() - start:.1f}s")  # fmt: skip
        return 0
    try:
        dataset = load_from_args(args)
    except (FileNotFoundError, ValueError, TypeError, ImportError, MemoryError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.command == "prepare":
        print(f"{dataset!r}\nprocessed dataset: {dataset.meta.get('path', '(cached)')} "
              f"({time.perf_counter() - start:.1f}s)")  # fmt: skip
    elif args.command == "export-official":
        try:
            export = export_official(dataset, args.out, official_roles=args.official_roles)
        except (DataFormatError, FileExistsError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        print(
            f"wrote {dataset.name} in the official RMTL format to {export.root} "
            f"({', '.join(f'{k} {v:,}' for k, v in export.rows.items())} rows; see export.json)"
        )
    elif args.json:
        print(json.dumps(dataset.meta["splits"], indent=2))
    else:
        print(format_statistics(dataset.meta))
    return 0


if __name__ == "__main__":
    sys.exit(run_command(main))
