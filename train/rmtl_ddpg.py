"""RMTL end to end: pretrain a backbone, learn task critics by TD, polish the backbone, evaluate.

    python train/rmtl_ddpg.py                      # PLE on the small RetailRocket twin, seed 0
    python train/rmtl_ddpg.py --backbone esmm --seed 1 --preset official
    torchrun --standalone --nproc_per_node=2 train/rmtl_ddpg.py --run-dir runs/ddp   # 2 ranks
    python train/rmtl_ddpg.py --dataset kuairand-27k-synthetic --scale 1/20 \
        --stream                                   # prepared out of core, read block by block

Stages (each resumable: re-running into the same ``--run-dir`` skips the finished stages whose
outputs load):
  1. pretrain  the backbone with equal-weight BCE and early stopping (or load --backbone-checkpoint)
  2. replay    every training transition in one batched pass, actions from the frozen backbone
  3. critics   K task critics by TD until the epoch TD loss converges (or --critic-epochs)
  4. polish    retrain the backbone from its pretrained weights with w_k = 1 - lambda * Q_k
  5. evaluate  backbone, RMTL-backbone and the oracle on the test split

The run folder gets config.json, metrics.json/metrics.csv, checkpoints/{backbone,critics,
rmtl_backbone}.pt, stage records under stages/, and PNG plots (critic TD loss and mean Q,
loss-weight histograms, learning curves, metric comparison). The stages are ``agents.pipeline``'s.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from agents.models import MODELS
from agents.rmtl import PRESETS
from rmtl_bench import cli, jobs
from rmtl_env.data.errors import run_command


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    model = cli.add_common_flags(
        p, "rmtl_ddpg", "backbone (stage 1) and its training (stages 1 and 4)"
    )
    model.add_argument("--backbone", default="ple", choices=sorted(MODELS), help="the actor model")
    model.add_argument(
        "--backbone-checkpoint",
        type=Path,
        help="use this pretrained backbone instead of training one",
    )
    rl = p.add_argument_group("RMTL (defaults: the --preset's values)")
    rl.add_argument("--preset", choices=sorted(PRESETS), default="paper",
                    help="paper: gamma .95, shared-bottom critics, trained to convergence; "
                    "official: gamma .9, 96 fixed critic epochs, independent critics")  # fmt: skip
    cli.add_config_flags(rl, "rmtl", PRESETS, skip=("seed",))
    rl.add_argument(
        "--critics-from",
        type=Path,
        help="polish with critics trained elsewhere (transferability); skips stage 3",
    )
    args = p.parse_args(argv)
    cli.common_configs(p, args)
    args.rmtl = cli.config_from_flags(p, args, "rmtl", PRESETS[args.preset], seed=args.seed)
    cli.check_weightings(p, [args.train.weighting, args.rmtl.polish_weighting], [args.backbone])
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return cli.run_job(
        "rmtl_ddpg",
        args,
        lambda folder, job: jobs.run_rmtl(
            folder,
            job,
            args.backbone,
            args.model_config,
            args.train,
            args.rmtl,
            backbone_checkpoint=args.backbone_checkpoint,
            critics_from=args.critics_from,
        ),  # fmt: skip
    )


if __name__ == "__main__":
    sys.exit(run_command(main))
