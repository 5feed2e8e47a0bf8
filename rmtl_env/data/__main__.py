"""Command line: ``python -m rmtl_env.data {prepare,stats,synth,export-official,export-minari} NAME ...``."""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np

from rmtl_env.data.catalog import CATALOG, ENGINES, check_engine_settings, load_dataset
from rmtl_env.data.errors import DataFormatError
from rmtl_env.data.official import export_official
from rmtl_env.data.stats import format_statistics
from rmtl_env.data.synthetic import SCALES, TWINS, write_twin


def _dataset_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", help=f"one of {list(CATALOG)}, a processed folder, or a log file")
    parser.add_argument("--data-dir", help="folder of the real raw files")
    parser.add_argument("--scale", default="small", choices=SCALES, help="synthetic twin size")
    parser.add_argument("--seed", type=int, default=0, help="synthetic twin seed")
    parser.add_argument("--roles", help="column-role JSON for a log file")
    parser.add_argument("--session-key", choices=["gap", "visitor"], help="RetailRocket sessions")
    parser.add_argument("--session-gap-minutes", type=float, help="inactivity gap ending a session")
    parser.add_argument("--tasks", nargs="+", help="KuaiRand feedback columns used as tasks")
    parser.add_argument("--min-count", type=int, help="training occurrences for an own id")
    parser.add_argument("--refresh", action="store_true", help="rebuild even if cached")


def _loader_params(args: argparse.Namespace) -> dict:
    """The loader options given on the command line (JSON values: they also go into a Minari
    dataset's environment spec)."""
    params = {
        "session_key": args.session_key,
        "session_gap_minutes": args.session_gap_minutes,
        "tasks": list(args.tasks) if args.tasks else None,
        "min_count": args.min_count,
    }
    return {k: v for k, v in params.items() if v is not None}


def _load(args: argparse.Namespace):
    params = _loader_params(args)
    if getattr(args, "engine", "pandas") == "duckdb":
        params.update(engine="duckdb", memory_limit=args.memory_limit, threads=args.threads)
    return load_dataset(
        args.name, data_dir=args.data_dir, scale=args.scale, seed=args.seed,
        refresh=args.refresh, roles=args.roles, **params,
    )  # fmt: skip


def _checkpoint_actions(args: argparse.Namespace, dataset) -> np.ndarray:
    """The checkpoint's (noisy) predictions on ``args.split``, as RMTL's replay draws them."""
    from agents.checkpoint import check_fits, load_model
    from agents.replay import noisy_actions
    from agents.trainer import predict

    model = load_model(args.checkpoint)
    check_fits(model, dataset, args.checkpoint)
    return noisy_actions(predict(model, dataset.split(args.split)), args.noise, args.action_seed)


def _export_minari(args: argparse.Namespace, dataset) -> int:
    try:
        import minari  # noqa: F401

        from rmtl_env.offline import default_dataset_id, export_minari
    except ImportError:
        print('error: export-minari needs Minari: pip install "rmtl-env[minari]"', file=sys.stderr)
        return 2
    if args.noise < 0 or (args.noise and not args.checkpoint):
        print("error: --noise must be >= 0 and needs --checkpoint", file=sys.stderr)
        return 2
    behaviour = "checkpoint" if args.checkpoint else args.behaviour
    dataset_id = args.dataset_id or default_dataset_id(args.name, args.split, behaviour)
    roles = {"roles": args.roles} if args.roles else {}
    env_kwargs = {
        "dataset": args.name,
        "split": args.split,
        "data_dir": args.data_dir,
        "scale": args.scale,
        "data_seed": args.seed,
        "dataset_kwargs": {**_loader_params(args), **roles},
    }
    try:
        actions = _checkpoint_actions(args, dataset) if args.checkpoint else args.behaviour
        exported = export_minari(
            dataset_id,
            actions,
            seed=args.action_seed,
            algorithm_name=behaviour,
            data_format=args.data_format,
            max_sessions=args.max_sessions,
            author=args.author,
            author_email=args.author_email,
            code_permalink=args.code_permalink,
            **env_kwargs,
        )
    except (FileExistsError, FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(
        f"wrote Minari dataset {dataset_id!r}: {exported.total_episodes:,} episodes, "
        f"{exported.total_steps:,} steps ({behaviour} actions); minari.load_dataset({dataset_id!r})"
    )
    return 0


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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m rmtl_env.data", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    prepare = commands.add_parser("prepare", help="build (or reuse) the processed dataset")
    _dataset_args(prepare)
    prepare.add_argument(
        "--engine",
        default="pandas",
        choices=ENGINES,
        help="duckdb: out of core (RetailRocket and KuaiRand; needs the scale extra), the same rows",
    )
    prepare.add_argument(
        "--memory-limit", default="4GB", type=_memory_limit,
        help="DuckDB memory limit, a positive size such as 4GB or 500MB",
    )  # fmt: skip
    prepare.add_argument("--threads", type=_threads, default=2, help="DuckDB threads (>= 1)")
    stats = commands.add_parser("stats", help="print per-split statistics")
    _dataset_args(stats)
    stats.add_argument("--json", action="store_true", help="print meta.json's statistics as JSON")
    synth = commands.add_parser("synth", help="write a synthetic twin's raw files")
    synth.add_argument("name", choices=list(TWINS))
    synth.add_argument("--scale", default="small", choices=SCALES)
    synth.add_argument("--seed", type=int, default=0)
    synth.add_argument("--out", required=True, help="output folder")
    export = commands.add_parser(
        "export-official",
        help="write the processed dataset in the official RMTL code's format (dataset/rt/...)",
    )
    _dataset_args(export)
    export.add_argument("--out", required=True, help="folder to create (the official repo root)")
    export.add_argument(
        "--official-roles",
        action="store_true",
        help="write our val split to test.csv and our test split to val.csv, the roles the "
        "unpatched official SLmain.py gives them",
    )
    minari = commands.add_parser(
        "export-minari",
        help="write a split's sessions as a Minari dataset (needs the minari extra)",
    )
    _dataset_args(minari)
    minari.add_argument("--split", default="train", choices=["train", "val", "test"])
    minari.add_argument(
        "--behaviour",
        default="uniform",
        choices=["uniform", "labels"],
        help="actions of the logged steps: uniform random probabilities, or the logged labels",
    )
    minari.add_argument(
        "--checkpoint",
        help="a model checkpoint (run folder checkpoints/*.pt) whose predictions are the actions "
        "instead of --behaviour",
    )
    minari.add_argument(
        "--noise", type=float, default=0.0, help="logit-noise std on the checkpoint's predictions"
    )
    minari.add_argument("--action-seed", type=int, default=0, help="seed of random actions")
    minari.add_argument("--max-sessions", type=int, help="export only the split's first sessions")
    minari.add_argument(
        "--data-format", default="hdf5", choices=["hdf5", "arrow"], help="Minari storage"
    )
    minari.add_argument(
        "--dataset-id", help="Minari id (default rmtl/<name>-<split>-<behaviour>-v0)"
    )
    minari.add_argument("--author", default="rmtl-env", help="the dataset's author (metadata)")
    minari.add_argument("--author-email", help="the author's e-mail (metadata)")
    minari.add_argument(
        "--code-permalink", help="permalink to the code that made the dataset (metadata)"
    )
    args = parser.parse_args(argv)

    start = time.perf_counter()
    if args.command == "synth":
        out = write_twin(args.name, args.out, scale=args.scale, seed=args.seed)
        print(
            f"wrote {args.name} ({args.scale}, seed {args.seed}) to {out} in {time.perf_counter() - start:.1f}s"
        )
        return 0
    try:
        dataset = _load(args)
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
    elif args.command == "export-minari":
        return _export_minari(args, dataset)
    elif args.json:
        print(json.dumps(dataset.meta["splits"], indent=2))
    else:
        print(format_statistics(dataset.meta))
    return 0


if __name__ == "__main__":
    sys.exit(main())
