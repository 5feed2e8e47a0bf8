"""Shared Bottom (Caruana, 1997): one shared bottom MLP, one tower per task."""

from __future__ import annotations

import torch
from torch import nn

from agents.models.base import MultiTaskModel
from agents.models.layers import MLP, FeatureEmbedding, Tower


class SharedBottom(MultiTaskModel):
    """Hard parameter sharing: ``towers_k(bottom(embed(x)))``; ``[B, F], [B, N] -> [B, K]``."""

    def __init__(self, field_dims, num_numerical, num_tasks, config=None) -> None:
        super().__init__(field_dims, num_numerical, num_tasks, config)
        c = self.config
        self.embedding = FeatureEmbedding(field_dims, num_numerical, c.embed_dim)
        self.bottom = MLP(self.embedding.output_dim, c.bottom_dims, c.dropout, output_layer=False)
        self.towers = nn.ModuleList(
            Tower(self.bottom.output_dim, c.tower_dims, c.dropout) for _ in range(num_tasks)
        )

    def forward(self, categorical: torch.Tensor, numerical: torch.Tensor) -> torch.Tensor:
        shared = self.bottom(self.embedding(categorical, numerical))  # [B, bottom]
        logits = torch.stack([tower(shared) for tower in self.towers], dim=1)  # [B, K]
        return torch.sigmoid(logits)
