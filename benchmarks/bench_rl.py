"""Benchmark: what one online cell of the RL block (``python train/benchmark.py --block rl``) costs,
so that a run can be planned before it starts.

For each off-policy method of ``agents.rl_reference`` (stock SB3 on ``SessionRecEnv``), at each
torch thread count: seconds per update (one gradient step at the block's batch size, TD3's
delayed actor step included at its rate), env steps per second of the agent's own rollout (policy
call and vector env step), seconds of one evaluation on the validation split, seconds and size of
one save of the training state (``agents.online_state``, at each curve point, with the replay
buffer as filled by the random warm-up), and the cell's wall time projected from them at the
block's budget (``rmtl_bench.rl_block.BUDGETS["full"]``: its updates, its env steps and its
learning-curve points). ``td3-ple`` carries the paper-size PLE as
its actor (an untrained one of the same size: the cost does not depend on the weights), which is
what makes it the block's one cell of hours.

    python benchmarks/bench_rl.py [--dataset kuairand-synthetic] [--methods td3 sac td3-ple]
                                  [--threads 1 2] [--updates 10] [--seed 0] [--smoke]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import NamedTuple

import torch

from agents import pipeline
from agents.checkpoint import save_model
from agents.models import ModelConfig
from agents.online_state import save_training_state
from agents.pipeline import DataConfig
from agents.rl_reference import ONLINE_METHODS, OnlineConfig, make_online
from agents.runtime import flush_denormals, seed_everything
from rmtl_bench.rl_block import BUDGETS
from rmtl_bench.smoke import add_smoke_flag, announce_smoke
from rmtl_env.data import SessionDataset
from rmtl_env.evaluation import evaluate_policy

OFF_POLICY = tuple(m for m in ONLINE_METHODS if m != "ppo")  # PPO's cost is its rollouts
SMOKE_PLE = ModelConfig(embed_dim=8, bottom_dims=(16, 8), tower_dims=(8,))


class Cost(NamedTuple):
    update_seconds: float
    env_steps_per_second: float
    eval_seconds: float
    save_seconds: float  # one save of the training state (the cell saves one per curve point)
    state_megabytes: float

    def projected_seconds(self, config: OnlineConfig) -> float:
        """The cell's wall time at ``config``'s budget."""
        vector_steps = (config.env_steps - config.learning_starts) / config.n_envs
        updates = vector_steps * config.gradient_steps
        evaluations = config.env_steps // config.eval_every + 2  # the curve's points and the test
        return (updates * self.update_seconds + config.env_steps / self.env_steps_per_second
                + evaluations * (self.eval_seconds + self.save_seconds))  # fmt: skip


def measure(
    model, dataset: SessionDataset, config: OnlineConfig, updates: int, state_path: Path
) -> Cost:
    """One method's cost at the current thread count (``model``'s buffer already filled)."""
    model.train(gradient_steps=2, batch_size=config.batch_size)  # warm-up, both TD3 step kinds
    start = time.perf_counter()
    model.train(gradient_steps=updates, batch_size=config.batch_size)
    update_seconds = (time.perf_counter() - start) / updates
    env, obs = model.get_env(), model._last_obs
    vector_steps = max(1, 512 // config.n_envs)
    start = time.perf_counter()
    for _ in range(vector_steps):
        actions, _ = model.predict(obs, deterministic=False)
        obs, *_ = env.step(actions)
    env_rate = vector_steps * config.n_envs / (time.perf_counter() - start)
    start = time.perf_counter()
    evaluate_policy(model, dataset, config.eval_split)
    eval_seconds = time.perf_counter() - start
    start = time.perf_counter()
    save_training_state(model, state_path, {})
    save_seconds = time.perf_counter() - start
    return Cost(
        update_seconds, env_rate, eval_seconds, save_seconds, state_path.stat().st_size / 2**20
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--dataset", default="kuairand-synthetic")
    parser.add_argument(
        "--methods", nargs="+", choices=OFF_POLICY, default=["td3", "sac", "td3-ple"]
    )
    parser.add_argument("--threads", nargs="+", type=int, default=[1, 2],
                        help="torch thread counts to measure each method at")  # fmt: skip
    parser.add_argument("--updates", type=int, default=10, help="timed updates per measurement")
    parser.add_argument("--seed", type=int, default=0)
    add_smoke_flag(parser, "the tiny twin, the quick profile's budget, a tiny PLE, 2 updates")
    args = parser.parse_args()
    smoke = announce_smoke(args)
    if min(args.threads) < 1 or args.updates < 1:
        parser.error("--threads and --updates must be at least 1")
    flush_denormals()
    profile = "quick" if smoke else "full"
    config = BUDGETS[profile].online
    updates = 2 if smoke else args.updates
    scale = "tiny" if smoke else "small"
    splits = pipeline.load_splits(DataConfig(dataset=args.dataset, scale=scale))
    data = splits.dataset
    print(f"{splits.describe()}; the {profile} budget: {config.env_steps:,} env steps, "
          f"{config.gradient_steps} updates per {config.n_envs} env steps at batch "
          f"{config.batch_size}, a validation score every {config.eval_every:,}")  # fmt: skip
    print(f"{'method':<9} {'threads':>7} {'s/update':>9} {'env steps/s':>12} {'eval s':>7} "
          f"{'save s':>7} {'state MB':>9} {'cell (projected)':>18}", flush=True)  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        for method in args.methods:
            checkpoint = None
            if method == "td3-ple":
                backbone = pipeline.build_backbone(
                    "ple", splits, SMOKE_PLE if smoke else ModelConfig()
                )
                checkpoint = save_model(backbone, Path(tmp) / "ple.pt")
            seed_everything(args.seed)
            model = make_online(method, data, config, args.seed, checkpoint)
            model.learn(config.learning_starts)  # fills the buffer with random actions
            for threads in args.threads:
                torch.set_num_threads(threads)
                cost = measure(model, data, config, updates, Path(tmp) / "state.pt")
                minutes = cost.projected_seconds(config) / 60
                print(f"{method:<9} {threads:>7} {cost.update_seconds:>9.3f} "
                      f"{cost.env_steps_per_second:>12,.0f} {cost.eval_seconds:>7.1f} "
                      f"{cost.save_seconds:>7.1f} {cost.state_megabytes:>9,.0f} "
                      f"{minutes:>14,.1f} min", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
