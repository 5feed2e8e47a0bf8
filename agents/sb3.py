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
        ids = observations["categorical"]
        if ids.is_floating_point() and not torch.equal(ids, ids.round()):
            # e.g. VecNormalize z-scored them: .long() would train on truncated nonsense.
            raise ValueError(
                "CategoricalEmbeddingExtractor: observation 'categorical' holds non-integer ids "
                f"(e.g. {ids[ids != ids.round()][0].item():g}); do not normalise the ids (with "
                "VecNormalize, pass norm_obs_keys=['numerical'])"
            )
        return self.embedding(ids.long(), observations["numerical"].float())


class FrozenActions:
    """The actions of a frozen actor, looked up by observation instead of recomputed.

    While D-PLE's actor is frozen, SB3 still calls it (and its target) on every minibatch; the
    answers never change, so they are computed once for every training row and then looked up by
    the row's exact feature bytes. Observations not in the table fall back to the network.
    """

    def __init__(self, categorical: np.ndarray, numerical: np.ndarray, actions: np.ndarray) -> None:
        keys = self.keys(categorical, numerical)
        self.index = {key: i for i, key in enumerate(keys)}
        self.actions = torch.as_tensor(np.asarray(actions, dtype=np.float32))

    @staticmethod
    def keys(categorical: np.ndarray, numerical: np.ndarray) -> list[bytes]:
        rows = np.concatenate(
            [
                np.ascontiguousarray(categorical, dtype=np.int64).view(np.uint8),
                np.ascontiguousarray(numerical, dtype=np.float32).view(np.uint8),
            ],
            axis=1,
        )
        return [row.tobytes() for row in rows]

    def lookup(self, categorical: torch.Tensor, numerical: torch.Tensor) -> np.ndarray:
        """Table rows of each observation (-1 where absent)."""
        keys = self.keys(categorical.cpu().numpy(), numerical.cpu().numpy())
        return np.array([self.index.get(k, -1) for k in keys], dtype=np.int64)


class ActorAdam(torch.optim.Adam):
    """Adam that steps at ``lr_scale`` times the learning rate SB3 sets.

    SB3 gives the actor and the critic one learning-rate schedule (``_update_learning_rate`` sets
    both optimizers before each ``train``); this lets the actor learn more slowly than the critic.
    """

    def __init__(self, params, lr: float = 1e-3, lr_scale: float = 1.0, **kwargs) -> None:
        super().__init__(params, lr=lr, **kwargs)
        self.lr_scale = float(lr_scale)

    @torch.no_grad()
    def step(self, closure=None):
        base = [group["lr"] for group in self.param_groups]
        for group in self.param_groups:
            group["lr"] = group["lr"] * self.lr_scale
        try:
            return super().step(closure)
        finally:
            for group, lr in zip(self.param_groups, base, strict=True):
                group["lr"] = lr  # restored exactly, not divided back


class BackboneActor(BasePolicy):
    """A DDPG/TD3 actor that is a multi-task backbone.

    The backbone outputs probabilities ``p`` in ``[0, 1]``; SB3 actors emit ``[-1, 1]`` and SB3
    rescales them to the action box, so the actor returns ``2 p - 1``, which SB3 maps back to
    exactly ``p`` on ``SessionRecEnv``'s ``[0, 1]^K`` box.

    :meth:`freeze` stops its weights from changing (no gradient reaches them) and, given a
    :class:`FrozenActions` table, answers from it.
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
        self.frozen_actions: FrozenActions | None = None

    @property
    def frozen(self) -> bool:
        return not any(p.requires_grad for p in self.backbone.parameters())

    def freeze(self, table: FrozenActions | None = None) -> None:
        """Keep the weights fixed (SB3's optimizer then skips them); answer from ``table``."""
        self.backbone.requires_grad_(False)
        self.frozen_actions = table

    def unfreeze(self) -> None:
        self.backbone.requires_grad_(True)
        self.frozen_actions = None

    def _frozen_probabilities(self, obs: dict[str, torch.Tensor]) -> torch.Tensor:
        categorical, numerical = obs["categorical"].long(), obs["numerical"].float()
        rows = self.frozen_actions.lookup(categorical, numerical)
        out = torch.empty(len(rows), self.backbone.num_tasks, device=categorical.device)
        hit = rows >= 0
        if hit.any():
            out[torch.as_tensor(hit)] = self.frozen_actions.actions[rows[hit]].to(out.device)
        if not hit.all():
            miss = torch.as_tensor(~hit)
            was_training = self.backbone.training
            self.backbone.eval()  # the table holds eval-mode answers; misses match them
            out[miss] = self.backbone(categorical[miss], numerical[miss])
            self.backbone.train(was_training)
        return out

    def probabilities(self, obs: dict[str, torch.Tensor]) -> torch.Tensor:
        """``[B, K]`` task probabilities (the backbone's output)."""
        if self.frozen_actions is not None:
            with torch.no_grad():
                return self._frozen_probabilities(obs)
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
    :param actor_lr_scale: the actor's learning rate as a multiple of the algorithm's (which the
        critic uses), through :class:`ActorAdam`.
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
        actor_lr_scale: float = 1.0,
        **kwargs,
    ) -> None:
        self.backbone_name = backbone
        self.backbone_kwargs = dict(backbone_kwargs or {})
        self.backbone_checkpoint = backbone_checkpoint
        self.actor_lr_scale = float(actor_lr_scale)
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

    def _build(self, lr_schedule) -> None:
        super()._build(lr_schedule)
        self.actor.optimizer = ActorAdam(
            self.actor.parameters(),
            lr=lr_schedule(1),
            lr_scale=self.actor_lr_scale,
            **self.optimizer_kwargs,
        )

    def _get_constructor_parameters(self) -> dict[str, Any]:
        return {
            **super()._get_constructor_parameters(),
            "backbone": self.backbone_name,
            "backbone_kwargs": self.backbone_kwargs,
            "backbone_checkpoint": self.backbone_checkpoint,
            "actor_lr_scale": self.actor_lr_scale,
        }
