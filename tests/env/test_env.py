"""SessionRecEnv-v0: API conformance, spaces, rewards, resets, errors and vectorisation."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env as gym_check_env
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sklearn.metrics import log_loss

import rmtl_env  # noqa: F401  (registers the environment)
from rmtl_env import SessionRecEnv, build_transitions
from rmtl_env.data import load_dataset

SLOW = settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@pytest.fixture(scope="module")
def tiny():
    return load_dataset("retailrocket-synthetic", scale="tiny", seed=0)


@pytest.fixture(scope="module")
def tiny_k3():
    return load_dataset(
        "kuairand-synthetic", scale="tiny", seed=0, tasks=("is_click", "long_view", "is_like")
    )


def test_checkers_pass(tiny):
    from stable_baselines3.common.env_checker import check_env as sb3_check_env

    env = SessionRecEnv(tiny)
    gym_check_env(env, skip_render_check=True)
    with pytest.warns(UserWarning, match="symmetric"):
        sb3_check_env(SessionRecEnv(tiny), warn=True)


def test_spaces(tiny, tiny_k3):
    env = SessionRecEnv(tiny_k3)
    cat = env.observation_space["categorical"]
    assert cat.dtype == np.int64 and (cat.high == np.array(tiny_k3.field_dims) - 1).all()
    num = env.observation_space["numerical"]
    assert num.dtype == np.float32 and np.isfinite(num.low).all() and np.isfinite(num.high).all()
    assert env.action_space.shape == (3,)
    for split in ("train", "val", "test"):
        data = tiny_k3.split(split)
        assert all(
            env.observation_space["categorical"].contains(row) for row in data.categorical[:200]
        )
        assert (data.numerical >= num.low).all() and (data.numerical <= num.high).all()
    flat = gym.wrappers.FlattenObservation(gym.make("SessionRecEnv-v0", dataset=tiny))
    obs, _ = flat.reset(seed=0)
    assert obs.shape == (len(tiny.categorical_fields) + len(tiny.numerical_fields),)


def test_gym_make_by_name_and_task_subset():
    env = gym.make(
        "SessionRecEnv-v0", dataset="retailrocket-synthetic", scale="tiny", tasks=["ctcvr"]
    )
    obs, info = env.reset(seed=1)
    assert env.action_space.shape == (1,) and info["step"] == 0
    _, reward, *_, step_info = env.step(np.array([0.3], dtype=np.float32))
    assert step_info["labels"].shape == (1,) and reward <= 0


def _run_episode(env, rng, seed=None, options=None):
    obs, info = env.reset(seed=seed, options=options)
    rewards, labels, actions, steps = [], [], [], 0
    while True:
        action = rng.uniform(0.01, 0.99, env.action_space.shape).astype(np.float32)
        obs, reward, terminated, truncated, step_info = env.step(action)
        rewards.append(reward)
        labels.append(step_info["labels"])
        actions.append(action)
        steps += 1
        assert not truncated
        if terminated:
            return info, steps, np.array(rewards), np.array(labels), np.array(actions)


@SLOW
@given(
    seed=st.integers(0, 2**31 - 1), weights=st.lists(st.floats(0.1, 3.0), min_size=3, max_size=3)
)
def test_episode_length_and_reward_equal_log_loss(tiny_k3, seed, weights):
    env = SessionRecEnv(tiny_k3, reward_weights=weights)
    rng = np.random.default_rng(seed)
    info, steps, rewards, labels, actions = _run_episode(env, rng, seed=seed)
    data = env.data
    session = np.flatnonzero(data.session_id == info["session_id"])
    assert steps == info["session_length"] == len(session)
    expected = 0.0
    for row in range(steps):
        for k in range(3):
            expected -= weights[k] * log_loss([labels[row, k]], [actions[row, k]], labels=[0, 1])
    assert np.isclose(rewards.sum(), expected, rtol=1e-5, atol=1e-6)
    assert (labels == data.labels[session]).all()


@SLOW
@given(seed=st.integers(0, 2**31 - 1))
def test_same_seed_same_episodes(tiny, seed):
    def sessions(env):
        out = [env.reset(seed=seed)[1]["session_id"]]
        out += [env.reset()[1]["session_id"] for _ in range(5)]
        return out

    assert sessions(SessionRecEnv(tiny)) == sessions(SessionRecEnv(tiny))


@pytest.mark.parametrize("split", ["train", "test"])
def test_sequential_pass_visits_every_session_once(tiny, split):
    env = SessionRecEnv(tiny, split=split, session_order="sequential")
    seen = [env.reset(seed=0)[1]["session_id"]]
    seen += [env.reset()[1]["session_id"] for _ in range(env.data.num_sessions - 1)]
    assert sorted(seen) == sorted(set(seen)) and len(seen) == env.data.num_sessions
    assert env.reset()[1]["session_id"] == seen[0]  # the next pass starts over


def test_replay_one_session_and_observations_follow_the_log(tiny):
    env = SessionRecEnv(tiny)
    data = env.data
    lengths = data.session_lengths
    target = int(np.argmax(lengths))
    sid = int(data.session_id[data.session_starts[target]])
    obs, info = env.reset(options={"session_id": sid})
    rows = range(data.session_starts[target], data.session_starts[target + 1])
    for i, row in enumerate(rows):
        assert (obs["categorical"] == data.categorical[row]).all()
        obs, _, terminated, _, _ = env.step(np.full(2, 0.5, dtype=np.float32))
        assert terminated == (i == len(rows) - 1)
    assert (obs["categorical"] == data.categorical[rows[-1]]).all()
    with pytest.raises(RuntimeError, match="call reset"):
        env.step(np.full(2, 0.5, dtype=np.float32))
    with pytest.raises(ValueError, match="not in split"):
        env.reset(options={"session_id": -5})


@pytest.mark.parametrize(
    ("action", "message"),
    [
        ([0.5, 0.5, 0.5], "shape"),
        ([np.nan, 0.5], "finite"),
        ([1.5, 0.2], r"in \[0, 1\]"),
        ([-0.1, 0.2], r"in \[0, 1\]"),
    ],
)
def test_bad_actions(tiny, action, message):
    env = SessionRecEnv(tiny)
    env.reset(seed=0)
    with pytest.raises(ValueError, match=message):
        env.step(np.array(action))


def test_bad_arguments(tiny):
    with pytest.raises(ValueError, match="session_order"):
        SessionRecEnv(tiny, session_order="shuffled")
    with pytest.raises(ValueError, match="reward_weights"):
        SessionRecEnv(tiny, reward_weights=[1.0])
    with pytest.raises(ValueError, match="tasks must be"):
        SessionRecEnv(tiny, tasks=["cvr"])
    with pytest.raises(ValueError, match="split must be"):
        SessionRecEnv(tiny, split="valid")


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_vector_envs(mode):
    envs = gym.make_vec(
        "SessionRecEnv-v0", num_envs=2, vectorization_mode=mode,
        dataset="retailrocket-synthetic", scale="tiny",
    )  # fmt: skip
    obs, _ = envs.reset(seed=0)
    assert obs["categorical"].shape[0] == 2
    for _ in range(20):
        obs, reward, terminated, truncated, info = envs.step(envs.action_space.sample())
        assert reward.shape == (2,) and (reward <= 0).all()
    envs.close()


@pytest.mark.parametrize("fixture", ["tiny", "tiny_k3"])
def test_builder_equals_stepping_every_session(request, fixture):
    dataset = request.getfixturevalue(fixture)
    env = SessionRecEnv(dataset, split="val", session_order="sequential")
    data = env.data
    rng = np.random.default_rng(0)
    actions = rng.uniform(0, 1, (len(data), len(env.tasks))).astype(np.float32)
    built = build_transitions(data, actions=actions)
    rows = []
    for _ in range(data.num_sessions):
        obs, info = env.reset()
        row = int(
            data.session_starts[
                np.searchsorted(data.session_id[data.session_starts[:-1]], info["session_id"])
            ]
        )
        terminated = False
        while not terminated:
            next_obs, reward, terminated, _, step_info = env.step(actions[row])
            assert (built.categorical[row] == obs["categorical"]).all()
            assert (built.next_categorical[row] == next_obs["categorical"]).all()
            assert (built.next_numerical[row] == next_obs["numerical"]).all()
            assert np.allclose(built.rewards[row], step_info["task_rewards"], atol=1e-6)
            assert np.isclose(built.rewards[row].sum(), reward, atol=1e-5)
            assert built.terminated[row] == terminated
            assert built.session_id[row] == step_info["session_id"]
            rows.append(row)
            obs, row = next_obs, row + 1
    assert sorted(rows) == list(range(len(data)))


def test_builder_with_a_policy(tiny):
    data = tiny.split("train")
    calls = []

    def policy(obs):
        calls.append(len(obs["categorical"]))
        return np.full((len(obs["categorical"]), 2), 0.25)

    built = build_transitions(data, policy=policy, batch_size=1000)
    assert sum(calls) == len(data) and max(calls) == 1000
    assert np.allclose(built.action, 0.25)
    with pytest.raises(ValueError, match="exactly one"):
        build_transitions(data)
