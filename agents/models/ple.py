"""PLE (Tang et al., RecSys 2020): progressive layered extraction, the canonical form."""

from __future__ import annotations

import torch
from torch import nn

from agents.models.base import MultiTaskModel
from agents.models.layers import Experts, FeatureEmbedding, Gate, Tower


def expert_stack(outputs: list[torch.Tensor]) -> torch.Tensor:
    """``[E_i, B, d]`` expert outputs joined into ``[sum E_i, B, d]``, stored batch-major:
    ``Experts`` already stores its outputs so, and the gate's mixing reads them so, which saves
    it a transposing copy forward and backward."""
    return torch.cat([o.transpose(0, 1) for o in outputs], dim=1).transpose(0, 1)


class PLE(MultiTaskModel):
    """Stacked customized gate control (CGC) levels with task-specific and shared experts.

    One level per entry of ``bottom_dims`` (2 by default). At each level every task has
    ``S = num_experts // 2`` specific experts and the level has ``S`` shared experts, each a
    ``Linear -> ReLU -> Dropout``. Task ``k``'s gate mixes its own and the shared experts; below the
    last level a shared gate mixes all experts into the next level's shared input. Task experts read
    their own task's input and shared experts the shared input (the official code instead re-runs
    every expert on every branch's input, which matches this only at the first level).
    ``[B, F], [B, N] -> [B, K]``.
    """

    def __init__(self, field_dims, num_numerical, num_tasks, config=None) -> None:
        super().__init__(field_dims, num_numerical, num_tasks, config)
        c = self.config
        s, k = max(1, c.num_experts // 2), num_tasks
        self.embedding = FeatureEmbedding(field_dims, num_numerical, c.embed_dim)
        # levels[l][g]: the experts of group g at level l; groups 0..K-1 are the tasks', K shared.
        self.levels = nn.ModuleList()
        self.task_gates = nn.ModuleList()
        self.shared_gates = nn.ModuleList()
        in_dim = self.embedding.output_dim
        for level, out_dim in enumerate(c.bottom_dims):
            self.levels.append(
                nn.ModuleList(Experts(s, in_dim, [out_dim], c.dropout) for _ in range(k + 1))
            )
            self.task_gates.append(nn.ModuleList(Gate(in_dim, 2 * s) for _ in range(k)))
            if level < len(c.bottom_dims) - 1:
                self.shared_gates.append(Gate(in_dim, (k + 1) * s))
            in_dim = out_dim
        self.towers = nn.ModuleList(Tower(in_dim, c.tower_dims, c.dropout) for _ in range(k))

    def forward(self, categorical: torch.Tensor, numerical: torch.Tensor) -> torch.Tensor:
        x = self.embedding(categorical, numerical)  # [B, in]
        inputs = [x] * (self.num_tasks + 1)  # one per group, the shared group last
        for level, groups in enumerate(self.levels):
            *task_outputs, shared = [experts(h) for experts, h in zip(groups, inputs, strict=True)]
            next_inputs = [
                gate(inputs[t], expert_stack([task_outputs[t], shared]))  # [B, d]
                for t, gate in enumerate(self.task_gates[level])
            ]
            if level < len(self.levels) - 1:
                all_outputs = expert_stack([*task_outputs, shared])  # [(K+1)S, B, d]
                next_inputs.append(self.shared_gates[level](inputs[-1], all_outputs))
            inputs = next_inputs
        logits = torch.stack([tower(h) for tower, h in zip(self.towers, inputs, strict=True)], 1)
        return torch.sigmoid(logits)  # [B, K]
