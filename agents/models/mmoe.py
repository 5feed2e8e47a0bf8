"""MMoE (Ma et al., KDD 2018): multi-gate mixture of experts."""

from __future__ import annotations

import torch
from torch import nn

from agents.models.base import MultiTaskModel
from agents.models.layers import Experts, FeatureEmbedding, Gate, Tower


class MMoE(MultiTaskModel):
    """``E`` shared expert MLPs; each task mixes them with its own softmax gate.

    ``[B, F], [B, N] -> [B, K]``.
    """

    def __init__(self, field_dims, num_numerical, num_tasks, config=None) -> None:
        super().__init__(field_dims, num_numerical, num_tasks, config)
        c = self.config
        self.embedding = FeatureEmbedding(field_dims, num_numerical, c.embed_dim)
        in_dim = self.embedding.output_dim
        self.experts = Experts(c.num_experts, in_dim, c.bottom_dims, c.dropout)
        self.gates = nn.ModuleList(Gate(in_dim, c.num_experts) for _ in range(num_tasks))
        self.towers = nn.ModuleList(
            Tower(self.experts.output_dim, c.tower_dims, c.dropout) for _ in range(num_tasks)
        )

    def forward(self, categorical: torch.Tensor, numerical: torch.Tensor) -> torch.Tensor:
        x = self.embedding(categorical, numerical)  # [B, in]
        expert_outputs = self.experts(x)  # [E, B, bottom]
        logits = [
            tower(gate(x, expert_outputs))  # [B]
            for gate, tower in zip(self.gates, self.towers, strict=True)
        ]
        return torch.sigmoid(torch.stack(logits, dim=1))  # [B, K]
