"""SB3 plug-ins: the id-embedding extractor, the backbone actor (D-PLE) and stock algorithms."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from stable_baselines3 import DDPG, SAC, TD3

import rmtl_env  # noqa: F401 -- registers SessionRecEnv-v0
from agents.checkpoint import save_model
from agents.dple import DPLEConfig, make_dple
from agents.models import build_model
from agents.sb3 import BackboneActor, CategoricalEmbeddingExtractor

SMALL = {"embed_dim": 8, "bottom_dims": (16, 8), "tower_dims": (8,), "num_experts": 4}


@pytest.fixture(scope="module")
def env():
    return gym.make("SessionRecEnv-v0", dataset="retailrocket-synthetic", scale="tiny")


def batch_of(env, n: int = 8) -> dict[str, torch.Tensor]:
    data = env.unwrapped.data
    return {
        "categorical": torch.as_tensor(np.array(data.categorical[:n])),
        "numerical": torch.as_tensor(np.array(data.numerical[:n])),
    }


def test_extractor_embeds_ids_instead_of_one_hot(env) -> None:
    space = env.observation_space
    f, n = space["categorical"].shape[0], space["numerical"].shape[0]
    extractor = CategoricalEmbeddingExtractor(space, embed_dim=4)
    assert extractor.features_dim == (f + n) * 4
    assert extractor.features_dim != int((space["categorical"].high + 1).sum()) + n  # not one-hot
    obs = batch_of(env, 2)
    obs["categorical"] = obs["categorical"].float()  # what SB3 preprocessing hands over
    features = extractor(obs)
    assert features.shape == (2, (f + n) * 4)
    changed = {k: v.clone() for k, v in obs.items()}
    changed["categorical"][0, 0] = (obs["categorical"][0, 0] + 1) % (
        space["categorical"].high[0] + 1
    )
    diff = (extractor(changed)[0] - features[0]).abs().reshape(f + n, 4).sum(1)
    assert diff[0] > 0 and torch.all(diff[1:] == 0)  # only field 0's 4 features move


def test_pretrained_backbone_loads_into_the_sb3_actor_exactly(env, tmp_path) -> None:
    data = env.unwrapped.data
    torch.manual_seed(0)
    backbone = build_model("ple", data_dims(env), data.numerical.shape[1], 2, **SMALL).eval()
    path = save_model(backbone, tmp_path / "ple.pt")
    model = make_dple(
        env, DPLEConfig(actor_batch_size=8), buffer_size=100, backbone_checkpoint=path
    )
    obs = batch_of(env)
    expected = backbone(obs["categorical"], obs["numerical"])
    actor = model.policy.actor.eval()
    torch.testing.assert_close(actor.probabilities(obs), expected, rtol=0, atol=0)
    torch.testing.assert_close(
        model.policy.actor_target.probabilities(obs), expected, rtol=0, atol=0
    )
    single = {k: v[0].numpy() for k, v in obs.items()}
    action, _ = model.predict(single, deterministic=True)  # SB3 rescales [-1, 1] to the box
    np.testing.assert_allclose(action, expected[0].detach().numpy(), atol=1e-6)


def data_dims(env) -> list[int]:
    return (env.observation_space["categorical"].high + 1).tolist()


@pytest.mark.parametrize("algorithm", [DDPG, TD3, SAC])
def test_stock_algorithms_run_with_the_extractor(env, algorithm) -> None:
    policy_kwargs = {
        "features_extractor_class": CategoricalEmbeddingExtractor,
        "features_extractor_kwargs": {"embed_dim": 4},
        "net_arch": [32, 32],
    }
    model = algorithm(
        "MultiInputPolicy",
        env,
        policy_kwargs=policy_kwargs,
        learning_starts=50,
        batch_size=32,
        buffer_size=1000,
        seed=0,
    )
    model.learn(300)
    assert model.num_timesteps == 300
    extractor = model.policy.actor.features_extractor
    assert isinstance(extractor, CategoricalEmbeddingExtractor)
    action, _ = model.predict(env.observation_space.sample(), deterministic=True)
    assert action.shape == (2,) and np.all((action >= 0) & (action <= 1))


def test_backbone_policy_rejects_a_mismatched_action_space(env) -> None:
    bad = gym.spaces.Box(0.0, 1.0, (3,), np.float32)
    with pytest.raises(ValueError, match=r"shape \(3,\), the backbone 2 tasks"):
        BackboneActor(env.observation_space, bad, build_model("ple", data_dims(env), 1, 2, **SMALL))
