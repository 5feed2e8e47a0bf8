"""Multi-task backbones: every one maps ``(categorical [B, F], numerical [B, N])`` to ``[B, K]``
probabilities and takes the same constructor arguments, so they swap anywhere a backbone is named.
"""

from __future__ import annotations

from collections.abc import Sequence

from agents.models.aitm import AITM
from agents.models.base import ModelConfig, MultiTaskModel
from agents.models.esmm import ESMM
from agents.models.mmoe import MMoE
from agents.models.omoe import OMoE
from agents.models.ple import PLE
from agents.models.shared_bottom import SharedBottom
from agents.models.single_task import SingleTask

MODELS: dict[str, type[MultiTaskModel]] = {
    "single_task": SingleTask,
    "shared_bottom": SharedBottom,
    "esmm": ESMM,
    "omoe": OMoE,
    "mmoe": MMoE,
    "ple": PLE,
    "aitm": AITM,
}


def build_model(
    name: str,
    field_dims: Sequence[int],
    num_numerical: int,
    num_tasks: int,
    **overrides,
) -> MultiTaskModel:
    """Build backbone ``name`` with the paper's dimensions, changed by ``overrides``.

    Args:
        name: one of ``MODELS`` (``single_task``, ``shared_bottom``, ``esmm``, ``omoe``, ``mmoe``,
            ``ple``, ``aitm``).
        field_dims: vocabulary size of each categorical field.
        num_numerical: number of numerical features.
        num_tasks: number of tasks K (>= 2).
        **overrides: any ``ModelConfig`` field, e.g. ``embed_dim=16``.
    """
    key = name.lower().replace("-", "_")
    if key not in MODELS:
        raise ValueError(f"unknown model {name!r}; expected one of {sorted(MODELS)}")
    unknown = set(overrides) - set(ModelConfig.__dataclass_fields__)
    if unknown:
        raise ValueError(
            f"unknown model option(s) {sorted(unknown)}; expected ModelConfig fields "
            f"{sorted(ModelConfig.__dataclass_fields__)}"
        )
    return MODELS[key](field_dims, num_numerical, num_tasks, ModelConfig(**overrides))


__all__ = [
    "MODELS",
    "ModelConfig",
    "MultiTaskModel",
    "build_model",
    *[c.__name__ for c in MODELS.values()],
]
