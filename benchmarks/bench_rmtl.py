"""Benchmark: RMTL replay construction, batched versus per-step, and the default run's stages.

1. Replay of the small RetailRocket twin's training split with a PLE actor (``--actor``):
   - batched: ``build_replay`` (the actor scores every row in large batches, then one vectorised
     pass builds all transitions with rewards at the stored actions);
   - per-step, as the official code: step ``SessionRecEnv`` one transition at a time, calling the
     actor on each single observation. Measured on ``--per-step-steps`` transitions and
     extrapolated to the whole split.
   Prints both rates and their ratio (target >= 50x).
2. The wall time of each stage of ``python train/rmtl_ddpg.py`` (default settings), run here,
   or read from an existing run folder with ``--from-run``.

    python benchmarks/bench_rmtl.py [--seed 0] [--per-step-steps 2000] [--from-run DIR] [--smoke]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from agents.models import build_model
from agents.replay import build_replay
from agents.runtime import seed_everything
from rmtl_bench.smoke import TINY_FLAGS, add_smoke_flag, announce_smoke
from rmtl_env import SessionRecEnv
from rmtl_env.data import load_dataset

ROOT = Path(__file__).resolve().parents[1]


def per_step_rate(actor, dataset, steps: int, seed: int) -> float:
    """Transitions per second when the actor is called once per env step."""
    env = SessionRecEnv(dataset, split="train", session_order="sequential")
    obs, _ = env.reset(seed=seed)
    replay = []
    start = time.perf_counter()
    with torch.no_grad():
        for _ in range(steps):
            action = actor(
                torch.as_tensor(obs["categorical"]).unsqueeze(0),
                torch.as_tensor(obs["numerical"]).unsqueeze(0),
            )[0].numpy()
            next_obs, _, terminated, _, info = env.step(action)
            replay.append((obs, action, info["task_rewards"], next_obs, terminated))
            obs = env.reset()[0] if terminated else next_obs
    return steps / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--per-step-steps", type=int, default=2000)
    parser.add_argument("--actor", default="ple", help="backbone used as the actor (default ple)")
    parser.add_argument(
        "--from-run",
        type=Path,
        default=None,
        help="read stage times from this rmtl_ddpg run folder instead of running it",
    )
    add_smoke_flag(parser, "the tiny twin, 20 per-step transitions, the pipeline at tiny size")
    args = parser.parse_args()
    smoke = announce_smoke(args)
    scale = "tiny" if smoke else "small"
    if smoke:
        args.per_step_steps = min(args.per_step_steps, 20)

    dataset = load_dataset("retailrocket-synthetic", scale=scale, seed=args.seed)
    train = dataset.split("train")
    seed_everything(args.seed)
    actor = build_model(args.actor, dataset.field_dims, len(dataset.numerical_fields), 2).eval()
    start = time.perf_counter()
    replay = build_replay(actor, train, exploration_noise=0.1, seed=args.seed)
    batched_seconds = time.perf_counter() - start
    batched = len(replay) / batched_seconds
    stepped = per_step_rate(actor, dataset, args.per_step_steps, args.seed)
    print(
        f"Replay of the {scale} RetailRocket twin's train split ({len(train):,} transitions, {args.actor} actor)"
    )
    print(
        f"  batched build_replay:          {batched_seconds:8.2f} s  {batched:12,.0f} transitions/s"
    )
    print(
        f"  per-step env + actor per step: {len(train) / stepped:8.2f} s  {stepped:12,.0f} transitions/s"
        f"  (measured on {args.per_step_steps:,} steps, extrapolated)"
    )
    print(f"  speed-up: {batched / stepped:,.0f}x")
    # The official code's per-step collection with the actor called each step, measured on a
    # machine like this one (design.md): about 85 transitions/s.
    print(f"  speed-up vs the official code's ~85 transitions/s: {batched / 85:,.0f}x")

    run_dir = args.from_run
    if run_dir is None:
        run_dir = Path(tempfile.mkdtemp(prefix="bench-rmtl-")) / "run"
        print("\nRunning the default pipeline: python train/rmtl_ddpg.py --no-progress ...")
        start = time.perf_counter()
        subprocess.run(
            [
                sys.executable,
                str(ROOT / "train" / "rmtl_ddpg.py"),
                "--no-progress",
                "--seed",
                str(args.seed),
                "--run-dir",
                str(run_dir),
                *(TINY_FLAGS["rmtl_ddpg"] if smoke else []),
            ],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        print(
            f"  total wall time (incl. start-up and data loading): {time.perf_counter() - start:.1f} s"
        )
    metrics = json.loads((run_dir / "metrics.json").read_text())
    print(f"Stage wall times of {run_dir}:")
    for stage, seconds in metrics["stage_seconds"].items():
        print(f"  {stage:<9} {seconds:8.1f} s")
    stages = json.loads((run_dir / "stages" / "critics.json").read_text())
    if "replay_seconds" in stages:
        print(
            f"  (replay construction inside critics: {stages['replay_seconds']:.2f} s; "
            f"critic epochs {stages.get('epochs')}, converged {stages.get('converged')})"
        )


if __name__ == "__main__":
    main()
