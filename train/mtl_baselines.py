"""Train multi-task baselines (Table 1's supervised columns) and evaluate them on the test split.

    python train/mtl_baselines.py --model all --dataset retailrocket-synthetic --seed 0

For each model: seed, build with the paper's dimensions, train with Adam and early stopping on
the mean validation AUC, restore the best epoch, evaluate on ``test``. Writes a run folder with
``config.json``, ``metrics.json``/``metrics.csv`` (one row per model and task, plus the oracle row
on synthetic data), ``history.csv``, ``checkpoints/<model>.pt`` and ``learning_curves.png``.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import asdict
from pathlib import Path

import pandas as pd

import runlib
from agents.checkpoint import save_model
from agents.models import MODELS, build_model
from agents.runtime import flush_denormals, resolve_device, seed_everything
from agents.trainer import evaluate, train_model
from rmtl_env.data.io import atomic_write_bytes
from rmtl_env.metrics import oracle_metrics


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    runlib.add_run_arguments(parser, "mtl_baselines")
    runlib.add_backbone_arguments(parser)
    runlib.add_training_arguments(parser)
    parser.add_argument(
        "--model",
        nargs="+",
        default=["all"],
        help=f"one or more of {sorted(MODELS)}, or 'all' (default)",
    )
    args = parser.parse_args(argv)
    models = (
        list(MODELS) if args.model == ["all"] else [m.lower().replace("-", "_") for m in args.model]
    )
    unknown = [m for m in models if m not in MODELS]
    if unknown:
        parser.error(f"--model: unknown {unknown}; expected 'all' or any of {sorted(MODELS)}")
    args.model = models
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    flush_denormals()  # saturated outputs would otherwise slow CPU math up to ~190x
    device = resolve_device(args.device)
    run_dir = args.run_dir or runlib.default_run_dir(
        "mtl_baselines", Path(args.dataset).name, args.seed
    )
    train_config = runlib.train_config(args)
    runlib.write_config(
        run_dir,
        {
            "script": "mtl_baselines",
            "models": args.model,
            **runlib.run_data_config(args),
            "device": str(device),
            "train": asdict(train_config),
            "model_overrides": runlib.model_overrides(args),
        },
    )

    dataset, train, val, test = runlib.load_splits(args)
    print(
        f"{dataset.name}: train {len(train):,} / val {len(val):,} / test {len(test):,} rows, "
        f"tasks {list(dataset.tasks)}, device {device}"
    )

    results, histories, summary = {}, {}, {}
    for name in args.model:
        seed_everything(args.seed)
        model = build_model(
            name,
            dataset.field_dims,
            len(dataset.numerical_fields),
            len(dataset.tasks),
            **runlib.model_overrides(args),
        ).to(device)
        fit = train_model(
            model, train, val, train_config, progress=not args.no_progress, description=name
        )
        results[name] = evaluate(model, test)
        histories[name] = fit.history
        summary[name] = {
            "best_epoch": fit.best_epoch,
            "best_val_auc": fit.best_val_auc,
            "epochs_run": len(fit.history),
            "stopped_early": fit.stopped_early,
            "train_seconds": sum(h["seconds"] for h in fit.history),
        }
        save_model(
            model,
            run_dir / "checkpoints" / f"{name}.pt",
            tasks=list(dataset.tasks),
            dataset=args.dataset,
            seed=args.seed,
            best_epoch=fit.best_epoch,
        )
    oracle = oracle_metrics(test)
    if oracle is not None:
        results["oracle"] = oracle

    runlib.write_metrics(run_dir, results, {"training": summary})
    history_rows = [{"model": name, **h} for name, hist in histories.items() for h in hist]
    atomic_write_bytes(
        run_dir / "history.csv", pd.DataFrame(history_rows).to_csv(index=False).encode()
    )
    runlib.plot_learning_curves(histories, run_dir / "learning_curves.png")
    print(f"\nTest split of {dataset.name}, seed {args.seed}:")
    print(runlib.format_table(results, dataset.tasks))
    print(f"\nRun folder: {run_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
