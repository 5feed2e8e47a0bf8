"""Single Task: one independent network per task (no sharing at all)."""

from __future__ import annotations

import torch
from torch import nn

from agents.models.base import MultiTaskModel
from agents.models.layers import MLP, FeatureEmbedding, Tower


class SingleTask(MultiTaskModel):
    """K separate embedding + bottom MLP + tower stacks; the no-transfer baseline of Table 1.

    Input ``[B, F]`` ids and ``[B, N]`` numerical values; output ``[B, K]`` probabilities.
    """

    def __init__(self, field_dims, num_numerical, num_tasks, config=None) -> None:
        super().__init__(field_dims, num_numerical, num_tasks, config)
        c = self.config
        self.embeddings = nn.ModuleList(
            FeatureEmbedding(field_dims, num_numerical, c.embed_dim) for _ in range(num_tasks)
        )
        in_dim = self.embeddings[0].output_dim
        self.bottoms = nn.ModuleList(
            MLP(in_dim, c.bottom_dims, c.dropout, output_layer=False) for _ in range(num_tasks)
        )
        self.towers = nn.ModuleList(
            Tower(c.bottom_dims[-1], c.tower_dims, c.dropout) for _ in range(num_tasks)
        )

    def task_heads(self) -> list[nn.Module]:
        """None: every parameter belongs to one task's network."""
        return []

    def forward(self, categorical: torch.Tensor, numerical: torch.Tensor) -> torch.Tensor:
        logits = [
            tower(bottom(embed(categorical, numerical)))  # [B]
            for embed, bottom, tower in zip(self.embeddings, self.bottoms, self.towers, strict=True)
        ]
        return torch.sigmoid(torch.stack(logits, dim=1))  # [B, K]
