"""One offline-RL cell of the RL reference block: a stock d3rlpy algorithm on the training
split's logged transitions, scored by ``rmtl_env.evaluate_policy`` (``agents.offline_rl``).

    .venv-d3rlpy/bin/python -m rmtl_bench.offline_d3rlpy td3+bc --dataset retailrocket-synthetic \\
        --seed 0 --out runs/offline/td3bc

d3rlpy pins gymnasium==1.0.0: run this with the Python of d3rlpy's own virtual environment
(``python3 -m venv .venv-d3rlpy && .venv-d3rlpy/bin/pip install torch==2.13.0 -e ".[d3rlpy]"``).
Writes ``config.json``, ``curve.csv`` (validation score every ``--eval-every`` gradient steps) and
``metrics.json`` (test metrics, normalised score, return, wall time) to ``--out``.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

import torch

from agents.offline_rl import OFFLINE_METHODS, OfflineConfig, train_offline
from agents.pipeline import DataConfig, load_splits
from rmtl_bench.rl_block import write_cell
from rmtl_env.data.errors import run_command


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    defaults = OfflineConfig()
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    # fmt: off
    p.add_argument("method", choices=OFFLINE_METHODS)
    p.add_argument("--dataset", default="retailrocket-synthetic")
    p.add_argument("--scale", default="small")
    p.add_argument("--data-seed", type=int, default=0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--gradient-steps", type=int, default=defaults.gradient_steps)
    p.add_argument("--eval-every", type=int, default=defaults.eval_every)
    p.add_argument("--batch-size", type=int, default=defaults.batch_size)
    p.add_argument("--threads", type=int, default=1, help="torch threads")
    p.add_argument("--progress", action="store_true")
    p.add_argument("--command", default=None, help="the command that asked for this cell")
    # fmt: on
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    try:
        config = OfflineConfig(gradient_steps=args.gradient_steps, eval_every=args.eval_every,
                               batch_size=args.batch_size)  # fmt: skip
    except ValueError as exc:
        raise SystemExit(str(exc)) from None
    data = DataConfig(dataset=args.dataset, scale=args.scale, data_seed=args.data_seed)
    dataset = load_splits(data).dataset
    run = train_offline(args.method, dataset, config, args.seed, progress=args.progress)
    command = args.command or "python -m rmtl_bench.offline_d3rlpy " + shlex.join(
        sys.argv[1:] if argv is None else argv
    )
    record = {"dataset": args.dataset, "scale": args.scale, "data_seed": args.data_seed,
              "seed": args.seed, "method": args.method, "budget": config.to_dict(),
              "command": command}  # fmt: skip
    write_cell(args.out, record, run.test, run.curve, run.seconds)
    print(f"{args.method} on {args.dataset} seed {args.seed}: score {run.test.score:.1f}, "
          f"return {run.test.mean_return:.3f}, {run.seconds:.0f} s")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(run_command(main))
