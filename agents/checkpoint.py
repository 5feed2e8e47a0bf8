"""Self-describing backbone checkpoints: constructor arguments and weights in one file."""

from __future__ import annotations

import io
from pathlib import Path

import torch

from agents import distributed
from agents.critic import CriticConfig, MultiCritic
from agents.models import MODELS, MultiTaskModel, build_model
from agents.models.layers import migrate_legacy_experts
from rmtl_env.data.io import atomic_write_bytes

FORMAT = "rmtl-backbone/2"
# /1 stored every Experts first-layer weight [E, in, out]; /2 stores it [in, E, out] (layers.py)
LEGACY_FORMATS = ("rmtl-backbone/1",)


def model_name(model: MultiTaskModel) -> str:
    """The ``MODELS`` key of ``model``'s class."""
    for name, cls in MODELS.items():
        if type(model) is cls:
            return name
    raise TypeError(f"{type(model).__name__} is not a registered backbone ({sorted(MODELS)})")


def save_torch(obj: object, path: str | Path) -> Path:
    """``torch.save`` written atomically (temporary file, then rename). Under
    ``torch.distributed`` only rank 0 writes: every rank holds the same weights."""
    if not distributed.is_main():
        return Path(path)
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    atomic_write_bytes(Path(path), buffer.getvalue())
    return Path(path)


class CheckpointError(ValueError):
    """A file that is not a readable checkpoint of the expected kind, or one that does not fit
    the data it is used with."""


def read_checkpoint(
    path: str | Path, expected_format: str, kind: str, legacy_formats: tuple[str, ...] = ()
) -> dict:
    """Load a checkpoint payload on the CPU and check that it is a ``kind`` checkpoint (of
    ``expected_format`` or one of the ``legacy_formats`` its loader still migrates).

    Loads with ``weights_only=True``: a checkpoint holds tensors and plain values only, so a
    crafted file cannot run code; anything else is refused with the path named."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{kind} checkpoint {path} does not exist")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated, empty, text, or a pickle that is not just weights
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(
            f"{path} is not a readable {kind} checkpoint ({type(exc).__name__}: {reason}); "
            "it may be truncated, or not written by this package (only tensors and plain "
            "values are loaded)"
        ) from None
    if not isinstance(payload, dict) or payload.get("format") not in (
        expected_format,
        *legacy_formats,
    ):
        raise CheckpointError(
            f"{path} is not a {kind} checkpoint (expected format {expected_format!r})"
        )
    return payload


def check_fits(network: MultiTaskModel | MultiCritic, dataset, source: str | Path) -> None:
    """Refuse a backbone or critic (loaded from ``source``) whose inputs or outputs differ from
    ``dataset``'s: its vocabulary sizes, numerical fields and tasks."""
    problems = []
    if list(network.field_dims) != list(dataset.field_dims):
        fields = list(getattr(dataset, "categorical_fields", [])) or range(len(dataset.field_dims))
        problems.append(
            f"vocabulary sizes {list(network.field_dims)} vs the dataset's "
            f"{dict(zip(fields, dataset.field_dims, strict=False))}"
        )
    if network.num_numerical != len(dataset.numerical_fields):
        problems.append(
            f"{network.num_numerical} numerical fields vs the dataset's "
            f"{len(dataset.numerical_fields)} {list(dataset.numerical_fields)}"
        )
    if network.num_tasks != len(dataset.tasks):
        problems.append(f"{network.num_tasks} tasks vs the dataset's {list(dataset.tasks)}")
    if problems:
        raise CheckpointError(
            f"{source} was trained on other data than {dataset.name}: "
            + "; ".join(problems)
            + ". Use a checkpoint trained on this dataset (same --dataset, --scale and "
            "--data-seed)"
        )


def network_payload(
    checkpoint_format: str, network: MultiTaskModel | MultiCritic, extra: dict, **fields
) -> dict:
    """Constructor arguments, config and CPU weights of a backbone or critic, plus ``extra``."""
    return {
        "format": checkpoint_format,
        **fields,
        "field_dims": network.field_dims,
        "num_numerical": network.num_numerical,
        "num_tasks": network.num_tasks,
        "config": network.config.to_dict(),
        "state_dict": {k: v.detach().cpu() for k, v in network.state_dict().items()},
        "extra": extra,
    }


def save_model(model: MultiTaskModel, path: str | Path, **extra) -> Path:
    """Save ``model`` with everything ``load_model`` needs to rebuild it; ``extra`` is kept too."""
    return save_torch(network_payload(FORMAT, model, extra, model=model_name(model)), path)


def load_model(path: str | Path, device: str | torch.device = "cpu") -> MultiTaskModel:
    """Rebuild a backbone saved by ``save_model``."""
    payload = read_checkpoint(path, FORMAT, "backbone", LEGACY_FORMATS)
    model = build_model(
        payload["model"],
        payload["field_dims"],
        payload["num_numerical"],
        payload["num_tasks"],
        **payload["config"],
    )
    state_dict = payload["state_dict"]
    if payload["format"] in LEGACY_FORMATS:
        state_dict = migrate_legacy_experts(model, state_dict)
    model.load_state_dict(state_dict)
    return model.to(device)


CRITIC_FORMAT = "rmtl-critic/1"


def save_critic(critic: MultiCritic, path: str | Path, **extra) -> Path:
    """Save RMTL critics with their constructor arguments; ``extra`` (e.g. the backbone) is kept."""
    return save_torch(network_payload(CRITIC_FORMAT, critic, extra), path)


def load_critic(path: str | Path, device: str | torch.device = "cpu") -> MultiCritic:
    """Rebuild critics saved by ``save_critic``."""
    payload = read_checkpoint(path, CRITIC_FORMAT, "critic")
    critic = MultiCritic(
        payload["field_dims"],
        payload["num_numerical"],
        payload["num_tasks"],
        CriticConfig(**payload["config"]),
    )
    critic.load_state_dict(payload["state_dict"])
    return critic.to(device)
