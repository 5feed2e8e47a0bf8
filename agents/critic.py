"""RMTL's multi-critic: one Q-function per task over (state, that task's action).

Paper (RMTL section 4.3, figure 3): the critics are parallel MLPs that share a bottom network over
the state representation. Head ``k`` embeds its own task's action with an action layer
(``Linear(1, D)``), joins it to the shared state features and scores ``Q_k(s, a_k)``. The official
code instead has K fully independent critics (``CriticNeg``, deep-copied); ``independent=True``
builds that.

Output activation: rewards are negative BCE, so every return is ``<= 0``. The official code uses
``q = -ReLU(x)``, whose gradient is zero wherever ``x < 0`` (a head can die at ``q = 0``). We use
``q = -softplus(x)``: also non-positive, smooth, and never without gradient.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from agents.domains import at_least, check_domains, within
from agents.models.layers import MLP, FeatureEmbedding, Tower


@dataclass(frozen=True)
class CriticConfig:
    """Critic dimensions; the defaults follow the official ``CriticNeg`` (embedding 128, bottom
    512-256, head 128-64-1, dropout 0.2).

    Attributes:
        embed_dim: size of each field's embedding and of the action embedding.
        bottom_dims: the state encoder MLP shared by all heads (or one per task if independent).
        head_dims: hidden sizes of each task head on ``[state features, action embedding]``.
        dropout: dropout after each hidden layer (critics are evaluated in eval mode).
        independent: K separate critics with their own encoders, as the official code.
        share_embedding: the critics read the actor's (frozen) embedding table instead of
            their own: one table instead of two (or K + 1 with ``independent``), which matters
            when a field has millions of ids. Needs ``embed_dim`` equal to the actor's.
    """

    embed_dim: int = field(default=128, metadata=at_least())
    bottom_dims: tuple[int, ...] = field(default=(512, 256), metadata=at_least())
    head_dims: tuple[int, ...] = field(default=(128, 64), metadata=at_least())
    dropout: float = field(default=0.2, metadata=within(0, 1, high_open=True))
    independent: bool = False
    share_embedding: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "bottom_dims", tuple(int(d) for d in self.bottom_dims))
        object.__setattr__(self, "head_dims", tuple(int(d) for d in self.head_dims))
        check_domains(self)
        if not self.bottom_dims:
            raise ValueError("CriticConfig.bottom_dims must hold at least one size")

    def to_dict(self) -> dict:
        return asdict(self)


class SharedEmbedding:
    """The actor's ``FeatureEmbedding`` seen by the critics: not a submodule, so its weights stay
    the actor's (never in the critics' parameters, optimiser or checkpoint); copies of the
    critics (their target) share it; lookups carry no gradient (the actor is frozen)."""

    def __init__(self) -> None:
        self.embedding: FeatureEmbedding | None = None

    def __deepcopy__(self, memo: dict) -> SharedEmbedding:
        return self

    def __call__(self, categorical: torch.Tensor, numerical: torch.Tensor) -> torch.Tensor:
        if self.embedding is None:
            raise RuntimeError(
                "these critics share the actor's embedding: attach it first "
                "(MultiCritic.attach(actor.embedding); RMTLAgent does)"
            )
        with torch.no_grad():
            return self.embedding(categorical, numerical)


class StateEncoder(nn.Module):
    """Embeddings of the impression's features and an MLP: ``[B, F], [B, N] -> [B, d]``."""

    def __init__(
        self,
        field_dims: Sequence[int],
        num_numerical: int,
        config: CriticConfig,
        shared: SharedEmbedding | None = None,
    ) -> None:
        super().__init__()
        width = (len(field_dims) + num_numerical) * config.embed_dim
        if shared is None:
            self.embedding = FeatureEmbedding(field_dims, num_numerical, config.embed_dim)
        self.shared = shared
        self.bottom = MLP(width, config.bottom_dims, config.dropout, output_layer=False)
        self.output_dim = self.bottom.output_dim

    def forward(self, categorical: torch.Tensor, numerical: torch.Tensor) -> torch.Tensor:
        embed = self.embedding if self.shared is None else self.shared
        return self.bottom(embed(categorical, numerical))


class QHead(nn.Module):
    """``Q_k(s, a_k)`` from state features ``[B, d]`` and one task's action ``[B]`` -> ``[B]``."""

    def __init__(self, state_dim: int, config: CriticConfig) -> None:
        super().__init__()
        self.action_layer = nn.Linear(1, config.embed_dim)
        self.tower = Tower(state_dim + config.embed_dim, config.head_dims, config.dropout)

    def forward(self, state: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        joint = torch.cat([state, self.action_layer(action.unsqueeze(-1))], dim=-1)  # [B, d + D]
        return -F.softplus(self.tower(joint))  # [B], <= 0


class MultiCritic(nn.Module):
    """K task critics: ``(categorical [B, F], numerical [B, N], actions [B, K]) -> Q [B, K]``."""

    def __init__(
        self,
        field_dims: Sequence[int],
        num_numerical: int,
        num_tasks: int,
        config: CriticConfig | None = None,
    ) -> None:
        super().__init__()
        self.config = config or CriticConfig()
        self.field_dims = [int(d) for d in field_dims]
        self.num_numerical, self.num_tasks = int(num_numerical), int(num_tasks)
        encoders = 1 if not self.config.independent else num_tasks
        self.shared = SharedEmbedding() if self.config.share_embedding else None
        self.encoders = nn.ModuleList(
            StateEncoder(field_dims, num_numerical, self.config, self.shared)
            for _ in range(encoders)
        )
        state_dim = self.encoders[0].output_dim
        self.heads = nn.ModuleList(QHead(state_dim, self.config) for _ in range(num_tasks))

    def attach(self, embedding: FeatureEmbedding) -> None:
        """Read ``embedding`` (the actor's) when ``config.share_embedding``; a no-op otherwise."""
        if self.shared is None:
            return
        if not isinstance(embedding, FeatureEmbedding) or (
            embedding.embed_dim,
            embedding.num_fields,
            embedding.num_numerical,
        ) != (self.config.embed_dim, len(self.field_dims), self.num_numerical):
            raise ValueError(
                "CriticConfig.share_embedding needs the actor's FeatureEmbedding with "
                f"embed_dim {self.config.embed_dim} (--critic-embed-dim), "
                f"{len(self.field_dims)} fields and {self.num_numerical} numerical inputs, got "
                f"{type(embedding).__name__} {getattr(embedding, 'embed_dim', '?')}"
            )
        self.shared.embedding = embedding

    def forward(
        self, categorical: torch.Tensor, numerical: torch.Tensor, actions: torch.Tensor
    ) -> torch.Tensor:
        states = [encoder(categorical, numerical) for encoder in self.encoders]  # 1 or K x [B, d]
        q = [
            head(states[k % len(states)], actions[:, k])  # [B]
            for k, head in enumerate(self.heads)
        ]
        return torch.stack(q, dim=1)  # [B, K]
