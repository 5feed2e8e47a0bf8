"""AITM (Xi et al., KDD 2021): adaptive information transfer between sequential tasks."""

from __future__ import annotations

import torch
from torch import nn

from agents.models.base import MultiTaskModel
from agents.models.layers import Experts, FeatureEmbedding, Tower


class AITM(MultiTaskModel):
    """Per-task bottoms; task ``k`` attends over its own features and information transferred
    from task ``k - 1`` (``Linear`` transfer, self-attention with V/K/Q projections, scale
    ``1/sqrt(d)``), as in the official RMTL code. The behavioural calibrator loss of the AITM paper
    is not part of it. ``[B, F], [B, N] -> [B, K]``.
    """

    def __init__(self, field_dims, num_numerical, num_tasks, config=None) -> None:
        super().__init__(field_dims, num_numerical, num_tasks, config)
        c = self.config
        self.embedding = FeatureEmbedding(field_dims, num_numerical, c.embed_dim)
        self.bottoms = Experts(num_tasks, self.embedding.output_dim, c.bottom_dims, c.dropout)
        d = self.bottoms.output_dim
        self.transfers = nn.ModuleList(nn.Linear(d, d) for _ in range(num_tasks - 1))
        self.value = nn.Linear(d, d)
        self.key = nn.Linear(d, d)
        self.query = nn.Linear(d, d)
        self.towers = nn.ModuleList(Tower(d, c.tower_dims, c.dropout) for _ in range(num_tasks))

    def task_heads(self) -> list[nn.Module]:
        """Only the embeddings are shared: the tasks part ways at the per-task bottoms (the
        transfer between them then links tasks in sequence, not through shared layers)."""
        return [self.bottoms]

    def shared_parameters(self) -> list[nn.Parameter]:
        return list(self.embedding.parameters())

    def forward(self, categorical: torch.Tensor, numerical: torch.Tensor) -> torch.Tensor:
        features = list(self.bottoms(self.embedding(categorical, numerical)))  # K x [B, d]
        scale = features[0].shape[-1] ** -0.5
        for k in range(1, self.num_tasks):
            transferred = self.transfers[k - 1](features[k - 1])  # [B, d]
            x = torch.stack([transferred, features[k]], dim=1)  # [B, 2, d]
            attention = torch.softmax(
                (self.query(x) * self.key(x)).sum(-1) * scale, dim=1
            )  # [B, 2]
            features[k] = (attention.unsqueeze(-1) * self.value(x)).sum(1)  # [B, d]
        logits = torch.stack([tower(f) for tower, f in zip(self.towers, features, strict=True)], 1)
        return torch.sigmoid(logits)  # [B, K]
