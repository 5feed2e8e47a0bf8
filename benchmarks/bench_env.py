"""Benchmark: SessionRecEnv steps per second, vectorised env-steps per second and batched
transitions per second.

On the small RetailRocket twin (train split): a single env stepped with random actions
(target >= 50,000 steps/s); the native vector env (``vectorization_mode="vector_entry_point"``)
and ``make_vec`` sync at N = 1, 16, 256 and 4096 (target for the native env at N = 4096:
>= 5,000,000 env-steps/s); ``build_transitions`` with given actions, no policy calls (target
>= 5,000,000 transitions/s).

    python benchmarks/bench_env.py [--dataset retailrocket-synthetic] [--scale small] [--seed 0]
"""

from __future__ import annotations

import argparse
import time

import gymnasium as gym
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

    vector_rates = {
        (mode, n): vector_rate(dataset, mode, n, args.seed)
        for n in (1, 16, 256, 4096)
        for mode in ("vector_entry_point", "sync")  # sync: N env objects sharing one split
    }

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
    for (mode, n), rate in vector_rates.items():
        target = " (target >= 5,000,000)" if (mode, n) == ("vector_entry_point", 4096) else ""
        print(f"make_vec {mode:>18}, N = {n:>4}: {rate:>13,.0f} env-steps/s{target}")
    print(
        f"build_transitions, given actions: {builder_rate:,.0f} transitions/s (target >= 5,000,000)"
    )


def vector_rate(dataset, mode: str, num_envs: int, seed: int, seconds: float = 1.5) -> float:
    """Env-steps per second of ``gym.make_vec`` in ``mode`` with ``num_envs`` sub-envs."""
    envs = gym.make_vec("SessionRecEnv-v0", num_envs=num_envs, vectorization_mode=mode,
                        dataset=dataset)  # fmt: skip
    rng = np.random.default_rng(seed)
    actions = rng.random((64, *envs.action_space.shape), dtype=np.float32)
    envs.reset(seed=seed)
    envs.step(actions[0])  # warm-up
    steps, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        for action in actions:
            envs.step(action)
        steps += len(actions)
    rate = steps * num_envs / (time.perf_counter() - start)
    envs.close()
    return rate


if __name__ == "__main__":
    main()
