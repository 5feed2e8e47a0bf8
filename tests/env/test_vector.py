"""The native vector env against Gymnasium's own ``SyncVectorEnv`` of ``SessionRecEnv``, in the
three autoreset modes, with the same sessions drawn on both sides; MO-Gymnasium's vector
wrapper on it; the flat id in a CleanRL-shaped loop."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.vector import AutoresetMode, SyncVectorEnv

import rmtl_env  # noqa: F401  (registers the environments)
from rmtl_env import SessionRecEnv
from rmtl_env.data import load_dataset
from rmtl_env.vector import SessionRecVectorEnv

N = 6


@pytest.fixture(scope="module")
def tiny():
    return load_dataset("retailrocket-synthetic", scale="tiny", seed=0)


class Scripted(SessionRecVectorEnv):
    """The native env drawing each sub-env's sessions from a fixed script."""

    def __init__(self, scripts, **kwargs):
        super().__init__(**kwargs)
        self.scripts = [list(s) for s in scripts]

    def _draw(self, envs):
        return np.array([self.scripts[i].pop(0) for i in envs])


class ScriptedEnv(gym.Wrapper):
    """One ``SessionRecEnv`` replaying the sessions of its script in order."""

    def __init__(self, env, script):
        super().__init__(env)
        self.script = list(script)

    def reset(self, *, seed=None, options=None):
        ids = self.env.unwrapped._session_ids
        return self.env.reset(seed=seed, options={"session_id": int(ids[self.script.pop(0)])})


def both(tiny, mode, **kwargs):
    rng = np.random.default_rng(1)
    sessions = tiny.split("train").num_sessions
    scripts = rng.integers(sessions, size=(N, 200))
    native = Scripted(scripts, num_envs=N, dataset=tiny, autoreset_mode=mode, **kwargs)
    sync = SyncVectorEnv(
        [lambda s=s: ScriptedEnv(SessionRecEnv(tiny, **kwargs), s) for s in scripts],
        autoreset_mode=mode,
    )
    return native, sync


def assert_same(a, b, keys=None) -> None:
    if isinstance(a, dict):
        for key in keys or a:
            assert_same(a[key], b[key])
    else:
        np.testing.assert_allclose(np.asarray(a, dtype=np.float64), np.asarray(b, np.float64))


INFO = ("session_id", "session_length", "step", "task_rewards", "labels")


@pytest.mark.parametrize("mode", list(AutoresetMode))
def test_each_autoreset_mode_behaves_as_gymnasiums_sync_vector_env(tiny, mode) -> None:
    native, sync = both(tiny, mode, reward_weights=[1.0, 3.0])
    rng = np.random.default_rng(0)
    for env in (native, sync):
        obs, info = env.reset(seed=0)
    ours, theirs = native.reset(seed=0), sync.reset(seed=0)
    assert_same(ours[0], theirs[0])
    assert_same(ours[1], theirs[1], INFO)
    ended_any = False
    for _ in range(40):
        actions = rng.random((N, 2))
        ours, theirs = native.step(actions), sync.step(actions)
        for mine, gyms in zip(ours[:4], theirs[:4], strict=True):
            assert_same(mine, gyms)
        assert_same(ours[4], theirs[4], INFO)
        terminated = ours[2]
        if mode == AutoresetMode.SAME_STEP and terminated.any():
            ended_any = True
            np.testing.assert_array_equal(ours[4]["_final_obs"], theirs[4]["_final_obs"])
            for i in np.flatnonzero(terminated):
                assert_same(ours[4]["final_obs"][i], theirs[4]["final_obs"][i])
                for key in INFO:
                    assert_same(ours[4]["final_info"][key][i], theirs[4]["final_info"][key][i])
        if mode == AutoresetMode.DISABLED and terminated.any():
            ended_any = True
            with pytest.raises(RuntimeError, match="reset_mask"):
                native.step(actions)
            ours = native.reset(options={"reset_mask": terminated.copy()})
            theirs = sync.reset(options={"reset_mask": terminated.copy()})
            assert_same(ours[0], theirs[0])
            for key in INFO:
                mask = ours[1][f"_{key}"]
                np.testing.assert_array_equal(mask, theirs[1][f"_{key}"])
                assert_same(ours[1][key][mask], theirs[1][key][mask])
        ended_any |= bool(terminated.any())
    assert ended_any


def test_an_unknown_autoreset_mode_and_a_wrong_action_shape_are_refused(tiny) -> None:
    with pytest.raises(ValueError, match="autoreset_mode must be one of"):
        SessionRecVectorEnv(num_envs=2, dataset=tiny, autoreset_mode="sometimes")
    envs = SessionRecVectorEnv(num_envs=2, dataset=tiny)
    envs.reset(seed=0)
    with pytest.raises(ValueError, match=r"shape \(2, 2\)"):
        envs.step(np.full(4, 0.5))


def test_make_vec_passes_the_autoreset_mode_and_the_reward_space(tiny) -> None:
    envs = gym.make_vec("SessionRecEnv-v0", num_envs=3, vectorization_mode="vector_entry_point",
                        dataset=tiny, reward_mode="vector",
                        autoreset_mode="same_step")  # fmt: skip
    assert envs.metadata["autoreset_mode"] == AutoresetMode.SAME_STEP
    assert (
        SessionRecVectorEnv(num_envs=1, dataset=tiny, autoreset_mode="Disabled").autoreset_mode
        == AutoresetMode.DISABLED
    )
    assert envs.unwrapped.reward_space.shape == (2,)


def test_mo_gymnasiums_vector_wrapper_runs_on_the_native_env(tiny) -> None:
    mo_wrappers = pytest.importorskip(
        "mo_gymnasium.wrappers.vector", reason="MO-Gymnasium is in the clients extra"
    )
    envs = gym.make_vec("SessionRecEnv-v0", num_envs=4, vectorization_mode="vector_entry_point",
                        dataset=tiny, reward_mode="vector")  # fmt: skip
    envs = mo_wrappers.MORecordEpisodeStatistics(envs, gamma=0.9)
    envs.reset(seed=0)
    finished = 0
    for _ in range(30):
        _, reward, terminated, _, info = envs.step(np.full((4, 2), 0.3))
        assert reward.shape == (4, 2)
        if "episode" in info:
            finished += int(info["_episode"].sum())
            assert info["episode"]["r"].shape == (4, 2)
    assert finished > 0


def test_flat_id_runs_a_cleanrl_shaped_loop_with_no_wrapper() -> None:
    """What CleanRL's td3_continuous_action.py does with ``--env-id``: make_vec of the id in
    sync mode, read the Box shapes, act, step; then one env made by the ``module:id`` form."""
    envs = gym.make_vec("rmtl_env:SessionRecEnvFlat-v0", num_envs=2, vectorization_mode="sync",
                        dataset="retailrocket-synthetic", scale="tiny")  # fmt: skip
    assert isinstance(envs.single_action_space, gym.spaces.Box)
    obs_dim = int(np.prod(envs.single_observation_space.shape))
    act_dim = int(np.prod(envs.single_action_space.shape))
    obs, _ = envs.reset(seed=0)
    assert obs.shape == (2, obs_dim) and obs.dtype == np.float32
    for _ in range(10):
        actions = np.clip(np.full((2, act_dim), 0.2) + 0.01 * obs[:, :act_dim] * 0, 0, 1)
        obs, reward, terminated, truncated, infos = envs.step(actions)
        assert reward.shape == (2,) and obs.shape == (2, obs_dim)
    single = gym.make("rmtl_env:SessionRecEnvFlat-v0", dataset="retailrocket-synthetic",
                      scale="tiny")  # fmt: skip
    assert single.observation_space.shape == (obs_dim,)


def test_envs_made_by_name_share_one_copy_of_the_data() -> None:
    kwargs = {"dataset": "retailrocket-synthetic", "scale": "tiny"}
    first, second = gym.make("SessionRecEnv-v0", **kwargs), gym.make("SessionRecEnv-v0", **kwargs)
    assert first.unwrapped.dataset is second.unwrapped.dataset
    assert first.unwrapped.data is second.unwrapped.data
    assert first.unwrapped._labels is second.unwrapped._labels  # the per-step label rows too
    other = gym.make("SessionRecEnv-v0", dataset="retailrocket-synthetic", scale="tiny",
                     split="test")  # fmt: skip
    assert other.unwrapped.dataset is first.unwrapped.dataset
    assert other.unwrapped.data is not first.unwrapped.data


def test_a_client_reading_n_from_the_dict_space_is_pointed_to_flat_mode(tiny) -> None:
    import copy
    import pickle

    space = SessionRecEnv(tiny).observation_space
    with pytest.raises(AttributeError, match="SessionRecEnvFlat-v0"):
        space.n  # noqa: B018 -- what Tianshou reads from a Dict observation space
    assert isinstance(space, gym.spaces.Dict) and space.contains(space.sample())
    assert pickle.loads(pickle.dumps(space)) == space and copy.deepcopy(space) == space


def test_float32_edge_actions_score_as_the_single_env_and_a_restarting_actions_is_ignored(
    tiny,
) -> None:
    # float32 0 and 1 are clipped in float64 as SessionRecEnv does (a float32 clip once cost
    # a confident wrong action 15.94 instead of 16.12), and a NaN action of a sub-env that
    # restarts in this step is ignored, as SyncVectorEnv ignores it.
    native, sync = both(tiny, AutoresetMode.NEXT_STEP)
    native.reset(seed=0), sync.reset(seed=0)
    rng = np.random.default_rng(2)
    restarting = np.zeros(N, dtype=bool)
    for _ in range(30):
        actions = rng.choice(np.float32([0.0, 1.0, 1e-9, 0.5]), size=(N, 2))
        actions[restarting] = np.nan
        ours, theirs = native.step(actions), sync.step(actions)
        np.testing.assert_allclose(ours[1], theirs[1], rtol=1e-9)  # log(1 - a) vs log1p(-a)
        assert_same(ours[4], theirs[4], INFO)
        assert not np.signbit(ours[4]["task_rewards"][restarting]).any()  # 0.0, not -0.0
        restarting = ours[2]
    assert restarting.any() or native._needs_reset.any()
