"""D-PLE: stock stable-baselines3 DDPG with a PLE actor on ``SessionRecEnv-v0``, then evaluation.

    python train/dple_sb3.py                          # small RetailRocket twin, seed 0
    python train/dple_sb3.py --backbone-checkpoint runs/.../checkpoints/backbone.pt --total-steps 20000

1. pretrain the PLE backbone (or load ``--backbone-checkpoint``), as the paper's D-PLE starts
   from a pretrained PLE (``--from-scratch`` skips this);
2. train DDPG on ``gym.make("SessionRecEnv-v0", ...)``, training split, with the backbone as actor;
   TensorBoard logs go to ``<run>/tensorboard`` (``tensorboard --logdir <run>/tensorboard``);
3. evaluate the pretrained PLE and the D-PLE actor as predictors on the test split.

Writes config.json, metrics.json/metrics.csv, checkpoints/{backbone,dple_backbone}.pt and
ddpg.zip, learning_curves.png and metrics.png.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import gymnasium as gym

import rmtl_env  # noqa: F401 -- registers SessionRecEnv-v0
import runlib
from agents.checkpoint import save_model
from agents.dple import DPLEConfig, actor_backbone, make_dple, train_dple
from agents.models import MODELS, build_model
from agents.runtime import flush_denormals, resolve_device, seed_everything
from agents.trainer import TrainConfig, evaluate, train_model
from rmtl_env.metrics import oracle_metrics


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    defaults = DPLEConfig()
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    runlib.add_run_arguments(p, "dple_sb3")
    runlib.add_backbone_arguments(p)
    p.add_argument(
        "--backbone", default="ple", choices=sorted(MODELS), help="actor model (D-PLE: ple)"
    )
    p.add_argument(
        "--backbone-checkpoint", type=Path, default=None, help="pretrained backbone to start from"
    )
    p.add_argument(
        "--from-scratch", action="store_true", help="start the actor untrained (no pretraining)"
    )
    p.add_argument("--epochs", type=int, default=50, help="max pretraining epochs")
    p.add_argument("--total-steps", type=int, default=defaults.total_steps, help="DDPG env steps")
    p.add_argument("--learning-starts", type=int, default=defaults.learning_starts)
    p.add_argument("--buffer-size", type=int, default=defaults.buffer_size)
    p.add_argument("--batch-size", type=int, default=defaults.batch_size, help="DDPG minibatch")
    p.add_argument("--train-freq", type=int, default=defaults.train_freq)
    p.add_argument("--gradient-steps", type=int, default=defaults.gradient_steps)
    p.add_argument(
        "--action-noise",
        type=float,
        default=defaults.action_noise,
        help="std of Gaussian action noise in SB3's [-1, 1] units",
    )
    p.add_argument("--gamma", type=float, default=defaults.gamma)
    p.add_argument("--tau", type=float, default=defaults.tau)
    p.add_argument("--learning-rate", type=float, default=defaults.learning_rate)
    p.add_argument("--critic-embed-dim", type=int, default=defaults.critic_embed_dim)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    flush_denormals()  # saturated outputs would otherwise slow CPU math up to ~190x
    device = resolve_device(args.device)
    run_dir = args.run_dir or runlib.default_run_dir("dple_sb3", Path(args.dataset).name, args.seed)
    config = DPLEConfig(
        total_steps=args.total_steps,
        learning_starts=args.learning_starts,
        buffer_size=args.buffer_size,
        batch_size=args.batch_size,
        train_freq=args.train_freq,
        gradient_steps=args.gradient_steps,
        action_noise=args.action_noise,
        gamma=args.gamma,
        tau=args.tau,
        learning_rate=args.learning_rate,
        critic_embed_dim=args.critic_embed_dim,
    )
    model_overrides = runlib.model_overrides(args)
    runlib.write_config(
        run_dir,
        {
            "script": "dple_sb3",
            **runlib.run_data_config(args),
            "backbone": args.backbone,
            "backbone_checkpoint": args.backbone_checkpoint,
            "from_scratch": args.from_scratch,
            "dple": config.to_dict(),
            "model_overrides": model_overrides,
        },
    )
    dataset, train, val, test = runlib.load_splits(args)
    print(
        f"{dataset.name}: train {len(train):,} / test {len(test):,} rows, tasks {list(dataset.tasks)}"
    )

    # 1. The pretrained backbone D-PLE starts from.
    seed_everything(args.seed)
    checkpoint = args.backbone_checkpoint
    results, histories = {}, {}
    if checkpoint is None and not args.from_scratch:
        backbone = build_model(
            args.backbone,
            dataset.field_dims,
            len(dataset.numerical_fields),
            len(dataset.tasks),
            **model_overrides,
        ).to(device)
        fit = train_model(
            backbone,
            train,
            val,
            TrainConfig(max_epochs=args.epochs, seed=args.seed),
            progress=not args.no_progress,
            description=f"pretrain {args.backbone}",
        )
        histories[f"pretrain {args.backbone}"] = fit.history
        checkpoint = save_model(
            backbone, run_dir / "checkpoints" / "backbone.pt", tasks=list(dataset.tasks)
        )
        results[args.backbone] = evaluate(backbone, test)

    # 2. Stock SB3 DDPG on the registered environment.
    env = gym.make("SessionRecEnv-v0", dataset=dataset, split="train")
    seed_everything(args.seed)
    ddpg = make_dple(
        env,
        config,
        backbone_checkpoint=checkpoint,
        backbone=args.backbone,
        backbone_kwargs=model_overrides,
        seed=args.seed,
        device=str(device),
        tensorboard_log=run_dir / "tensorboard",
    )
    steps_per_second = train_dple(ddpg, config, progress=not args.no_progress)
    print(f"[ddpg] {config.total_steps:,} env steps at {steps_per_second:,.0f} steps/s")
    tmp = run_dir / "checkpoints" / ".ddpg.tmp.zip"
    ddpg.save(tmp)
    os.replace(tmp, run_dir / "checkpoints" / "ddpg.zip")
    dple = actor_backbone(ddpg)
    save_model(dple, run_dir / "checkpoints" / "dple_backbone.pt", tasks=list(dataset.tasks))

    # 3. Evaluate as predictors.
    started = time.perf_counter()
    results[f"d-{args.backbone}"] = evaluate(dple, test)
    oracle = oracle_metrics(test)
    if oracle is not None:
        results["oracle"] = oracle
    runlib.write_metrics(
        run_dir,
        results,
        {
            "env_steps_per_second": steps_per_second,
            "evaluate_seconds": time.perf_counter() - started,
        },
    )
    if histories:
        runlib.plot_learning_curves(histories, run_dir / "learning_curves.png")
    runlib.plot_metric_comparison(results, dataset.tasks, run_dir / "metrics.png")
    print(f"\nTest split of {dataset.name}, seed {args.seed}:")
    print(runlib.format_table(results, dataset.tasks))
    print(f"\nRun folder: {run_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
