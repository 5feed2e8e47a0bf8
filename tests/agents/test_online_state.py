"""An off-policy run saved at a point of its curve and killed continues, in a new agent, to the
same weights, curve and test score, bit for bit, as the run never interrupted."""

from __future__ import annotations

import functools

import pytest
import torch

import agents.rl_reference as rl_reference
from agents.rl_reference import OnlineConfig, train_online
from rmtl_env.data import load_dataset

CONFIG = OnlineConfig(env_steps=192, eval_every=32, n_envs=4, learning_starts=48, batch_size=16,
                      net_arch=(16,))  # fmt: skip


@pytest.fixture(scope="module")
def tiny():
    return load_dataset("retailrocket-synthetic", scale="tiny", seed=0)


class Killed(Exception):
    """Stands for the process being killed right after a save."""


def killed_after(saves: int, monkeypatch) -> None:
    """Make the ``saves``-th save of the training state the run's last act."""
    save, count = rl_reference.save_training_state, [0]

    def save_then_die(*args, **kwargs):
        save(*args, **kwargs)
        count[0] += 1
        if count[0] == saves:
            raise Killed

    monkeypatch.setattr(rl_reference, "save_training_state", save_then_die)


def weights(run) -> list[torch.Tensor]:
    return [p.detach().clone() for p in run.model.policy.parameters()]


@pytest.fixture(scope="module")
def small_ple(tiny, tmp_path_factory):
    """A small PLE backbone checkpoint, the actor TD3-PLE starts from."""
    from agents.checkpoint import save_model
    from agents.models import build_model

    torch.manual_seed(0)
    ple = build_model("ple", tiny.field_dims, len(tiny.numerical_fields), len(tiny.tasks),
                      embed_dim=4, bottom_dims=(16, 8), tower_dims=(8,), num_experts=4)  # fmt: skip
    return save_model(ple, tmp_path_factory.mktemp("ple") / "ple.pt")


@pytest.mark.parametrize("method", ["td3", "sac", "td3-flat", "td3-ple"])
def test_a_run_resumed_from_its_saved_state_ends_bit_identical(method, tiny, small_ple, tmp_path,
                                                               monkeypatch) -> None:  # fmt: skip
    backbone = small_ple if method == "td3-ple" else None
    run = functools.partial(train_online, method, tiny, CONFIG, 3, backbone, progress=False)
    whole = run()
    state = tmp_path / "state.pt"
    saving = run(state_path=state)
    assert all(map(torch.equal, weights(saving), weights(whole)))  # saving changes nothing
    state.unlink()

    with monkeypatch.context() as patch:
        killed_after(
            4, patch
        )  # at env step 96 (saves at 0, 32, 64, 96), past the random warm-up: updates have begun
        with pytest.raises(Killed):
            run(state_path=state)
    torch.manual_seed(99)  # the new process's generators start elsewhere
    resumed = run(state_path=state)

    assert resumed.resumed_at == [96] and resumed.model.num_timesteps == CONFIG.env_steps
    assert all(map(torch.equal, weights(resumed), weights(whole)))
    drop = ("seconds",)
    assert [{k: v for k, v in p.items() if k not in drop} for p in resumed.curve] == [
        {k: v for k, v in p.items() if k not in drop} for p in whole.curve
    ]
    assert resumed.test == whole.test
    assert resumed.model._n_updates == whole.model._n_updates


def test_a_state_is_refused_by_another_algorithm_and_ppo_is_not_saved(tiny, tmp_path,
                                                                      monkeypatch) -> None:  # fmt: skip
    state = tmp_path / "state.pt"
    with monkeypatch.context() as patch:
        killed_after(1, patch)
        with pytest.raises(Killed):
            train_online("td3", tiny, CONFIG, seed=0, progress=False, state_path=state)
    with pytest.raises(ValueError, match=r"state.pt holds a TD3 run on 4 envs, not this SAC"):
        train_online("sac", tiny, CONFIG, seed=0, progress=False, state_path=state)
    with pytest.raises(ValueError, match="PPO's run cannot be resumed"):
        train_online("ppo", tiny, CONFIG, seed=0, progress=False, state_path=state)
    state.write_text("not a checkpoint")
    with pytest.raises(ValueError, match="is not a readable training-state checkpoint"):
        train_online("td3", tiny, CONFIG, seed=0, progress=False, state_path=state)


def test_env_state_round_trips_and_is_checked(tiny) -> None:
    import gymnasium as gym

    env = gym.make("SessionRecEnv-v0", dataset=tiny).unwrapped
    env.reset(seed=1)
    for _ in range(3):
        env.step(env.action_space.sample() * 0 + 0.5)
        if env._row >= env._end:
            env.reset()
    saved = env.get_state()
    after = [env.reset()[1]["session_id"] for _ in range(5)]
    other = gym.make("SessionRecEnv-v0", dataset=tiny).unwrapped
    other.set_state(saved)
    assert [other.reset()[1]["session_id"] for _ in range(5)] == after
    test_env = gym.make("SessionRecEnv-v0", dataset=tiny, split="test").unwrapped
    with pytest.raises(ValueError, match="the state is of split 'train', this env plays 'test'"):
        test_env.set_state(saved)
    with pytest.raises(ValueError, match="expected the dict get_state returns"):
        other.set_state({"cursor": [0]})
