"""D-PLE on the paper's schedule: the critic converges with the actor frozen, then the actor moves."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch

import rmtl_env  # noqa: F401 -- registers SessionRecEnv-v0
from agents.checkpoint import save_model
from agents.dple import (
    DPLEConfig,
    actor_backbone,
    load_logged_transitions,
    make_dple,
    mean_q_at_actor,
    train_dple,
)
from agents.models import build_model
from agents.replay import build_replay
from agents.sb3 import ActorAdam, FrozenActions
from agents.trainer import predict

SMALL = {"embed_dim": 8, "bottom_dims": (16, 8), "tower_dims": (8,), "num_experts": 4}
FAST = {"critic_batch_size": 256, "actor_batch_size": 32, "critic_embed_dim": 4,
        "critic_net_arch": (32,), "stop_rel_tol": 0.05}  # fmt: skip


@pytest.fixture(scope="module")
def env():
    return gym.make("SessionRecEnv-v0", dataset="retailrocket-synthetic", scale="tiny")


@pytest.fixture(scope="module")
def checkpoint(env, tmp_path_factory):
    data = env.unwrapped.data
    torch.manual_seed(0)
    field_dims = (env.observation_space["categorical"].high + 1).tolist()
    backbone = build_model("ple", field_dims, data.numerical.shape[1], 2, **SMALL)
    return save_model(backbone, tmp_path_factory.mktemp("dple") / "ple.pt")


def actor_weights(model) -> list[torch.Tensor]:
    return [p.detach().clone() for p in model.policy.actor.backbone.parameters()]


def run(env, checkpoint, **overrides):
    config = DPLEConfig(**{**FAST, **overrides})
    data = env.unwrapped.data
    model = make_dple(env, config, len(data) + config.actor_steps, backbone_checkpoint=checkpoint)
    return model, config, data


def test_frozen_phase_leaves_the_actor_bit_identical_and_trains_the_critic(env, checkpoint):
    model, config, data = run(env, checkpoint, actor_steps=0)
    actor_before = actor_weights(model)
    critic_before = [p.detach().clone() for p in model.policy.critic.parameters()]
    result = train_dple(model, data, config, progress=False)
    assert result.critic_epochs >= config.stop_patience + 1 and result.actor_updates == 0
    for a, b in zip(actor_before, actor_weights(model), strict=True):
        assert torch.equal(a, b)
    assert any(
        not torch.equal(a, b)
        for a, b in zip(critic_before, model.policy.critic.parameters(), strict=True)
    )
    # The target actor is exactly the actor again after the phase.
    for a, b in zip(
        model.policy.actor.parameters(), model.policy.actor_target.parameters(), strict=True
    ):
        assert torch.equal(a, b)
    losses = [h["critic_loss"] for h in result.critic_history]
    assert result.critic_converged and losses[-1] < losses[0]


def test_actor_phase_moves_the_actor_at_its_own_rate(env, checkpoint):
    model, config, data = run(env, checkpoint, actor_steps=200, critic_max_epochs=3)
    before = actor_weights(model)
    start = predict(actor_backbone(model), data)
    result = train_dple(model, data, config, progress=False)
    # 3 critic epochs of 8 steps (updates 1-24), then 200 env steps / train_freq 8 = 25 updates
    # (25-49); SB3 steps the actor on every even update number: 26, 28, ..., 48.
    assert result.actor_updates == 12
    assert any(not torch.equal(a, b) for a, b in zip(before, actor_weights(model), strict=True))
    moved = np.abs(predict(actor_backbone(model), data) - start).mean()
    assert 0 < moved < 0.05
    assert np.isfinite(result.mean_q_before) and np.isfinite(result.mean_q_after)
    assert result.mean_q_before == pytest.approx(mean_q_at_actor(model, data), abs=1.0)


def test_frozen_actions_answer_exactly_what_the_network_would(env, checkpoint):
    model, _, data = run(env, checkpoint)
    actor = model.policy.actor
    expected = torch.as_tensor(predict(actor.backbone, data))
    table = FrozenActions(data.categorical[:50], data.numerical[:50], expected[:50].numpy())
    actor.freeze(table)
    actor.train()  # SB3 trains in train mode; a frozen actor still answers like eval mode
    obs = {
        "categorical": torch.as_tensor(np.array(data.categorical[:80])).float(),
        "numerical": torch.as_tensor(np.array(data.numerical[:80])),
    }
    got = actor.probabilities(obs)  # 50 looked up, 30 computed
    torch.testing.assert_close(got, expected[:80], rtol=0, atol=1e-7)
    assert not got.requires_grad and actor.frozen
    actor.unfreeze()
    assert not actor.frozen and actor.frozen_actions is None


def test_logged_transitions_are_loaded_as_sb3_stores_them(env, checkpoint):
    model, _, data = run(env, checkpoint)
    replay = build_replay(model.policy.actor.backbone, data, 0.3, seed=0)
    n = load_logged_transitions(model, replay)
    buffer, t = model.replay_buffer, replay.transitions
    assert n == len(data) and buffer.pos == n
    np.testing.assert_array_equal(buffer.observations["categorical"][:n, 0], t.categorical)
    np.testing.assert_array_equal(buffer.next_observations["numerical"][:n, 0], t.next_numerical)
    np.testing.assert_allclose(buffer.actions[:n, 0], 2 * t.action - 1, atol=1e-6)
    np.testing.assert_allclose(buffer.rewards[:n, 0], t.rewards.sum(1), rtol=1e-6)
    np.testing.assert_array_equal(buffer.dones[:n, 0], t.terminated)


def test_actor_adam_steps_at_the_scaled_rate_and_keeps_sb3s_rate():
    torch.manual_seed(0)
    a, b = torch.nn.Linear(3, 2), torch.nn.Linear(3, 2)
    b.load_state_dict(a.state_dict())
    scaled, plain = (
        ActorAdam(a.parameters(), lr=1e-2, lr_scale=0.1),
        torch.optim.Adam(b.parameters(), lr=1e-3),
    )
    for _ in range(3):
        x = torch.randn(4, 3)
        for net, opt in ((a, scaled), (b, plain)):
            opt.zero_grad()
            net(x).pow(2).sum().backward()
            opt.step()
    for p, q in zip(a.parameters(), b.parameters(), strict=True):
        torch.testing.assert_close(p, q)
    assert scaled.param_groups[0]["lr"] == 1e-2


def test_config_rejects_an_actor_faster_than_its_critic():
    with pytest.raises(ValueError, match="actor_lr"):
        DPLEConfig(actor_lr=1e-2, critic_lr=1e-3)
    with pytest.raises(ValueError, match="policy_delay"):
        DPLEConfig(policy_delay=0)
