"""The interface every backbone shares, and the paper's default dimensions."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from torch import nn

from agents.domains import at_least, check_domains, within


@dataclass(frozen=True)
class ModelConfig:
    """Backbone dimensions; the defaults are the paper's (RMTL section 5.1, official ``run.py``).

    Attributes:
        embed_dim: size of each field's embedding (and of each numerical projection).
        bottom_dims: hidden sizes of the shared/per-task bottom, of each expert, or of each PLE level.
        tower_dims: hidden sizes of each task tower, which ends in one logit.
        num_experts: experts for OMoE/MMoE; PLE uses half as task-specific experts per task and
            half as shared experts per level (8 -> 4 + 4, as the official code).
        dropout: dropout after every hidden layer.
    """

    embed_dim: int = field(default=128, metadata=at_least())
    bottom_dims: tuple[int, ...] = field(default=(512, 256), metadata=at_least())
    tower_dims: tuple[int, ...] = field(default=(128, 64), metadata=at_least())
    num_experts: int = field(default=8, metadata=at_least(2))
    dropout: float = field(default=0.2, metadata=within(0, 1, high_open=True))

    def __post_init__(self) -> None:
        object.__setattr__(self, "bottom_dims", tuple(int(d) for d in self.bottom_dims))
        object.__setattr__(self, "tower_dims", tuple(int(d) for d in self.tower_dims))
        check_domains(self)
        if not self.bottom_dims:
            raise ValueError(
                f"bottom_dims must be non-empty positive sizes, got {self.bottom_dims}"
            )

    def to_dict(self) -> dict:
        return asdict(self)


class MultiTaskModel(nn.Module):
    """Maps categorical ids ``[B, F]`` (int64) and numerical features ``[B, N]`` (float32) to
    one probability per task, ``[B, K]``. Subclasses implement ``forward``."""

    def __init__(
        self,
        field_dims: Sequence[int],
        num_numerical: int,
        num_tasks: int,
        config: ModelConfig | None = None,
    ) -> None:
        super().__init__()
        if num_tasks < 2:
            raise ValueError(f"num_tasks must be >= 2 for a multi-task model, got {num_tasks}")
        self.field_dims = [int(d) for d in field_dims]
        self.num_numerical = int(num_numerical)
        self.num_tasks = int(num_tasks)
        self.config = config or ModelConfig()

    def forward(self, categorical: torch.Tensor, numerical: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def as_policy(self):
        """A policy for ``rmtl_env.evaluate_policy``: the env's batched Dict observations to
        ``[n, K]`` float32 probabilities (NumPy), in eval mode, without gradients."""

        @torch.no_grad()
        def act(observations: dict) -> np.ndarray:
            was_training = self.training
            self.eval()
            device = next(self.parameters()).device
            categorical = torch.as_tensor(np.array(observations["categorical"]), device=device)
            numerical = torch.as_tensor(np.array(observations["numerical"]), device=device)
            probs = self(categorical, numerical).float().cpu().numpy()
            self.train(was_training)
            return probs

        return act

    def task_heads(self) -> list[nn.Module]:
        """The modules where the tasks part ways: their inputs are the representation the tasks
        share, and every parameter outside them is shared between tasks. The task towers, by
        default; none for a model without shared layers."""
        return list(self.towers)

    def shared_parameters(self) -> list[nn.Parameter]:
        """The parameters shared between tasks (embeddings, shared bottom or experts, gates):
        by default those outside ``task_heads``; the ones the Jacobian loss balancers aggregate
        (``agents.weighting``); empty when the tasks share nothing."""
        heads = self.task_heads()
        if not heads:
            return []
        own = {id(p) for head in heads for p in head.parameters()}
        return [p for p in self.parameters() if id(p) not in own]
