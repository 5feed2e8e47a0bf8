"""Stock stable-baselines3 algorithms run on SessionRecEnv-v0 through gym.make."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import rmtl_env  # noqa: F401


@pytest.mark.parametrize("algorithm", ["TD3", "SAC"])
def test_sb3_multi_input_policy_learns_on_the_env(algorithm):
    import stable_baselines3

    env = gym.make("SessionRecEnv-v0", dataset="retailrocket-synthetic", scale="tiny")
    model = getattr(stable_baselines3, algorithm)(
        "MultiInputPolicy", env, learning_starts=500, batch_size=128, train_freq=4,
        policy_kwargs={"net_arch": [64, 64]}, seed=0, device="cpu",
    )  # fmt: skip
    model.learn(total_timesteps=2_000)
    obs, _ = env.reset(seed=0)
    action, _ = model.predict(obs, deterministic=True)
    assert action.shape == (2,) and np.all((action >= 0) & (action <= 1))
