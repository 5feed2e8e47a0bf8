"""ESMM (Ma et al., SIGIR 2018): entire-space multi-task model for CTR and CTCVR."""

from __future__ import annotations

import torch
from torch import nn

from agents.models.base import MultiTaskModel
from agents.models.layers import Experts, FeatureEmbedding, Tower


class ESMM(MultiTaskModel):
    """Shared embedding, one bottom and tower per task, chained outputs.

    Tower ``k`` predicts the conditional probability of task ``k`` given task ``k - 1``
    (CVR given click for ``k = 1``); the model outputs the cumulative products
    ``p_k = prod_{j <= k} sigmoid(t_j)``, so ``p_1 = pCTR * pCVR = pCTCVR`` is trained on the
    entire impression space. ``[B, F], [B, N] -> [B, K]``.
    """

    def __init__(self, field_dims, num_numerical, num_tasks, config=None) -> None:
        super().__init__(field_dims, num_numerical, num_tasks, config)
        c = self.config
        self.embedding = FeatureEmbedding(field_dims, num_numerical, c.embed_dim)
        # The K per-task bottoms have identical shapes, so they run as one batched expert stack.
        self.bottoms = Experts(num_tasks, self.embedding.output_dim, c.bottom_dims, c.dropout)
        self.towers = nn.ModuleList(
            Tower(self.bottoms.output_dim, c.tower_dims, c.dropout) for _ in range(num_tasks)
        )

    def task_heads(self) -> list[nn.Module]:
        """Only the embeddings are shared: the tasks part ways at the per-task bottoms."""
        return [self.bottoms]

    def shared_parameters(self) -> list[nn.Parameter]:
        return list(self.embedding.parameters())

    def conditional_probs(self, categorical: torch.Tensor, numerical: torch.Tensor) -> torch.Tensor:
        """``[B, K]`` per-tower probabilities: pCTR, then each task given the previous one."""
        features = self.bottoms(self.embedding(categorical, numerical))  # [K, B, bottom]
        logits = torch.stack([t(f) for t, f in zip(self.towers, features, strict=True)], dim=1)
        return torch.sigmoid(logits)  # [B, K]

    def forward(self, categorical: torch.Tensor, numerical: torch.Tensor) -> torch.Tensor:
        return torch.cumprod(self.conditional_probs(categorical, numerical), dim=1)  # [B, K]
