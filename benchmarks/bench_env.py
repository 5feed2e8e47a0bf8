"""Benchmark: SessionRecEnv steps per second, vectorised env-steps per second and batched
transitions per second.

On the small RetailRocket twin (train split), each figure printed as soon as it is measured: a
single env stepped with random actions (target >= 50,000 steps/s); the native vector env
(``vectorization_mode="vector_entry_point"``) beside a plain NumPy replay of the same step
(the same outputs, float64 rewards included, and next-step autoreset, written directly with
``np.take`` gathers) at N = 1, 16, 256 and 4096, the best of three interleaved rounds each, with
their ratio (target at N = 4096: at least 1x); ``make_vec`` sync at N = 16, 256 and 4096 with the resident memory each sub-env adds (they
share one read-only copy of the dataset; target <= 0.5 MB); ``build_transitions`` with given
actions, no policy calls (target >= 5,000,000 transitions/s).

    python benchmarks/bench_env.py [--dataset retailrocket-synthetic] [--scale small] [--seed 0]
        [--steps 200000] [--smoke]
"""

from __future__ import annotations

import argparse
import gc
import os
import time

import gymnasium as gym
import numpy as np

from rmtl_bench.smoke import add_smoke_flag, announce_smoke
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
    add_smoke_flag(parser, "the tiny twin, 2,000 steps, N = 1 and 16, rounds of 0.02 s")
    args = parser.parse_args()
    vector_sizes, sync_sizes, seconds = (1, 16, 256, 4096), (16, 256, 4096), 0.5
    if announce_smoke(args):
        args.scale, args.steps = "tiny", 2_000
        vector_sizes, sync_sizes, seconds = (1, 16), (16,), 0.02
    dataset = load_dataset(args.dataset, scale=args.scale, seed=args.seed)
    env = SessionRecEnv(dataset, split="train")
    data = env.data
    say(f"dataset: {dataset.name} ({args.scale}), train split: {len(data):,} impressions, "
        f"{data.num_sessions:,} sessions")  # fmt: skip
    rng = np.random.default_rng(args.seed)
    actions = rng.random((args.steps, len(env.tasks)), dtype=np.float32)
    env.reset(seed=args.seed)
    start = time.perf_counter()
    for action in actions:
        _, _, terminated, _, _ = env.step(action)
        if terminated:
            env.reset()
    say(f"single env, random actions: {args.steps / (time.perf_counter() - start):,.0f} steps/s "
        "(target >= 50,000)")  # fmt: skip

    for n in vector_sizes:
        # Interleaved rounds, the best of each: a noisy neighbour slows a round, never speeds it.
        native = replay = 0.0
        for _ in range(3):
            native = max(native, vector_rate(dataset, "vector_entry_point", n, args.seed, seconds))
            replay = max(replay, numpy_replay_rate(data, n, args.seed, seconds))
        target = " (target: >= the NumPy replay)" if n == 4096 else ""
        say(f"N = {n:>4}: native vector env {native:>13,.0f} env-steps/s, NumPy replay with "
            f"np.take {replay:>13,.0f}: native {native / replay:.2f}x{target}")  # fmt: skip
    for n in sync_sizes:
        rate, megabytes = sync_rate_and_memory(dataset, n, args.seed, 2 * seconds)
        say(f"make_vec sync, N = {n:>4}: {rate:>11,.0f} env-steps/s, {megabytes:.3f} MB per env "
            "(target <= 0.5)")  # fmt: skip

    given = rng.random((len(data), len(env.tasks)), dtype=np.float32)
    build_transitions(data, actions=given)  # warm-up
    repeats = 5
    start = time.perf_counter()
    for _ in range(repeats):
        build_transitions(data, actions=given)
    builder_rate = repeats * len(data) / (time.perf_counter() - start)
    say(f"build_transitions, given actions: {builder_rate:,.0f} transitions/s "
        "(target >= 5,000,000)")  # fmt: skip


def say(line: str) -> None:
    """Print a figure as soon as it is measured."""
    print(line, flush=True)


def resident_mb() -> float:
    """This process's resident set size in MB (Linux)."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e6


def sync_rate_and_memory(
    dataset, num_envs: int, seed: int, seconds: float = 1.0
) -> tuple[float, float]:
    """Env-steps per second of ``make_vec`` sync with ``num_envs`` sub-envs on one loaded
    dataset over ``seconds``, and the resident memory each sub-env adds (MB)."""
    gc.collect()
    before = resident_mb()
    rate = vector_rate(dataset, "sync", num_envs, seed, seconds=seconds, keep=True)
    added = resident_mb() - before
    gc.collect()
    return rate, added / num_envs


def numpy_replay_rate(data, num_envs: int, seed: int, seconds: float = 1.5) -> float:
    """Env-steps per second of a plain NumPy replay of the vector env's step, written directly
    with ``np.take`` gathers: the same outputs (observations, float64 scalar rewards clipped in
    float64 as the env clips, terminations, the five info arrays) and the same next-step autoreset (a sub-env that terminated starts a new
    session on the next step, which scores nothing). The vector env's yardstick."""
    categorical = np.ascontiguousarray(data.categorical)
    numerical = np.ascontiguousarray(data.numerical)
    labels = np.ascontiguousarray(data.labels, dtype=np.float32)
    starts, ends = data.session_starts[:-1], data.session_starts[1:]
    session_ids = data.session_id[starts]
    rng = np.random.default_rng(seed)
    session = rng.integers(len(starts), size=num_envs)
    row, start, end = starts[session].copy(), starts[session].copy(), ends[session].copy()
    restart = np.zeros(num_envs, dtype=bool)
    actions = rng.random((64, num_envs, labels.shape[1]), dtype=np.float32)  # as vector_rate
    weights = np.ones(labels.shape[1])

    def step(action):
        nonlocal row, restart
        y = np.take(labels, row, axis=0)
        a = np.clip(action.astype(np.float64), 1e-7, 1 - 1e-7)  # the env's float64 rewards
        task_rewards = np.log(np.where(y > 0, a, 1.0 - a))
        terminated = row + 1 >= end
        steps = row - start
        again = np.flatnonzero(restart)
        task_rewards[again], y[again], terminated[again], steps[again] = 0.0, 0.0, False, 0
        reward = task_rewards @ weights
        row = row + ~terminated
        if len(again):
            fresh = rng.integers(len(starts), size=len(again))
            session[again], row[again] = fresh, starts[fresh]
            start[again], end[again] = starts[fresh], ends[fresh]
        info = {"session_id": session_ids[session], "session_length": end - start,
                "step": steps, "task_rewards": task_rewards, "labels": y}  # fmt: skip
        obs = {"categorical": np.take(categorical, row, axis=0),
               "numerical": np.take(numerical, row, axis=0)}  # fmt: skip
        restart = terminated
        return obs, reward, terminated, np.zeros(num_envs, dtype=bool), info

    step(actions[0])
    steps, began = 0, time.perf_counter()
    while time.perf_counter() - began < seconds:
        for action in actions:
            step(action)
        steps += len(actions)
    return steps * num_envs / (time.perf_counter() - began)


def vector_rate(
    dataset, mode: str, num_envs: int, seed: int, seconds: float = 1.5, keep: bool = False
) -> float:
    """Env-steps per second of ``gym.make_vec`` in ``mode`` with ``num_envs`` sub-envs
    (``keep``: leave the envs alive, for the caller's memory reading)."""
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
    if keep:
        _KEPT.append(envs)
    else:
        envs.close()
    return rate


_KEPT: list = []  # envs whose memory is being measured


if __name__ == "__main__":
    main()
