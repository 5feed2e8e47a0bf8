"""Layers shared by every backbone: feature embedding, MLP, batched experts, gates and towers.

Follows the official RMTL code (``layers/layers.py``) where it is sound: one embedding table over
all categorical fields with per-field offsets, a 128-d projection per numerical field, ReLU MLPs
with dropout and no batch norm. Differences: id 0 is an ordinary learnable row (the data layer
reserves it for unknown/rare values, which deserve an embedding), and all experts of one level run
as one batched matrix multiply instead of a Python loop over experts.
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch
from torch import nn

DROPOUT_MASKS = ("bernoulli", "int16")
_MASKS = contextvars.ContextVar("dropout_masks", default="bernoulli")


@contextmanager
def dropout_masks(source: str) -> Iterator[None]:
    """Draw the masks of every ``Dropout`` in the block from ``source``: ``bernoulli`` (torch's
    ``nn.Dropout``, the default) or ``int16`` (see ``Dropout``)."""
    if source not in DROPOUT_MASKS:
        raise ValueError(f"dropout masks must be one of {DROPOUT_MASKS}, got {source!r}")
    token = _MASKS.set(source)
    try:
        yield
    finally:
        _MASKS.reset(token)


class Dropout(nn.Dropout):
    """``nn.Dropout``; inside ``dropout_masks("int16")`` its mask keeps an element where a 15-bit
    random integer (four from each 64-bit draw) is at least ``round(p * 32768)``, so ``p`` is
    rounded to a multiple of 1/32768 (0.2 becomes 0.20001).

    Why: on CPUs torch draws one random number per element for ``bernoulli_``, which took 26 %
    of a PLE training step in fp32 and 40 % in bf16 on the development machine (15 ms per 1M
    elements, the cost of a 1 GFLOP matmul). Other random numbers than the default's, so the
    same seed gives other (equally valid) masks."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0 or _MASKS.get() == "bernoulli":
            return super().forward(x)
        threshold = round(self.p * 32768)
        # One 64-bit draw gives four 15-bit integers (random_ fills int64 with 63 random bits).
        words = torch.empty(-(-x.numel() // 4), dtype=torch.int64, device=x.device).random_()
        bits = (words.view(torch.int16)[: x.numel()] & 0x7FFF).view(x.shape)
        keep = (bits >= threshold).view(torch.uint8)  # uint8 -> float: 5x bool's conversion
        scale = keep.to(x.dtype).mul_(32768 / (32768 - threshold))
        return x * scale


class FeatureEmbedding(nn.Module):
    """Embeds ``F`` categorical ids and ``N`` numerical values into ``[B, (F + N) * D]``.

    Each numerical field ``j`` gets its own projection ``x_j * w_j + b_j`` (a ``Linear(1, D)``),
    so every input field contributes one ``D``-vector, as in the paper's figure 3.
    """

    def __init__(self, field_dims: Sequence[int], num_numerical: int, embed_dim: int) -> None:
        super().__init__()
        if len(field_dims) == 0 or min(field_dims) < 1:
            raise ValueError(f"field_dims must be a non-empty list of sizes >= 1, got {field_dims}")
        if num_numerical < 0:
            raise ValueError(f"num_numerical must be >= 0, got {num_numerical}")
        self.num_fields = len(field_dims)
        self.num_numerical = num_numerical
        self.embed_dim = embed_dim
        self.embedding = nn.Embedding(int(sum(field_dims)), embed_dim)
        offsets = torch.zeros(len(field_dims), dtype=torch.long)
        offsets[1:] = torch.cumsum(torch.as_tensor(list(field_dims)[:-1]), 0)
        self.register_buffer("offsets", offsets, persistent=False)
        self.numerical_weight = nn.Parameter(torch.empty(num_numerical, embed_dim))
        self.numerical_bias = nn.Parameter(torch.zeros(num_numerical, embed_dim))
        nn.init.xavier_uniform_(self.embedding.weight)
        nn.init.xavier_uniform_(self.numerical_weight)

    @property
    def output_dim(self) -> int:
        return (self.num_fields + self.num_numerical) * self.embed_dim

    def forward(self, categorical: torch.Tensor, numerical: torch.Tensor) -> torch.Tensor:
        cat = self.embedding(categorical + self.offsets)  # [B, F, D]
        num = numerical.unsqueeze(-1) * self.numerical_weight + self.numerical_bias  # [B, N, D]
        return torch.cat([cat, num], dim=1).flatten(1)  # [B, (F + N) * D]


class MLP(nn.Sequential):
    """``Linear -> ReLU -> Dropout`` per hidden size, then an optional ``Linear(., 1)`` output."""

    def __init__(
        self, input_dim: int, hidden_dims: Sequence[int], dropout: float, output_layer: bool
    ) -> None:
        layers: list[nn.Module] = []
        for dim in hidden_dims:
            layers += [nn.Linear(input_dim, dim), nn.ReLU(), Dropout(dropout)]
            input_dim = dim
        if output_layer:
            layers.append(nn.Linear(input_dim, 1))
        super().__init__(*layers)
        self.output_dim = 1 if output_layer else input_dim


class Tower(MLP):
    """A task tower: hidden layers then one logit, ``[B, in] -> [B]``.

    The logit is always float32: under a bfloat16 ``torch.autocast`` the output layer runs in
    float32, because a bf16 logit (8-bit mantissa) rounds probabilities onto a coarse grid
    whose ties blur AUC and whose rounding biases the BCE."""

    def __init__(self, input_dim: int, hidden_dims: Sequence[int], dropout: float) -> None:
        super().__init__(input_dim, hidden_dims, dropout, output_layer=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        *hidden, output = self
        for layer in hidden:
            x = layer(x)
        with torch.autocast(x.device.type, enabled=False):
            return output(x.float()).squeeze(-1)


class Experts(nn.Module):
    """``E`` expert MLPs with identical shapes, evaluated together with batched matmuls.

    Input ``[B, in]`` (every expert sees the same input) or ``[E, B, in]`` (expert ``e`` sees
    slice ``e``); output ``[E, B, out]``. Each layer is ``Linear -> ReLU -> Dropout``.

    The first layer's weight is stored ``[in, E, out]`` (the deeper layers' ``[E, in, out]``):
    viewed as ``[in, E * out]`` it serves all experts in one GEMM on a ``[B, in]`` input without
    the transposing copy of the whole weight, forward and backward, that ``[E, in, out]`` costs
    (the largest weight of the model: ``in`` is every embedded field). Older checkpoints
    (``rmtl-backbone/1``) are migrated by :func:`migrate_legacy_experts`.
    """

    def __init__(
        self, num_experts: int, input_dim: int, hidden_dims: Sequence[int], dropout: float
    ) -> None:
        super().__init__()
        if num_experts < 1 or len(hidden_dims) == 0:
            raise ValueError("Experts needs num_experts >= 1 and at least one hidden size")
        self.num_experts = num_experts
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        for layer, dim in enumerate(hidden_dims):
            weight = torch.empty(num_experts, input_dim, dim)
            bound = 1.0 / input_dim**0.5  # nn.Linear's default initialisation, per expert
            nn.init.uniform_(weight, -bound, bound)
            if layer == 0:  # drawn in [E, in, out] order, so a seed gives the same experts
                weight = weight.permute(1, 0, 2).contiguous()
            self.weights.append(nn.Parameter(weight))
            self.biases.append(
                nn.Parameter(torch.empty(num_experts, 1, dim).uniform_(-bound, bound))
            )
            input_dim = dim
        self.dropout = Dropout(dropout)
        self.output_dim = input_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight, bias = self.weights[0], self.biases[0]  # weight [in, E, out]
        d_in, e, d_out = weight.shape
        if x.dim() == 2:  # one GEMM for all experts: far faster than E small ones
            h = torch.addmm(bias.reshape(1, e * d_out), x, weight.view(d_in, e * d_out))
            h = h.view(-1, e, d_out).transpose(0, 1)  # [E, B, out]
        else:
            h = torch.baddbmm(bias, x, weight.permute(1, 0, 2))  # [E, B, out]
        h = self.dropout(torch.relu(h))
        for weight, bias in zip(self.weights[1:], self.biases[1:], strict=True):
            h = self.dropout(torch.relu(torch.baddbmm(bias, h, weight)))
        return h


def migrate_legacy_experts(model: nn.Module, state_dict: dict[str, torch.Tensor]) -> dict:
    """``state_dict`` of ``model`` saved before ``Experts`` stored its first layer ``[in, E,
    out]`` (every first-layer weight ``[E, in, out]``), rewritten in today's layout."""
    migrated = dict(state_dict)
    for name, module in model.named_modules():
        if isinstance(module, Experts):
            key = f"{name}.weights.0" if name else "weights.0"
            if key in migrated:
                migrated[key] = migrated[key].permute(1, 0, 2).contiguous()
    return migrated


class Gate(nn.Module):
    """Softmax gate ``Linear(in, E)`` that mixes ``[E, B, d]`` expert outputs into ``[B, d]``."""

    def __init__(self, input_dim: int, num_experts: int) -> None:
        super().__init__()
        self.linear = nn.Linear(input_dim, num_experts)

    def forward(self, gate_input: torch.Tensor, expert_outputs: torch.Tensor) -> torch.Tensor:
        weights = torch.softmax(self.linear(gate_input), dim=-1)  # [B, E]
        return torch.einsum("be,ebd->bd", weights, expert_outputs)  # [B, d]
