"""RMTL end to end: pretrain a backbone, learn task critics by TD, polish the backbone, evaluate.

    python train/rmtl_ddpg.py                      # PLE on the small RetailRocket twin, seed 0
    python train/rmtl_ddpg.py --backbone esmm --seed 1 --preset official

Stages (each resumable: re-running into the same ``--run-dir`` skips finished stages):
  1. pretrain  the backbone with equal-weight BCE and early stopping (or load --backbone-checkpoint)
  2. replay    every training transition in one batched pass, actions from the frozen backbone
  3. critics   K task critics by TD until the epoch TD loss converges (or --critic-epochs)
  4. polish    retrain the backbone from its pretrained weights with w_k = 1 - lambda * Q_k
  5. evaluate  backbone, RMTL-backbone and the oracle on the test split

The run folder gets config.json, metrics.json/metrics.csv, checkpoints/{backbone,critics,
rmtl_backbone}.pt, stage logs under stages/, and PNG plots (critic TD loss and mean Q, loss-weight
histograms, learning curves, metric comparison).
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd

import rmtl_env  # noqa: F401 -- registers SessionRecEnv-v0
import runlib
from agents.checkpoint import load_critic, load_model, save_critic, save_model
from agents.critic import CriticConfig
from agents.models import MODELS, build_model
from agents.rmtl import WEIGHT_VARIANTS, RMTLAgent, build_replay, official_config, paper_config
from agents.runtime import flush_denormals, resolve_device, seed_everything
from agents.trainer import evaluate, predict, train_model
from rmtl_env.data.io import atomic_write_bytes
from rmtl_env.metrics import oracle_metrics

RMTL_FLAGS = {  # flag dest -> RMTLConfig field; None means "keep the preset's value"
    "gamma": "gamma",
    "lam": "lam",
    "tau": "tau",
    "critic_lr": "critic_lr",
    "actor_lr": "actor_lr",
    "critic_batch_size": "batch_size",
    "exploration_noise": "exploration_noise",
    "critic_max_epochs": "critic_max_epochs",
    "critic_epochs": "critic_fixed_epochs",
    "stop_rel_tol": "stop_rel_tol",
    "stop_patience": "stop_patience",
    "target_update_interval": "target_update_interval",
    "weight_variant": "weight_variant",
    "polish_lr": "polish_lr",
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    runlib.add_run_arguments(p.add_argument_group("data and run"), "rmtl_ddpg")
    model = p.add_argument_group("backbone (stage 1) and polish (stage 4) training")
    runlib.add_backbone_arguments(model)
    runlib.add_training_arguments(model)
    model.add_argument("--backbone", default="ple", choices=sorted(MODELS), help="the actor model")
    model.add_argument(
        "--backbone-checkpoint",
        type=Path,
        default=None,
        help="use this pretrained backbone instead of training one",
    )
    rl = p.add_argument_group("RMTL (defaults: the --preset's values)")
    rl.add_argument(
        "--preset",
        choices=["paper", "official"],
        default="paper",
        help="paper: gamma .95, shared-bottom critics, trained to convergence; "
        "official: gamma .9, 96 fixed critic epochs, independent critics",
    )
    rl.add_argument("--gamma", type=float, help="discount (paper 0.95)")
    rl.add_argument("--lam", type=float, help="lambda in w = 1 - lambda * Q (paper 0.7)")
    rl.add_argument("--tau", type=float, help="soft target-update rate (0.2)")
    rl.add_argument("--target-update-interval", type=int, help="critic steps per soft update (2)")
    rl.add_argument("--critic-lr", type=float, help="critic Adam learning rate (1e-3)")
    rl.add_argument("--actor-lr", type=float, help="actor learning rate for --actor-update (1e-3)")
    rl.add_argument("--critic-batch-size", type=int, help="critic minibatch (2048)")
    rl.add_argument(
        "--exploration-noise",
        type=float,
        help="std of Gaussian noise on the logits of the replayed actions (0.3)",
    )
    rl.add_argument("--critic-max-epochs", type=int, help="cap for the convergence stopper (100)")
    rl.add_argument(
        "--critic-epochs", type=int, help="fixed critic epochs, no stopper (official 96)"
    )
    rl.add_argument(
        "--stop-rel-tol", type=float, help="relative TD-loss change deemed converged (0.01)"
    )
    rl.add_argument("--stop-patience", type=int, help="calm epochs before stopping (2)")
    rl.add_argument("--critic-embed-dim", type=int, default=128)
    rl.add_argument(
        "--independent-critics",
        action="store_true",
        default=None,
        help="K separate critics (official) instead of a shared state encoder",
    )
    rl.add_argument(
        "--actor-update",
        action="store_true",
        help="also take the paper's DDPG actor step during the critic stage",
    )
    rl.add_argument(
        "--weight-variant",
        choices=WEIGHT_VARIANTS,
        help="rmtl (1 - lambda Q), ablations cw (constant), wl (1 - lambda y Q), nlc (-Q)",
    )
    rl.add_argument(
        "--normalize-weights",
        action="store_true",
        help="rescale each task's weights to batch mean 1",
    )
    rl.add_argument(
        "--polish-lr",
        type=float,
        help="the polish's learning rate (default: --lr, as the paper and the official code)",
    )
    rl.add_argument(
        "--polish-guard",
        action="store_true",
        help="the pretrained backbone competes in the polish's early stopping (epoch 0)",
    )
    rl.add_argument(
        "--critics-from",
        type=Path,
        default=None,
        help="polish with critics trained elsewhere (transferability); skips stage 3",
    )
    return p.parse_args(argv)


def rmtl_config(args: argparse.Namespace):
    preset = paper_config if args.preset == "paper" else official_config
    overrides = {
        field: getattr(args, dest)
        for dest, field in RMTL_FLAGS.items()
        if getattr(args, dest) is not None
    }
    base = preset()
    critic = CriticConfig(**{**base.critic.to_dict(), "embed_dim": args.critic_embed_dim})
    if args.independent_critics is not None:
        critic.independent = args.independent_critics
    return preset(
        **overrides,
        critic=critic,
        actor_update=args.actor_update,
        normalize_weights=args.normalize_weights,
        polish_guard=args.polish_guard,
        seed=args.seed,
    )


class Stages:
    """Stage bookkeeping: a finished stage leaves ``stages/<name>.json``; re-runs skip it."""

    def __init__(self, run_dir: Path) -> None:
        self.folder = run_dir / "stages"
        self.seconds: dict[str, float] = {}
        self.ran_this_time = False

    def done(self, name: str, output: Path) -> dict | None:
        """The record of stage ``name`` if it finished and its ``output`` is still there."""
        path = self.folder / f"{name}.json"
        if not path.is_file():
            return None
        if not output.is_file():
            print(f"[{name}] finished before, but {output} is missing; running it again")
            return None
        if self.ran_this_time:
            return None  # an earlier stage was just redone: everything after it is stale
        record = runlib.read_json(path)
        self.seconds[name] = record.get("seconds", 0.0)
        print(f"[{name}] already finished in this run folder; reusing it")
        return record

    def finish(self, name: str, started: float, **record) -> dict:
        self.seconds[name] = time.perf_counter() - started
        self.ran_this_time = True
        record = {"seconds": self.seconds[name], **record}
        runlib.write_json(self.folder / f"{name}.json", record)
        print(f"[{name}] done in {self.seconds[name]:.1f} s")
        return record


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    flush_denormals()  # saturated outputs would otherwise slow CPU math up to ~190x
    device = resolve_device(args.device)
    config = rmtl_config(args)
    run_dir = args.run_dir or runlib.default_run_dir(
        "rmtl_ddpg", Path(args.dataset).name, args.seed
    )
    model_overrides = runlib.model_overrides(args)
    train_config = runlib.train_config(args)
    run_config = {
        "script": "rmtl_ddpg",
        **runlib.run_data_config(args),
        "backbone": args.backbone,
        "backbone_checkpoint": args.backbone_checkpoint,
        "critics_from": args.critics_from,
        "preset": args.preset,
        "rmtl": config.to_dict(),
        "train": asdict(train_config),
        "model_overrides": model_overrides,
    }
    if (run_dir / "config.json").is_file():
        previous = runlib.read_json(run_dir / "config.json")
        previous.pop("environment", None)
        if previous != runlib.json_roundtrip(run_config):
            raise SystemExit(
                f"error: {run_dir} holds a run with a different configuration; "
                "choose another --run-dir or delete it"
            )
        print(f"Resuming {run_dir}")
    runlib.write_config(run_dir, run_config)
    stages, progress = Stages(run_dir), not args.no_progress
    checkpoints = run_dir / "checkpoints"

    dataset, train, val, test = runlib.load_splits(args)
    tasks = list(dataset.tasks)
    print(
        f"{dataset.name}: train {len(train):,} / val {len(val):,} / test {len(test):,} rows, "
        f"tasks {tasks}, backbone {args.backbone}, device {device}"
    )

    # Stage 1: pretrain the backbone (the actor).
    started = time.perf_counter()
    pretrain = stages.done("pretrain", checkpoints / "backbone.pt")
    if pretrain is None:
        if args.backbone_checkpoint is not None:
            backbone = load_model(args.backbone_checkpoint, device)
            history = []
        else:
            seed_everything(args.seed)
            backbone = build_model(
                args.backbone,
                dataset.field_dims,
                len(dataset.numerical_fields),
                len(tasks),
                **model_overrides,
            ).to(device)
            history = train_model(
                backbone,
                train,
                val,
                train_config,
                progress=progress,
                description=f"pretrain {args.backbone}",
            ).history
        save_model(backbone, checkpoints / "backbone.pt", tasks=tasks, dataset=args.dataset)
        pretrain = stages.finish("pretrain", started, history=history)
    backbone = load_model(checkpoints / "backbone.pt", device)

    # Stage 2 and 3: replay of the training split, then the critics.
    started = time.perf_counter()
    train_probs = None  # the frozen backbone's predictions on train, computed at most once
    critics = stages.done("critics", checkpoints / "critics.pt")
    if critics is None:
        if args.critics_from is not None:
            agent = RMTLAgent(backbone, config, critic=load_critic(args.critics_from, device))
            critics = {"history": [], "source": str(args.critics_from)}
        else:
            seed_everything(args.seed)
            agent = RMTLAgent(backbone, config)
            replay_started = time.perf_counter()
            train_probs = predict(backbone, train)
            replay = build_replay(
                backbone, train, config.exploration_noise, seed=args.seed, actor_actions=train_probs
            )
            replay_seconds = time.perf_counter() - replay_started
            print(f"[replay] {len(replay):,} transitions in {replay_seconds:.2f} s")
            result = agent.train_critics(replay, progress=progress)
            critics = {
                "history": result.history,
                "epochs": result.epochs,
                "converged": result.converged,
                "replay_seconds": replay_seconds,
            }
        save_critic(agent.critic, checkpoints / "critics.pt", backbone=args.backbone)
        critics = stages.finish("critics", started, **critics)
    agent = RMTLAgent(backbone, config, critic=load_critic(checkpoints / "critics.pt", device))

    # Stage 4: polish a copy of the pretrained backbone with the critics' loss weights.
    started = time.perf_counter()
    if train_probs is None:
        train_probs = predict(backbone, train)
    initial_weights = agent.polish_weights_on(train, train_probs)
    polish = stages.done("polish", checkpoints / "rmtl_backbone.pt")
    if polish is None:
        seed_everything(args.seed)
        polished = load_model(checkpoints / "backbone.pt", device)
        polish_config = replace(
            train_config,
            lr=train_config.lr if config.polish_lr is None else config.polish_lr,
            keep_initial=config.polish_guard,
        )
        history = train_model(
            polished,
            train,
            val,
            polish_config,
            loss_weights=agent.polish_weights(),
            progress=progress,
            description=f"polish {args.backbone}",
        ).history
        save_model(
            polished,
            checkpoints / "rmtl_backbone.pt",
            tasks=tasks,
            dataset=args.dataset,
            critics=str(checkpoints / "critics.pt"),
        )
        polish = stages.finish("polish", started, history=history)
    polished = load_model(checkpoints / "rmtl_backbone.pt", device)

    # Stage 5: evaluate on the test split.
    started = time.perf_counter()
    results = {args.backbone: evaluate(backbone, test)}
    results[f"rmtl-{args.backbone}"] = evaluate(polished, test)
    oracle = oracle_metrics(test)
    if oracle is not None:
        results["oracle"] = oracle
    stages.seconds["evaluate"] = time.perf_counter() - started
    weight_summary = {
        task: {
            "mean": float(initial_weights[:, k].mean()),
            "std": float(initial_weights[:, k].std()),
            "min": float(initial_weights[:, k].min()),
            "max": float(initial_weights[:, k].max()),
        }
        for k, task in enumerate(tasks)
    }
    runlib.write_metrics(
        run_dir,
        results,
        {
            "stage_seconds": stages.seconds,
            "loss_weights_train": weight_summary,
            "critic_epochs": critics.get("epochs"),
            "critic_converged": critics.get("converged"),
        },
    )
    write_plots(run_dir, tasks, args.backbone, pretrain, critics, polish, initial_weights, results)

    print(f"\nTest split of {dataset.name}, seed {args.seed}:")
    print(runlib.format_table(results, tasks))
    print("\nStage wall time: " + ", ".join(f"{k} {v:.1f} s" for k, v in stages.seconds.items()))
    print(f"Run folder: {run_dir}")
    return 0


def write_plots(run_dir, tasks, backbone, pretrain, critics, polish, weights, results) -> None:
    if critics.get("history"):
        frame = pd.DataFrame(critics["history"])
        atomic_write_bytes(run_dir / "critic_history.csv", frame.to_csv(index=False).encode())
        fig, (ax_td, ax_q) = plt.subplots(1, 2, figsize=(11, 4))
        for k, task in enumerate(tasks):
            ax_td.plot(frame["epoch"], frame[f"td_loss_{k}"], marker=".", label=task)
            ax_q.plot(frame["epoch"], frame[f"mean_q_{k}"], marker=".", label=task)
        ax_td.set(
            xlabel="critic epoch", ylabel="TD loss (MSE)", yscale="log", title="Critic TD loss"
        )
        ax_q.set(
            xlabel="critic epoch", ylabel="mean Q_k(s, a) on the replay", title="Mean Q per task"
        )
        for ax in (ax_td, ax_q):
            ax.legend()
            ax.grid(alpha=0.3)
        runlib.save_figure(fig, run_dir / "critic_training.png")
    fig, axes = plt.subplots(1, len(tasks), figsize=(5 * len(tasks), 3.5), squeeze=False)
    for k, task in enumerate(tasks):
        axes[0][k].hist(weights[:, k], bins=60, color=plt.cm.tab10.colors[k])
        axes[0][k].set(
            title=f"{task}: loss weights on train", xlabel="w", ylabel="rows", yscale="log"
        )
    runlib.save_figure(fig, run_dir / "loss_weights.png")
    histories = {
        f"pretrain {backbone}": pretrain.get("history", []),
        f"polish {backbone}": polish.get("history", []),
    }
    runlib.plot_learning_curves(
        {k: v for k, v in histories.items() if v}, run_dir / "learning_curves.png"
    )
    runlib.plot_metric_comparison(results, tasks, run_dir / "metrics.png")


if __name__ == "__main__":
    sys.exit(main())
