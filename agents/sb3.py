"""stable-baselines3 plug-ins for ``SessionRecEnv``: an id-embedding features extractor and a
DDPG/TD3 policy whose actor is a multi-task backbone (D-PLE with ``backbone="ple"``).

Only SB3's extension points are used (``features_extractor_class``, ``policy_kwargs``, a policy
class passed to the algorithm), so the algorithms themselves are stock ``DDPG``, ``TD3``, ``SAC``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from gymnasium import spaces
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from stable_baselines3.td3.policies import TD3Policy

from agents.checkpoint import load_model
from agents.models import MultiTaskModel, build_model
from agents.models.layers import FeatureEmbedding


def session_space_dims(observation_space: spaces.Space) -> tuple[list[int], int]:
    """``(field_dims, num_numerical)`` of a ``SessionRecEnv`` observation space."""
    if not isinstance(observation_space, spaces.Dict) or set(observation_space.spaces) != {
        "categorical",
        "numerical",
    }:
        raise ValueError(
            "expected SessionRecEnv's Dict(categorical, numerical) observation space, got "
            f"{observation_space}"
        )
    field_dims = (np.asarray(observation_space["categorical"].high, dtype=np.int64) + 1).tolist()
    return field_dims, int(observation_space["numerical"].shape[0])


class CategoricalEmbeddingExtractor(BaseFeaturesExtractor):
    """Embeds the categorical ids (one table with per-field offsets) and projects each numerical
    feature, giving ``(F + N) * embed_dim`` features.

    Without it SB3 would feed the ids to an MLP as raw floats (``Box``) or one-hot them
    (``MultiDiscrete``); ids are labels, not magnitudes.

    :param observation_space: the env's ``Dict(categorical, numerical)`` space.
    :param embed_dim: embedding size per field.
    """

    def __init__(self, observation_space: spaces.Dict, embed_dim: int = 16) -> None:
        field_dims, num_numerical = session_space_dims(observation_space)
        embedding = FeatureEmbedding(field_dims, num_numerical, embed_dim)
        super().__init__(observation_space, features_dim=embedding.output_dim)
        self.embedding = embedding

    def forward(self, observations: dict[str, torch.Tensor]) -> torch.Tensor:
        # SB3 preprocessing turns Box observations into floats; ids are exact in float32 < 2**24.
        return self.embedding(observations["categorical"].long(), observations["numerical"].float())


class BackboneActor(BasePolicy):
    """A DDPG/TD3 actor that is a multi-task backbone.

    The backbone outputs probabilities ``p`` in ``[0, 1]``; SB3 actors emit ``[-1, 1]`` and SB3
    rescales them to the action box, so the actor returns ``2 p - 1``, which SB3 maps back to
    exactly ``p`` on ``SessionRecEnv``'s ``[0, 1]^K`` box.
    """

    def __init__(
        self, observation_space: spaces.Dict, action_space: spaces.Box, backbone: MultiTaskModel
    ) -> None:
        super().__init__(observation_space, action_space, squash_output=True)
        if action_space.shape != (backbone.num_tasks,):
            raise ValueError(
                f"the action space has shape {action_space.shape}, the backbone "
                f"{backbone.num_tasks} tasks"
            )
        self.backbone = backbone

    def probabilities(self, obs: dict[str, torch.Tensor]) -> torch.Tensor:
        """``[B, K]`` task probabilities (the backbone's output)."""
        return self.backbone(obs["categorical"].long(), obs["numerical"].float())

    def forward(self, obs: dict[str, torch.Tensor]) -> torch.Tensor:
        return 2.0 * self.probabilities(obs) - 1.0  # [B, K] in [-1, 1]

    def _predict(
        self, observation: dict[str, torch.Tensor], deterministic: bool = False
    ) -> torch.Tensor:
        return self(observation)

    def _get_constructor_parameters(self) -> dict[str, Any]:
        return {**super()._get_constructor_parameters(), "backbone": self.backbone}


class BackboneTD3Policy(TD3Policy):
    """SB3's DDPG/TD3 policy with a backbone actor and id-embedding critics.

    Pass it as the policy of stock ``DDPG`` or ``TD3``:
    ``DDPG(BackboneTD3Policy, env, policy_kwargs={"backbone": "ple"})``.

    :param backbone: model-zoo name of the actor (``ple`` for D-PLE).
    :param backbone_kwargs: ``ModelConfig`` overrides for a fresh backbone.
    :param backbone_checkpoint: start the actor (and its target) from this pretrained backbone.
    :param features_extractor_kwargs: for the critics' ``CategoricalEmbeddingExtractor``.
    """

    def __init__(
        self,
        observation_space: spaces.Dict,
        action_space: spaces.Box,
        lr_schedule,
        backbone: str = "ple",
        backbone_kwargs: dict | None = None,
        backbone_checkpoint: str | Path | None = None,
        **kwargs,
    ) -> None:
        self.backbone_name = backbone
        self.backbone_kwargs = dict(backbone_kwargs or {})
        self.backbone_checkpoint = backbone_checkpoint
        kwargs.setdefault("features_extractor_class", CategoricalEmbeddingExtractor)
        super().__init__(observation_space, action_space, lr_schedule, **kwargs)

    def make_actor(self, features_extractor: BaseFeaturesExtractor | None = None) -> BackboneActor:
        if self.backbone_checkpoint is not None:
            backbone = load_model(self.backbone_checkpoint)
        else:
            field_dims, num_numerical = session_space_dims(self.observation_space)
            backbone = build_model(
                self.backbone_name,
                field_dims,
                num_numerical,
                int(self.action_space.shape[0]),
                **self.backbone_kwargs,
            )
        return BackboneActor(self.observation_space, self.action_space, backbone).to(self.device)

    def _get_constructor_parameters(self) -> dict[str, Any]:
        return {
            **super()._get_constructor_parameters(),
            "backbone": self.backbone_name,
            "backbone_kwargs": self.backbone_kwargs,
            "backbone_checkpoint": self.backbone_checkpoint,
        }
