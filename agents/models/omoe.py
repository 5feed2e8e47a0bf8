"""OMoE: one-gate mixture of experts (the MMoE paper's single-gate baseline)."""

from __future__ import annotations

import torch
from torch import nn

from agents.models.base import MultiTaskModel
from agents.models.layers import Experts, FeatureEmbedding, Gate, Tower


class OMoE(MultiTaskModel):
    """``E`` expert MLPs mixed by one softmax gate shared by all task towers.

    ``[B, F], [B, N] -> [B, K]``.
    """

    def __init__(self, field_dims, num_numerical, num_tasks, config=None) -> None:
        super().__init__(field_dims, num_numerical, num_tasks, config)
        c = self.config
        self.embedding = FeatureEmbedding(field_dims, num_numerical, c.embed_dim)
        in_dim = self.embedding.output_dim
        self.experts = Experts(c.num_experts, in_dim, c.bottom_dims, c.dropout)
        self.gate = Gate(in_dim, c.num_experts)
        self.towers = nn.ModuleList(
            Tower(self.experts.output_dim, c.tower_dims, c.dropout) for _ in range(num_tasks)
        )

    def forward(self, categorical: torch.Tensor, numerical: torch.Tensor) -> torch.Tensor:
        x = self.embedding(categorical, numerical)  # [B, in]
        mixed = self.gate(x, self.experts(x))  # [B, bottom]
        return torch.sigmoid(torch.stack([tower(mixed) for tower in self.towers], dim=1))  # [B, K]
