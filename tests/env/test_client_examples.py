"""The README's "Every RL client, unmodified" blocks run as written, on the tiny twin with
fewer steps; each test then checks what the block promises."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import numpy as np
import pytest

from rmtl_env.data import load_dataset
from rmtl_env.offline import flat_observations
from rmtl_env.transitions import build_transitions

ROOT = Path(__file__).resolve().parents[2]

TINY = {
    'dataset="retailrocket-synthetic"': 'dataset="retailrocket-synthetic", scale="tiny"',
}


def genuine_pairs(split: str = "train") -> set[bytes]:
    """Every logged (observation, next observation) pair of the tiny twin's split, flat."""
    data = load_dataset("retailrocket-synthetic", scale="tiny").split(split)
    replay = build_transitions(data, actions=np.zeros((len(data), 2), np.float32))
    pairs = np.concatenate([flat_observations(replay), flat_observations(replay, True)], axis=1)
    return {row.tobytes() for row in pairs}


def test_cleanrl_loop_stores_only_logged_transitions(run_readme) -> None:
    ns = run_readme("### CleanRL (single-file TD3/DDPG)", {**TINY, "range(10_000)": "range(300)"})
    rb, envs = ns["rb"], ns["envs"]
    stored = np.concatenate([rb.observations[: rb.pos, 0], rb.next_observations[: rb.pos, 0]], 1)
    genuine = genuine_pairs()
    assert all(row.tobytes() in genuine for row in stored)  # no autoreset step stored
    assert 0.5 * 300 * envs.num_envs < rb.pos < 300 * envs.num_envs  # the rest were autoresets
    assert rb.dones[: rb.pos].any() and (rb.rewards[: rb.pos] <= 0).all()


def test_a_gymnasium_0_29_loop_would_store_bogus_transitions() -> None:
    """The control of the test above: storing every step's transition stores autoreset ones."""
    import gymnasium as gym

    envs = gym.make_vec(
        "SessionRecEnv-v0", num_envs=8, vectorization_mode="vector_entry_point",
        dataset="retailrocket-synthetic", scale="tiny", observation_mode="flat",
    )  # fmt: skip
    obs, _ = envs.reset(seed=0)
    genuine, bogus = genuine_pairs(), 0
    for _ in range(100):
        next_obs, *_ = envs.step(envs.action_space.sample())
        bogus += sum(
            np.concatenate([o, n]).tobytes() not in genuine
            for o, n in zip(obs, next_obs, strict=True)
        )
        obs = next_obs
    assert bogus > 0.2 * 100 * 8


def test_sb3_vecnormalize_leaves_the_ids_alone(run_readme) -> None:
    replacements = {
        '{"dataset": "retailrocket-synthetic"}': '{"dataset": "retailrocket-synthetic", '
        '"scale": "tiny"}',
        "total_timesteps=20_000": "total_timesteps=200",
    }
    # SB3's make_vec_env asks every env for render_mode="rgb_array", which ours warns about
    with pytest.warns(UserWarning, match="render_mode 'rgb_array' is not one of"):
        ns = run_readme("### stable-baselines3, with `VecNormalize`", replacements)
    venv, td3 = ns["venv"], ns["td3"]
    assert td3.num_timesteps >= 200
    raw = venv.get_original_obs()
    normalised = venv.normalize_obs(raw)
    assert np.array_equal(normalised["categorical"], raw["categorical"])
    assert venv.obs_rms["numerical"].count > 200


@pytest.fixture
def minari_home(tmp_path, monkeypatch):
    pytest.importorskip("minari", reason="Minari is in the clients extra")
    pytest.importorskip("jax", reason="Minari's DataCollector needs minari[create] (jax)")
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "minari"))
    return tmp_path / "minari"


def minari_missing(caught) -> list[str]:
    """The metadata fields Minari warned were missing, in ``caught`` warnings."""
    return [str(w.message).split()[0] for w in caught if "is set to None" in str(w.message)]


def test_minari_example_exports_and_records(run_readme, minari_home) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ns = run_readme("### Minari", TINY)
    # the export leaves one field to its user; the recording passes every field Minari asks for
    assert minari_missing(caught) == ["`author_email`"]
    exported, recorded = ns["dataset"], ns["recorded"]
    train = load_dataset("retailrocket-synthetic", scale="tiny").split("train")
    lengths = np.diff(train.session_starts)
    assert exported.total_episodes == train.num_sessions and exported.total_steps == len(train)
    assert [len(e) for e in exported.iterate_episodes()] == lengths.tolist()
    assert recorded.total_steps == 100
    episode = next(recorded.iterate_episodes())
    assert set(episode.infos) == {"session_id", "session_length", "step", "task_rewards", "labels"}
    assert len(episode) == episode.infos["session_length"][0]  # an episode is one session
    assert (minari_home / "rmtl" / "retailrocket-train-uniform-v0").is_dir()
    metadata = recorded.storage.metadata  # the recording's metadata is whole: Minari warned on none
    assert metadata["algorithm_name"] == "uniform random" and metadata["author"]
    assert recorded.recover_environment(eval_env=True).unwrapped.data.name == "test"


def test_minari_export_equals_what_data_collector_records(minari_home) -> None:
    """The exported episodes are the ones ``DataCollector(record_infos=True)`` records when
    the same actions are played through the env, session by session."""
    import gymnasium as gym
    import minari
    from minari import DataCollector

    from rmtl_env.offline import behaviour_actions, export_minari

    kwargs = {"dataset": "retailrocket-synthetic", "scale": "tiny", "split": "val"}
    exported = export_minari("rmtl/val-uniform-v0", "uniform", seed=3, **kwargs)
    head = export_minari("rmtl/val-head-v0", "uniform", seed=3, max_sessions=5, **kwargs)
    assert head.total_episodes == 5
    env = DataCollector(
        gym.make("SessionRecEnv-v0", session_order="sequential", **kwargs),
        record_infos=True,
    )
    data = env.unwrapped.data
    actions, row, sessions = behaviour_actions(data, "uniform", seed=3), 0, 60
    for _ in range(sessions):
        env.reset()
        terminated = False
        while not terminated:
            *_, terminated, _, _ = env.step(actions[row])
            row += 1
    recorded = env.create_dataset("rmtl/val-recorded-v0")
    assert exported.total_episodes == data.num_sessions
    pairs = zip(
        exported.iterate_episodes(range(sessions)), recorded.iterate_episodes(), strict=True
    )
    for ours, theirs in pairs:
        assert np.array_equal(ours.actions, theirs.actions)
        np.testing.assert_allclose(ours.rewards, theirs.rewards, rtol=1e-12)  # float64 logs
        assert np.array_equal(ours.terminations, theirs.terminations)
        for key in ("categorical", "numerical"):
            assert np.array_equal(ours.observations[key], theirs.observations[key])
        for key, value in theirs.infos.items():
            assert ours.infos[key].dtype == value.dtype, key
            np.testing.assert_allclose(ours.infos[key], value, rtol=1e-12, err_msg=key)
    assert minari.load_dataset("rmtl/val-uniform-v0").total_steps == len(data)


def export_main():
    """``train/export_minari.py``'s ``main`` (``tests/conftest.py`` puts ``train/`` on the path)."""
    import export_minari

    return export_minari.main


def test_export_minari_command(minari_home, tmp_path, capsys) -> None:
    import minari

    from agents.checkpoint import save_model
    from agents.models import build_model
    from rmtl_env.data.__main__ import main as data_main

    main = export_main()

    data = load_dataset("retailrocket-synthetic", scale="tiny")
    model = build_model(
        "esmm", data.field_dims, 1, 2, embed_dim=4, bottom_dims=(8,), tower_dims=(4,)
    )
    checkpoint = save_model(model, tmp_path / "backbone.pt")
    args = ["retailrocket-synthetic", "--scale", "tiny", "--split", "test"]
    author = ["--author", "A. Researcher", "--author-email", "a@example.org"]
    assert main([*args, "--checkpoint", str(checkpoint), "--noise", "0.3", *author]) == 0
    assert "'rmtl/retailrocket-synthetic-test-checkpoint-v0'" in capsys.readouterr().out
    exported = minari.load_dataset("rmtl/retailrocket-synthetic-test-checkpoint-v0")
    assert exported.storage.metadata["author"] == {"A. Researcher"}
    assert exported.storage.metadata["author_email"] == {"a@example.org"}
    episode = next(exported.iterate_episodes())
    assert ((episode.actions > 0) & (episode.actions < 1)).all()  # noisy predictions
    assert main([*args, "--checkpoint", str(checkpoint)]) == 2  # the id exists: never overwritten
    assert "already exists" in capsys.readouterr().err
    with pytest.raises(SystemExit) as usage:
        main([*args, "--noise", "0.3"])
    assert usage.value.code == 2
    assert "--noise must be >= 0 and needs --checkpoint" in capsys.readouterr().err
    assert data_main(["export-minari", *args]) == 2  # the data layer's old command points here
    assert "moved to `python train/export_minari.py`" in capsys.readouterr().err


D3RLPY_CHECK = """
import numpy as np
from d3rlpy.dataset import BasicTransitionPicker
from rmtl_env.offline import d3rlpy_arrays

arrays = d3rlpy_arrays(transitions)
picker, row = BasicTransitionPicker(), 0
assert len(dataset.episodes) == train.num_sessions
for episode in dataset.episodes:
    for index in range(episode.transition_count):
        t = picker(episode, index)
        assert np.array_equal(t.observation, arrays["observations"][row])
        assert np.array_equal(t.action, transitions.action[row])
        assert np.isclose(t.reward[0], transitions.rewards[row].sum(), rtol=1e-6)
        assert bool(t.terminal) == bool(transitions.terminated[row])
        if not t.terminal:
            nxt = np.concatenate([transitions.next_categorical[row], transitions.next_numerical[row]])
            assert np.array_equal(t.next_observation, nxt.astype(np.float32))
        row += 1
assert row == len(transitions) and td3bc.grad_step == 100
print("d3rlpy ok", row)
"""


def test_d3rlpy_example_and_converter(readme_source, tmp_path) -> None:
    """d3rlpy pins gymnasium==1.0.0: in its own virtual environment (``RMTL_D3RLPY_PYTHON``)."""
    replacements = {
        'load_dataset("retailrocket-synthetic")': 'load_dataset("retailrocket-synthetic", scale="tiny")',
        "n_steps=10_000, n_steps_per_epoch=1_000": "n_steps=100, n_steps_per_epoch=100",
    }
    script = readme_source("### d3rlpy", replacements) + textwrap.dedent(D3RLPY_CHECK)
    try:
        import d3rlpy  # noqa: F401

        python = sys.executable
    except ImportError:
        python = os.environ.get("RMTL_D3RLPY_PYTHON")
        if not python:
            pytest.skip(
                "d3rlpy is not installed here (it pins gymnasium==1.0.0): set RMTL_D3RLPY_PYTHON "
                "to the python of a virtual environment with d3rlpy and this package"
            )
    result = subprocess.run(
        [python, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "d3rlpy ok" in result.stdout


def test_d3rlpy_arrays_are_the_transitions() -> None:
    """Without d3rlpy: the converter's arrays are ``build_transitions``' rows."""
    from rmtl_env.offline import behaviour_actions, d3rlpy_arrays

    data = load_dataset("retailrocket-synthetic", scale="tiny").split("val")
    replay = build_transitions(data, actions=behaviour_actions(data, "labels"))
    arrays = d3rlpy_arrays(replay, reward_weights=[1.0, 2.0])
    assert arrays["observations"].dtype == np.float32
    assert np.array_equal(arrays["observations"][:, :7], replay.categorical.astype(np.float32))
    np.testing.assert_allclose(arrays["rewards"][:, 0], replay.rewards @ [1.0, 2.0], rtol=1e-6)
    assert arrays["terminals"].sum() == data.num_sessions and not arrays["timeouts"].any()


def test_torchrl_example(run_readme) -> None:
    pytest.importorskip("torchrl", reason="TorchRL is in the clients extra")
    ns = run_readme("### TorchRL", TINY)
    rollout = ns["rollout"]
    task = rollout["next", "task_rewards"]
    assert task.shape == (len(rollout), 2)
    assert rollout["next", "done"][-1].item()  # one session, to its end
    np.testing.assert_allclose(rollout["next", "reward"][:, 0], task.sum(-1), rtol=1e-5)


def test_tianshou_example(run_readme) -> None:
    pytest.importorskip("tianshou", reason="Tianshou is in the clients extra")
    replacements = {
        **TINY,
        "max_epochs=5": "max_epochs=1",
        "epoch_num_steps=4_000": "epoch_num_steps=200",
        "test_step_num_episodes=100": "test_step_num_episodes=5",
        "batch_size=256": "batch_size=32",
    }
    ns = run_readme("### Tianshou", replacements)
    assert ns["obs_dim"] == 8 and ns["act_dim"] == 2
    assert ns["result"].best_reward <= 0.0  # negative BCE


def test_mo_gymnasium_example(run_readme) -> None:
    pytest.importorskip("mo_gymnasium", reason="MO-Gymnasium is in the clients extra")
    ns = run_readme("### MO-Gymnasium", TINY)
    info = ns["info"]
    assert info["episode"]["r"].shape == (2,)
    assert info["episode"]["l"] == info["session_length"]


def test_cleanrl_shaped_td3_learns_from_logged_transitions_only() -> None:
    """A TD3 loop in CleanRL's shape (td3_continuous_action.py: actor, twin critics, targets,
    policy delay) on the native vector env, with the README's autoreset handling."""
    import gymnasium as gym
    import torch
    import torch.nn.functional as F
    from stable_baselines3.common.buffers import ReplayBuffer
    from torch import nn

    torch.manual_seed(0)
    envs = gym.make_vec(
        "SessionRecEnv-v0", num_envs=8, vectorization_mode="vector_entry_point",
        dataset="retailrocket-synthetic", scale="tiny", observation_mode="flat",
    )  # fmt: skip
    obs_dim, act_dim = envs.single_observation_space.shape[0], envs.single_action_space.shape[0]

    def mlp(inputs: int, out: nn.Module | None = None) -> nn.Sequential:
        layers = [nn.Linear(inputs, 32), nn.ReLU(), nn.Linear(32, 1 if out is None else act_dim)]
        return nn.Sequential(*layers, *([out] if out is not None else []))

    actor, qf1, qf2 = mlp(obs_dim, nn.Sigmoid()), mlp(obs_dim + act_dim), mlp(obs_dim + act_dim)
    targets = [mlp(obs_dim, nn.Sigmoid()), mlp(obs_dim + act_dim), mlp(obs_dim + act_dim)]
    for target, net in zip(targets, (actor, qf1, qf2), strict=True):
        target.load_state_dict(net.state_dict())
    q_optimizer = torch.optim.Adam([*qf1.parameters(), *qf2.parameters()], lr=1e-3)
    actor_optimizer = torch.optim.Adam(actor.parameters(), lr=1e-3)
    initial_actor = [p.detach().clone() for p in actor.parameters()]
    rb = ReplayBuffer(
        10_000, envs.single_observation_space, envs.single_action_space,
        handle_timeout_termination=False,
    )  # fmt: skip
    obs, _ = envs.reset(seed=0)
    autoreset = np.zeros(envs.num_envs, dtype=bool)
    for global_step in range(200):
        with torch.no_grad():
            mean = actor(torch.as_tensor(obs))
        actions = (mean + 0.1 * torch.randn_like(mean)).clamp(0.0, 1.0).numpy()
        next_obs, rewards, terminations, truncations, _ = envs.step(actions)
        for i in np.flatnonzero(~autoreset):
            rb.add(obs[i], next_obs[i], actions[i], rewards[i], terminations[i], [{}])
        obs, autoreset = next_obs, terminations | truncations
        if global_step < 20:
            continue
        data = rb.sample(64)
        with torch.no_grad():
            noise = (torch.randn_like(data.actions) * 0.2).clamp(-0.5, 0.5)
            next_actions = (targets[0](data.next_observations) + noise).clamp(0.0, 1.0)
            next_input = torch.cat([data.next_observations, next_actions], 1)
            next_q = torch.min(targets[1](next_input), targets[2](next_input))
            target_q = data.rewards + (1 - data.dones) * 0.9 * next_q
        q_input = torch.cat([data.observations, data.actions], 1)
        qf_loss = F.mse_loss(qf1(q_input), target_q) + F.mse_loss(qf2(q_input), target_q)
        q_optimizer.zero_grad()
        qf_loss.backward()
        q_optimizer.step()
        if global_step % 2 == 0:
            actor_loss = -qf1(torch.cat([data.observations, actor(data.observations)], 1)).mean()
            actor_optimizer.zero_grad()
            actor_loss.backward()
            actor_optimizer.step()
            for target, net in zip(targets, (actor, qf1, qf2), strict=True):
                for tp, p in zip(target.parameters(), net.parameters(), strict=True):
                    tp.data.copy_(0.005 * p.data + 0.995 * tp.data)
    stored = np.concatenate([rb.observations[: rb.pos, 0], rb.next_observations[: rb.pos, 0]], 1)
    genuine = genuine_pairs()
    assert all(row.tobytes() in genuine for row in stored)
    assert np.isfinite(qf_loss.item())
    assert any(
        not torch.equal(a, b) for a, b in zip(initial_actor, actor.parameters(), strict=True)
    )


def test_export_minari_without_minari_names_the_extra(monkeypatch, capsys) -> None:
    import sys

    main = export_main()
    monkeypatch.setitem(sys.modules, "minari", None)  # import minari raises ImportError
    assert main(["retailrocket-synthetic", "--scale", "tiny"]) == 2
    assert 'export_minari.py needs Minari: pip install -e ".[minari]"' in capsys.readouterr().err


def test_minari_metadata_evaluates_on_the_test_split_with_our_score(minari_home) -> None:
    import minari

    import rmtl_env
    from rmtl_env.evaluation import constant_policy
    from rmtl_env.offline import export_minari

    exported = export_minari("rmtl/meta-uniform-v0", "uniform", max_sessions=10,
                             dataset="retailrocket-synthetic", scale="tiny", split="train",
                             algorithm_name="uniform", author_email="me@example.org")  # fmt: skip
    metadata = exported.storage.metadata
    assert metadata["algorithm_name"] == "uniform" and metadata["description"]
    assert metadata["code_permalink"].startswith("rmtl-env ") and metadata["author"]
    with pytest.warns(UserWarning) as caught:  # the defaults leave Minari only the email to ask
        default = export_minari("rmtl/meta-default-v0", "labels", max_sessions=3,
                                dataset="retailrocket-synthetic", scale="tiny")  # fmt: skip
    assert minari_missing(caught) == ["`author_email`"]
    assert default.storage.metadata["algorithm_name"] == "labels"
    called = export_minari("rmtl/meta-policy-v0", constant_policy([0.1, 0.05]), max_sessions=3,
                           dataset="retailrocket-synthetic", scale="tiny")  # fmt: skip
    assert called.storage.metadata["algorithm_name"] == "constant_policy.<locals>.act"
    assert exported.recover_environment(eval_env=True).unwrapped.data.name == "test"
    score = rmtl_env.evaluate_policy(constant_policy([0.1, 0.05]), "retailrocket-synthetic",
                                     scale="tiny")  # fmt: skip
    normalised = minari.get_normalized_score(exported, np.array([score.mean_return]))
    assert 100 * float(normalised[0]) == pytest.approx(score.score)


def test_tianshou_on_the_dict_observation_is_pointed_to_flat_mode() -> None:
    pytest.importorskip("tianshou", reason="Tianshou is in the clients extra")
    from tianshou.highlevel.env import EnvFactoryRegistered, VectorEnvType

    factory = EnvFactoryRegistered(task="SessionRecEnv-v0", venv_type=VectorEnvType.DUMMY,
                                   render_mode_watch="ansi", dataset="retailrocket-synthetic",
                                   scale="tiny")  # fmt: skip
    with pytest.raises(AttributeError, match="SessionRecEnvFlat-v0"):
        factory.create_envs(num_training_envs=2, num_test_envs=1).get_observation_shape()
