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
import os
import sys
import time
from dataclasses import asdict
from pathlib import Path

import gymnasium as gym
import matplotlib.pyplot as plt
import numpy as np

import rmtl_env  # noqa: F401 -- registers SessionRecEnv-v0
import runlib
from agents.checkpoint import load_model, save_model
from agents.dple import DPLEConfig, actor_backbone, make_dple, train_dple
from agents.models import MODELS, build_model
from agents.runtime import flush_denormals, resolve_device, seed_everything
from agents.trainer import predict, train_model
from rmtl_env.metrics import oracle_metrics, task_metrics


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    runlib.add_run_arguments(p.add_argument_group("data and run"), "dple_sb3")
    model = p.add_argument_group("backbone pretraining")
    runlib.add_backbone_arguments(model)
    runlib.add_training_arguments(model)
    model.add_argument(
        "--backbone", default="ple", choices=sorted(MODELS), help="actor model (D-PLE: ple)"
    )
    model.add_argument(
        "--backbone-checkpoint", type=Path, default=None, help="pretrained backbone to start from"
    )
    model.add_argument(
        "--from-scratch", action="store_true", help="start the actor untrained (no pretraining)"
    )
    runlib.add_dataclass_arguments(
        p.add_argument_group("D-PLE (agents.dple.DPLEConfig)"), DPLEConfig
    )
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    flush_denormals()  # saturated outputs would otherwise slow CPU math up to ~190x
    device = resolve_device(args.device)
    try:
        config = runlib.dataclass_from_args(DPLEConfig, args)
    except ValueError as exc:
        raise SystemExit(f"error: {exc}") from None
    run_dir = args.run_dir or runlib.default_run_dir("dple_sb3", Path(args.dataset).name, args.seed)
    model_overrides = runlib.model_overrides(args)
    train_config = runlib.train_config(args)
    runlib.write_config(
        run_dir,
        {
            "script": "dple_sb3",
            **runlib.run_data_config(args),
            "backbone": args.backbone,
            "backbone_checkpoint": args.backbone_checkpoint,
            "from_scratch": args.from_scratch,
            "dple": config.to_dict(),
            "train": asdict(train_config),
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
            backbone, train, val, train_config,
            progress=not args.no_progress, description=f"pretrain {args.backbone}",
        )  # fmt: skip
        histories[f"pretrain {args.backbone}"] = fit.history
        checkpoint = save_model(
            backbone, run_dir / "checkpoints" / "backbone.pt", tasks=list(dataset.tasks)
        )
    if checkpoint is not None:
        backbone = load_model(checkpoint, device)
        start_probs = predict(backbone, test)
        results[args.backbone] = task_metrics(test.labels, start_probs, test.session_id, test.tasks)

    # 2-3. Critic phase (actor frozen), then actor phase, on the registered environment.
    env = gym.make("SessionRecEnv-v0", dataset=dataset, split="train")
    seed_everything(args.seed)
    ddpg = make_dple(
        env,
        config,
        buffer_size=len(train) + config.actor_steps,
        backbone_checkpoint=checkpoint,
        backbone=args.backbone,
        backbone_kwargs=model_overrides,
        seed=args.seed,
        device=str(device),
        tensorboard_log=run_dir / "tensorboard",
    )
    outcome = train_dple(ddpg, train, config, seed=args.seed, progress=not args.no_progress)
    print(
        f"[critic phase] {outcome.critic_epochs} epochs (converged: {outcome.critic_converged}) "
        f"in {outcome.critic_seconds:.1f} s; [actor phase] {outcome.actor_updates} actor updates "
        f"at lr {config.actor_lr:g} in {outcome.actor_seconds:.1f} s; critic mean Q at the "
        f"actor's actions {outcome.mean_q_before:.4f} -> {outcome.mean_q_after:.4f}"
    )
    tmp = run_dir / "checkpoints" / ".ddpg.tmp.zip"
    ddpg.save(tmp)
    os.replace(tmp, run_dir / "checkpoints" / "ddpg.zip")
    dple = actor_backbone(ddpg)
    save_model(dple, run_dir / "checkpoints" / "dple_backbone.pt", tasks=list(dataset.tasks))

    # 4. Evaluate as predictors.
    started = time.perf_counter()
    dple_probs = predict(dple, test)
    results[f"d-{args.backbone}"] = task_metrics(
        test.labels, dple_probs, test.session_id, test.tasks
    )
    moved = None
    if checkpoint is not None:
        moved = float(np.abs(dple_probs - start_probs).mean())
        print(f"mean |D-PLE - PLE| test prediction: {moved:.3g}")
    oracle = oracle_metrics(test)
    if oracle is not None:
        results["oracle"] = oracle
    runlib.write_metrics(
        run_dir,
        results,
        {
            "dple": outcome.to_dict(),
            "actor_lr": config.actor_lr,
            "mean_abs_prediction_change_test": moved,
            "env_steps_per_second": outcome.env_steps_per_second,
            "evaluate_seconds": time.perf_counter() - started,
        },
    )
    plot_critic_phase(outcome.critic_history, run_dir / "critic_phase.png")
    if histories:
        runlib.plot_learning_curves(histories, run_dir / "learning_curves.png")
    runlib.plot_metric_comparison(results, dataset.tasks, run_dir / "metrics.png")
    print(f"\nTest split of {dataset.name}, seed {args.seed}:")
    print(runlib.format_table(results, dataset.tasks))
    print(f"\nRun folder: {run_dir}")
    return 0


def plot_critic_phase(history: list[dict], path: Path) -> None:
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot([h["epoch"] for h in history], [h["critic_loss"] for h in history], marker=".")
    ax.set(xlabel="critic-phase epoch", ylabel="SB3 critic loss (MSE)", yscale="log",
           title="D-PLE critic phase (actor frozen)")  # fmt: skip
    ax.grid(alpha=0.3)
    runlib.save_figure(fig, path)


if __name__ == "__main__":
    sys.exit(main())
