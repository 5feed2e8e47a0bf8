"""Benchmark: SessionRecEnv steps per second and batched transitions per second.

On the small RetailRocket twin (train split): a single env stepped with random actions
(target >= 50,000 steps/s) and ``build_transitions`` with given actions, no policy calls
(target >= 5,000,000 transitions/s).

    python benchmarks/bench_env.py [--dataset retailrocket-synthetic] [--scale small] [--seed 0]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from rmtl_env import SessionRecEnv, build_transitions
from rmtl_env.data import load_dataset


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--dataset", default="retailrocket-synthetic")
    parser.add_argument("--scale", default="small")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=200_000)
    args = parser.parse_args()
    dataset = load_dataset(args.dataset, scale=args.scale, seed=args.seed)
    env = SessionRecEnv(dataset, split="train")
    rng = np.random.default_rng(args.seed)
    actions = rng.random((args.steps, len(env.tasks)), dtype=np.float32)
    env.reset(seed=args.seed)
    start = time.perf_counter()
    for action in actions:
        _, _, terminated, _, _ = env.step(action)
        if terminated:
            env.reset()
    env_rate = args.steps / (time.perf_counter() - start)

    data = env.data
    given = rng.random((len(data), len(env.tasks)), dtype=np.float32)
    build_transitions(data, actions=given)  # warm-up
    repeats = 5
    start = time.perf_counter()
    for _ in range(repeats):
        build_transitions(data, actions=given)
    builder_rate = repeats * len(data) / (time.perf_counter() - start)
    print(
        f"dataset: {dataset.name} ({args.scale}), train split: {len(data):,} impressions, {data.num_sessions:,} sessions"
    )
    print(f"single env, random actions: {env_rate:,.0f} steps/s (target >= 50,000)")
    print(
        f"build_transitions, given actions: {builder_rate:,.0f} transitions/s (target >= 5,000,000)"
    )


if __name__ == "__main__":
    main()
