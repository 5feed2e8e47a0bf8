"""RMTL's math (TD target, soft update, loss weights) and the critic stage end to end."""

from __future__ import annotations

from dataclasses import FrozenInstanceError, replace

import numpy as np
import pytest
import torch

from agents.critic import CriticConfig, MultiCritic
from agents.models import build_model
from agents.replay import build_replay
from agents.rmtl import (
    PRESETS,
    ConvergenceStopper,
    RMTLAgent,
    RMTLConfig,
    loss_weights,
    soft_update,
    td_target,
)
from agents.trainer import predict
from rmtl_env.data.dataset import SplitData
from rmtl_env.metrics import binary_cross_entropy


def discounted_returns(rewards: np.ndarray, terminated: np.ndarray, gamma: float) -> np.ndarray:
    """The exact per-task discounted return of every transition, rows in session order: the
    oracle the critics are tested against."""
    returns = np.array(rewards, dtype=np.float64)
    for i in range(len(returns) - 2, -1, -1):
        if not terminated[i]:
            returns[i] += gamma * returns[i + 1]
    return returns


def hand_made_split(num_sessions: int = 40, seed: int = 0) -> SplitData:
    """Sessions of 1-5 rows; field 0 is a unique row id so a critic can tell every state apart."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(1, 6, num_sessions)
    n = int(lengths.sum())
    starts = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    categorical = np.stack([np.arange(n), rng.integers(0, 4, n)], axis=1).astype(np.int64)
    click = (rng.random(n) < 0.4).astype(np.float32)
    labels = np.stack([click, click * (rng.random(n) < 0.5)], axis=1).astype(np.float32)
    return SplitData(
        name="train",
        session_id=np.repeat(np.arange(num_sessions), lengths).astype(np.int64),
        timestamp=np.arange(n, dtype=np.int64),
        categorical=categorical,
        numerical=rng.normal(size=(n, 1)).astype(np.float32),
        labels=labels,
        true_probs=None,
        session_starts=starts,
        tasks=("ctr", "ctcvr"),
    )


def test_td_target_on_hand_made_transitions() -> None:
    rewards = torch.tensor([[-0.1, -0.2], [-0.3, -0.4], [-0.5, -0.6]])
    terminated = torch.tensor([False, False, True])
    next_q = torch.tensor([[-1.0, -2.0], [-3.0, -4.0], [-5.0, -6.0]])
    y = td_target(rewards, terminated, next_q, gamma=0.9)
    expected = torch.tensor([[-0.1 - 0.9, -0.2 - 1.8], [-0.3 - 2.7, -0.4 - 3.6], [-0.5, -0.6]])
    torch.testing.assert_close(y, expected)


def test_soft_update_arithmetic() -> None:
    source, target = torch.nn.Linear(3, 2), torch.nn.Linear(3, 2)
    before = {k: v.clone() for k, v in target.state_dict().items()}
    soft_update(target, source, tau=0.2)
    for key, value in target.state_dict().items():
        torch.testing.assert_close(value, 0.2 * source.state_dict()[key] + 0.8 * before[key])
    soft_update(target, source, tau=1.0)
    for key, value in target.state_dict().items():
        torch.testing.assert_close(value, source.state_dict()[key])


def test_loss_weight_formula_and_ablation_variants() -> None:
    q = torch.tensor([[-2.0, -0.5], [-1.0, 0.0]])
    y = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    torch.testing.assert_close(loss_weights(q, y, 0.7, "rmtl"), 1 - 0.7 * q)
    torch.testing.assert_close(
        loss_weights(q, y, 0.7, "wl"), torch.tensor([[2.4, 1.0], [1.0, 1.0]])
    )
    torch.testing.assert_close(loss_weights(q, y, 0.7, "nlc"), -q)
    torch.testing.assert_close(loss_weights(q, y, 0.7, "cw"), torch.full((2, 2), 0.5))
    normalised = loss_weights(q, y, 0.7, "rmtl", normalize=True)
    torch.testing.assert_close(normalised.mean(0), torch.ones(2))
    assert torch.all(loss_weights(q, y, 0.7) >= 1.0)  # Q <= 0 up-weights, never down-weights
    with pytest.raises(ValueError, match="variant"):
        loss_weights(q, y, 0.7, "bogus")


def test_discounted_returns_restart_at_each_session() -> None:
    rewards = np.array([[-1.0], [-2.0], [-3.0], [-4.0]])
    terminated = np.array([False, True, False, True])
    returns = discounted_returns(rewards, terminated, gamma=0.5)
    np.testing.assert_allclose(returns[:, 0], [-1 - 0.5 * 2, -2, -3 - 0.5 * 4, -4])


def test_stopper_needs_patience_consecutive_calm_epochs() -> None:
    stopper = ConvergenceStopper(rel_tol=0.01, patience=2)
    assert [stopper.update(x) for x in [10.0, 5.0, 4.99, 3.0, 2.999, 2.998]] == [
        False,
        False,
        False,
        False,
        False,
        True,
    ]


def test_presets_and_config_errors() -> None:
    paper, official = PRESETS["paper"], PRESETS["official"]
    assert (paper.gamma, paper.lam, paper.tau, paper.critic.independent) == (0.95, 0.7, 0.2, False)
    assert (official.gamma, official.critic_epochs, official.critic.independent) == (0.9, 96, True)
    assert replace(paper, lam=0.3).lam == 0.3 and paper.lam == 0.7
    with pytest.raises(FrozenInstanceError):
        paper.lam = 0.3  # presets are shared: they cannot be changed in place
    with pytest.raises(ValueError, match="tau"):
        replace(official, tau=0.0)  # replace() runs the same checks
    with pytest.raises(ValueError, match="gamma"):
        RMTLConfig(gamma=1.0)
    with pytest.raises(ValueError, match="weight_variant"):
        RMTLConfig(weight_variant="x")


def test_replay_rewards_the_stored_action_and_caches_next_actions() -> None:
    data = hand_made_split()
    torch.manual_seed(0)
    actor = build_model("esmm", [len(data), 4], 1, 2, embed_dim=4, bottom_dims=(8,), tower_dims=())
    replay = build_replay(actor, data, exploration_noise=0.2, seed=1)
    action = replay.tensors.action.numpy()
    assert action.min() >= 0 and action.max() <= 1
    np.testing.assert_allclose(
        replay.tensors.rewards.numpy(),
        -binary_cross_entropy(data.labels, action),
        rtol=1e-5,
        atol=1e-6,
    )
    clean = predict(actor, data)
    assert not np.allclose(action, clean)  # the noise is there ...
    np.testing.assert_allclose(replay.next_action.numpy(), clean[replay.transitions.next_index])


@pytest.mark.parametrize("independent", [False, True])
def test_critic_learns_the_exact_discounted_return(independent: bool) -> None:
    """With a fixed actor and deterministic sessions, Q_k(s_t, a_t) is the discounted return."""
    data = hand_made_split()
    torch.manual_seed(0)
    actor = build_model("shared_bottom", [len(data), 4], 1, 2, embed_dim=4, bottom_dims=(8,))
    critic_config = CriticConfig(
        embed_dim=16, bottom_dims=(64, 32), head_dims=(32,), dropout=0.0, independent=independent
    )
    config = RMTLConfig(
        gamma=0.9,
        critic_batch_size=32,
        critic_epochs=250,
        exploration_noise=0.0,
        target_update_interval=1,
        tau=0.2,
        critic_lr=3e-3,
        critic=critic_config,
    )
    agent = RMTLAgent(actor, config)
    replay = build_replay(actor, data, exploration_noise=0.0)
    result = agent.train_critics(replay, progress=False)
    assert result.epochs == 250 and not result.converged
    returns = discounted_returns(replay.tensors.rewards.numpy(), replay.transitions.terminated, 0.9)
    q = agent.q_values(data, replay.tensors.action.numpy())
    assert np.all(q <= 0)
    for k in range(2):
        residual = ((q[:, k] - returns[:, k]) ** 2).sum()
        r2 = 1 - residual / ((returns[:, k] - returns[:, k].mean()) ** 2).sum()
        assert r2 >= 0.9, f"task {k}: R^2 {r2:.3f}"


def test_stopper_ends_critic_training_and_polish_weights_use_eval_mode() -> None:
    data = hand_made_split(seed=2)
    torch.manual_seed(0)
    actor = build_model("mmoe", [len(data), 4], 1, 2, embed_dim=4, bottom_dims=(8,), num_experts=2)
    config = RMTLConfig(
        critic_batch_size=64,
        critic_max_epochs=300,
        stop_rel_tol=0.05,
        critic=CriticConfig(embed_dim=8, bottom_dims=(16,), head_dims=(8,)),
    )
    agent = RMTLAgent(actor, config)
    result = agent.train_critics(build_replay(actor, data), progress=False)
    assert result.converged and result.epochs < 300
    weights = agent.polish_weights()
    categorical = torch.as_tensor(data.categorical[:50])
    numerical = torch.as_tensor(data.numerical[:50])
    probs = actor(categorical, numerical).detach()
    labels = torch.as_tensor(data.labels[:50])
    first, second = (
        weights(categorical, numerical, probs, labels),
        weights(categorical, numerical, probs, labels),
    )
    torch.testing.assert_close(first, second, rtol=0, atol=0)  # no dropout noise in the weights
    assert torch.all(first >= 1.0)


def test_actor_update_changes_the_actor_only_when_asked() -> None:
    data = hand_made_split(seed=3)
    torch.manual_seed(0)
    actor = build_model("ple", [len(data), 4], 1, 2, embed_dim=4, bottom_dims=(8,), num_experts=2)
    before = [p.clone() for p in actor.parameters()]
    small = CriticConfig(embed_dim=8, bottom_dims=(16,), head_dims=(8,))
    RMTLAgent(actor, RMTLConfig(critic_epochs=2, critic=small)).train_critics(
        build_replay(actor, data), progress=False
    )
    assert all(torch.equal(a, b) for a, b in zip(before, actor.parameters(), strict=True))
    RMTLAgent(actor, RMTLConfig(critic_epochs=2, actor_update=True, critic=small)).train_critics(
        build_replay(actor, data), progress=False
    )
    assert not all(torch.equal(a, b) for a, b in zip(before, actor.parameters(), strict=True))


def test_bf16_critic_stage_and_polish_weights() -> None:
    """At bf16 the critic stage's networks run in bfloat16 (the DDPG actor step too) with the
    agent's dropout masks, the TD losses and the polish weights stay float32, and the critics
    learn what the fp32 ones learn, to bf16's rounding."""
    from agents.models.layers import _MASKS, Dropout

    data = hand_made_split(seed=4)
    small = CriticConfig(embed_dim=8, bottom_dims=(16,), head_dims=(8,))
    config = RMTLConfig(critic_epochs=20, critic_batch_size=64, actor_update=True, critic=small)
    histories, seen, masks = {}, set(), set()
    for precision in ("fp32", "bf16"):
        torch.manual_seed(0)
        actor = build_model("ple", [len(data), 4], 1, 2, embed_dim=4, bottom_dims=(8,))
        agent = RMTLAgent(actor, config, precision=precision, dropout_masks="int16")
        replay = build_replay(actor, data)
        if precision == "bf16":
            for net in (agent.critic.encoders[0].bottom[0], actor.towers[0][0]):
                net.register_forward_hook(lambda _m, _i, out: seen.add(out.dtype))
            dropout = next(m for m in agent.critic.modules() if isinstance(m, Dropout))
            dropout.register_forward_hook(lambda *_: masks.add(_MASKS.get()))
        result = agent.train_critics(replay, progress=False)
        histories[precision] = np.array([h["td_loss"] for h in result.history])
    assert seen == {torch.bfloat16} and masks == {"int16"}
    assert np.isfinite(histories["bf16"]).all()
    # bf16 rounding (8-bit mantissa) moves the TD losses by about 0.1 % here, not more.
    np.testing.assert_allclose(histories["bf16"], histories["fp32"], rtol=0.02)
    assert not np.array_equal(histories["bf16"], histories["fp32"])
    weights = agent.polish_weights()
    x = (torch.as_tensor(data.categorical[:32]), torch.as_tensor(data.numerical[:32]))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        w = weights(*x, torch.full((32, 2), 0.3), torch.zeros(32, 2))
    assert w.dtype == torch.float32 and torch.all(w >= 1.0)


def test_critic_heads_must_match_the_actor() -> None:
    actor = build_model("esmm", [5, 4], 1, 2, embed_dim=4, bottom_dims=(8,))
    with pytest.raises(ValueError, match="3 heads"):
        RMTLAgent(actor, RMTLConfig(), critic=MultiCritic([5, 4], 1, 3, CriticConfig(embed_dim=4)))


def test_critics_can_share_the_actors_frozen_embedding(tmp_path) -> None:
    """One embedding table: the critics' parameters, optimiser and checkpoint hold none, TD
    training leaves the actor's table bit-identical, and a reloaded critic must be attached."""
    from agents.checkpoint import load_critic, save_critic

    data = hand_made_split()
    torch.manual_seed(0)
    actor = build_model("shared_bottom", [len(data), 4], 1, 2, embed_dim=16, bottom_dims=(8,))
    table = actor.embedding.embedding.weight.detach().clone()
    shared = CriticConfig(embed_dim=16, bottom_dims=(32,), head_dims=(16,), share_embedding=True)
    config = RMTLConfig(critic_batch_size=32, critic_epochs=5, critic=shared)
    agent = RMTLAgent(actor, config)
    own = MultiCritic(actor.field_dims, 1, 2, replace(shared, share_embedding=False))
    embedding_params = sum(p.numel() for p in own.encoders[0].embedding.parameters())
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert count(agent.critic) == count(own) - embedding_params
    agent.train_critics(build_replay(actor, data), progress=False)
    assert torch.equal(actor.embedding.embedding.weight, table)
    assert agent.critic_target.shared is agent.critic.shared  # the target reads the same table
    path = save_critic(agent.critic, tmp_path / "critics.pt")
    reloaded = load_critic(path)
    assert not any("embedding" in key for key in reloaded.state_dict())
    x = (torch.zeros(2, 2, dtype=torch.long), torch.zeros(2, 1), torch.zeros(2, 2))
    with pytest.raises(RuntimeError, match="share the actor's embedding: attach it first"):
        reloaded(*x)
    again = RMTLAgent(actor, config, critic=reloaded)  # attaches the actor's table
    torch.testing.assert_close(again.critic.eval()(*x), agent.critic.eval()(*x))
    small = build_model("shared_bottom", [len(data), 4], 1, 2, embed_dim=4, bottom_dims=(8,))
    with pytest.raises(ValueError, match="embed_dim 16 \\(--critic-embed-dim\\)"):
        RMTLAgent(small, config)
