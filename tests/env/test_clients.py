"""What RL clients need from the environment: Gymnasium's keywords, a flat Box observation, a
vector reward, and the same info keys at reset and at every step."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import rmtl_env  # noqa: F401 -- registers SessionRecEnv-v0

TINY = {"dataset": "retailrocket-synthetic", "scale": "tiny"}


def rollout(env: gym.Env, steps: int = 40, seed: int = 0) -> list[tuple]:
    rng = np.random.default_rng(seed)
    obs, info = env.reset(seed=seed)
    out = [(obs, None, info)]
    for _ in range(steps):
        action = rng.random(env.action_space.shape).astype(np.float32)
        obs, reward, terminated, truncated, info = env.step(action)
        out.append((obs, reward, info))
        if terminated or truncated:
            obs, info = env.reset()
            out.append((obs, None, info))
    return out


@pytest.mark.parametrize("mode", [None, "ansi"])
def test_render_mode_is_a_gymnasium_keyword(mode) -> None:
    env = gym.make("SessionRecEnv-v0", **TINY, render_mode=mode)
    env.reset(seed=0)
    text = env.render()
    assert (text is None) if mode is None else text.startswith("session ")
    assert "ansi" in env.metadata["render_modes"]
    with pytest.warns(UserWarning, match="render_mode 'rgb_array' is not one of"):
        env = rmtl_env.SessionRecEnv(render_mode="rgb_array", **TINY)  # SB3's make_vec_env's
    env.reset(seed=0)
    assert env.render() is None


def test_an_unknown_keyword_is_pythons_standard_type_error() -> None:
    with pytest.raises(TypeError, match="got an unexpected keyword argument 'frameskip'"):
        gym.make("SessionRecEnv-v0", **TINY, frameskip=4)
    env = gym.make("SessionRecEnv-v0", **TINY, dataset_kwargs={"session_key": "visitor"})
    assert env.unwrapped.dataset.meta["params"]["retailrocket"]["session_key"] == "visitor"


def test_flat_mode_equals_flattened_dict_mode_in_float32() -> None:
    flat = gym.make("SessionRecEnv-v0", **TINY, observation_mode="flat")
    wrapped = gym.wrappers.FlattenObservation(gym.make("SessionRecEnv-v0", **TINY))
    assert flat.observation_space.dtype == np.float32
    np.testing.assert_array_equal(flat.observation_space.low, wrapped.observation_space.low)
    np.testing.assert_array_equal(flat.observation_space.high, wrapped.observation_space.high)
    for (a, _, _), (b, _, _) in zip(rollout(flat), rollout(wrapped), strict=True):
        assert a.dtype == np.float32 and flat.observation_space.contains(a)
        np.testing.assert_array_equal(a, b.astype(np.float32))


def test_vector_reward_sums_to_the_scalar_reward() -> None:
    weights = [2.0, 0.5]
    vector = gym.make(
        "SessionRecEnv-v0", **TINY, reward_mode="vector", reward_weights=weights,
        disable_env_checker=True,  # it checks for a scalar reward, as MO-Gymnasium envs do
    )  # fmt: skip
    scalar = gym.make("SessionRecEnv-v0", **TINY, reward_weights=weights)
    space = vector.unwrapped.reward_space
    assert space.shape == (2,) and (space.high == 0).all() and (space.low < 0).all()
    pairs = zip(rollout(vector), rollout(scalar), strict=True)
    for (_, a, info), (_, b, _) in pairs:
        if a is None:
            continue
        assert (
            isinstance(a, np.ndarray) and a.shape == (2,) and space.contains(a.astype(np.float32))
        )
        assert a.sum() == pytest.approx(b, abs=1e-12)
        np.testing.assert_allclose(a, np.array(weights) * info["task_rewards"])


def test_reset_and_step_infos_have_the_same_keys_and_shapes() -> None:
    env = gym.make("SessionRecEnv-v0", **TINY)
    seen = rollout(env)
    keys = {frozenset(info) for _, _, info in seen}
    assert len(keys) == 1
    _, _, first = seen[0]
    assert first["step"] == 0 and first["task_rewards"].shape == (2,)
    assert (first["task_rewards"] == 0).all() and first["labels"].dtype == np.float32


def test_native_vector_env_replays_sessions_with_next_step_autoreset() -> None:
    from rmtl_env.rewards import task_rewards

    envs = gym.make_vec("SessionRecEnv-v0", num_envs=16, vectorization_mode="vector_entry_point",
                        **TINY, reward_weights=[2.0, 0.5])  # fmt: skip
    data, weights = envs.single.data, np.array([2.0, 0.5])
    starts = dict(zip(data.session_id[data.session_starts[:-1]], data.session_starts[:-1],
                      strict=True))  # fmt: skip
    assert envs.observation_space.shape is None and envs.action_space.shape == (16, 2)
    obs, info = envs.reset(seed=0)
    assert (info["step"] == 0).all() and set(info) == {"session_id", "session_length", "step",
                                                       "task_rewards", "labels"}  # fmt: skip
    rng, lengths, done_before = np.random.default_rng(0), {}, np.zeros(16, dtype=bool)
    scored = np.zeros(16, dtype=int)
    for _ in range(60):
        actions = rng.random((16, 2), dtype=np.float32)
        obs, reward, terminated, truncated, info = envs.step(actions)
        assert not truncated.any() and envs.observation_space.contains(obs)
        # An autoreset step (the sub-env ended on the previous step) scores nothing.
        assert (reward[done_before] == 0).all() and not terminated[done_before].any()
        assert (info["step"][done_before] == 0).all()
        live = ~done_before
        rows = np.array([starts[s] for s in info["session_id"]]) + info["step"]
        expected = task_rewards(data.labels[rows[live]], actions[live]) @ weights
        np.testing.assert_allclose(reward[live], expected, rtol=1e-9)
        scored = np.where(done_before, 0, scored + 1)
        for i in np.flatnonzero(terminated):  # an episode is exactly its session
            assert scored[i] == info["session_length"][i]
            lengths[i] = scored[i]
        done_before = terminated
    assert lengths  # some sessions ended within 60 steps
    with pytest.raises(ValueError, match="finite probabilities"):
        envs.step(np.full((16, 2), np.nan))
