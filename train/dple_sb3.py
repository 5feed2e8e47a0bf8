"""D-PLE: a pretrained PLE actor trained by stable-baselines3 DDPG on the paper's schedule.

    python train/dple_sb3.py                          # small RetailRocket twin, seed 0
    python train/dple_sb3.py --backbone-checkpoint runs/.../checkpoints/backbone.pt --actor-lr 1e-5

1. pretrain the PLE backbone (or load ``--backbone-checkpoint``), as the paper's D-PLE starts
   from a pretrained PLE (``--from-scratch`` skips this);
2. critic phase: the actor frozen, SB3's critic trains on every logged training transition
   until its epoch loss converges;
3. actor phase: the actor trains online on ``gym.make("SessionRecEnv-v0", ...)`` at
   ``--actor-lr`` with a policy delay (``agents.dple`` has the details);
4. evaluate the pretrained PLE and the D-PLE actor as predictors on the test split.

Writes config.json, metrics.json/metrics.csv (with the number of actor updates, the critic's
mean Q at the actor's actions before and after the actor phase, and how far D-PLE's test
predictions moved from PLE's), checkpoints/{backbone,dple_backbone}.pt and ddpg.zip,
critic_phase.png, learning_curves.png and metrics.png; TensorBoard logs under tensorboard/.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from agents.dple import DPLEConfig
from agents.models import MODELS
from rmtl_bench import cli, jobs
from rmtl_env.data.errors import run_command


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    model = cli.add_common_flags(p, "dple_sb3", "backbone and its pretraining")
    model.add_argument(
        "--backbone", default="ple", choices=sorted(MODELS), help="actor model (D-PLE: ple)"
    )
    model.add_argument("--backbone-checkpoint", type=Path, help="pretrained backbone to start from")
    model.add_argument(
        "--from-scratch", action="store_true", help="start the actor untrained (no pretraining)"
    )
    group = p.add_argument_group("D-PLE (agents.dple.DPLEConfig)")
    cli.add_config_flags(group, "dple", DPLEConfig())
    args = p.parse_args(argv)
    cli.common_configs(p, args)
    args.dple = cli.config_from_flags(p, args, "dple", DPLEConfig())
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return cli.run_job(
        "dple_sb3",
        args,
        lambda folder, job: jobs.run_dple(
            folder,
            job,
            args.dple,
            args.backbone,
            args.model_config,
            args.train,
            backbone_checkpoint=args.backbone_checkpoint,
            from_scratch=args.from_scratch,
        ),  # fmt: skip
    )


if __name__ == "__main__":
    sys.exit(run_command(main))
