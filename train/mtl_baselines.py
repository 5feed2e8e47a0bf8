"""Train multi-task baselines (Table 1's supervised columns) and evaluate them on the test split.

    python train/mtl_baselines.py --model all --dataset retailrocket-synthetic --seed 0

For each model: seed, build with the paper's dimensions, train with Adam and early stopping on
the mean validation AUC, restore the best epoch, evaluate on ``test``. Writes a run folder with
``config.json``, ``metrics.json``/``metrics.csv`` (one row per model and task, plus the oracle row
on synthetic data), ``history.csv``, ``checkpoints/<model>.pt`` and ``learning_curves.png``; a
rerun into the same ``--run-dir`` reuses the models already trained.
"""

from __future__ import annotations

import argparse
import sys

from agents.models import MODELS
from rmtl_bench import cli, jobs
from rmtl_env.data.errors import run_command


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    group = cli.add_common_flags(p, "mtl_baselines", "backbones and their training")
    group.add_argument(
        "--model", nargs="+", default=["all"], help=f"any of {sorted(MODELS)}, or 'all' (default)"
    )
    args = p.parse_args(argv)
    models = [m.lower().replace("-", "_") for m in args.model]
    models = list(MODELS) if models == ["all"] else models
    unknown = [m for m in models if m not in MODELS]
    if unknown:
        p.error(f"--model: unknown {unknown}; expected 'all' or any of {sorted(MODELS)}")
    args.models = models
    cli.common_configs(p, args)
    cli.check_weightings(p, [args.train.weighting], models)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return cli.run_job(
        "mtl_baselines",
        args,
        lambda folder, job: jobs.run_baselines(
            folder, job, args.models, args.model_config, args.train
        ),
    )


if __name__ == "__main__":
    sys.exit(run_command(main))
