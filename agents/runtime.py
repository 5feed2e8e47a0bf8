"""Device choice, seeding and configuration records, shared by every script."""

from __future__ import annotations

import copy
import dataclasses
import random

import numpy as np
import torch


def resolve_device(device: str = "auto") -> torch.device:
    """``"auto"`` picks CUDA when available, else CPU; ``"cpu"``/``"cuda"``/``"cuda:N"`` as given."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device={device!r} was requested but CUDA is not available; use 'cpu'")
    if not (device == "cpu" or device.startswith("cuda")):
        raise ValueError(f"device must be 'auto', 'cpu' or 'cuda[:N]', got {device!r}")
    return torch.device(device)


def flush_denormals() -> bool:
    """Make CPU float ops treat subnormal numbers (|x| < 1.2e-38 in float32) as zero; returns
    whether the CPU supports it. Every script calls this first.

    A saturated sigmoid (D-PLE's collapsing actor) back-propagates subnormal gradients, and x86
    CPUs multiply subnormals up to ~190 times slower: on the development machine one
    ``[256, 5504] @ [5504, 512]`` matmul took 3.4 s instead of 18 ms, and D-PLE on the KuaiRand twin
    slowed from about 100 to 22 DDPG steps per minute. Flushing changes no number above the
    threshold."""
    return torch.set_flush_denormal(True)


def denormals_flushed() -> bool:
    """Whether CPU float ops currently flush subnormal numbers to zero."""
    return bool((torch.tensor([1e-40]) * 1.0).item() == 0.0)


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch so that a CPU run with the same seed repeats exactly."""
    random.seed(seed)
    np.random.seed(seed)  # noqa: NPY002 -- seeds libraries that still draw from the global RNG
    torch.manual_seed(seed)


NEVER_RECORDED = {"record": "never"}
"""Field metadata: not part of a run's configuration (e.g. ``DataConfig.refresh``)."""
RECORDED_IF_SET = {"record": "if_set"}
"""Field metadata: part of a run's configuration only when not at its default, for options
added after runs were recorded, so that those runs' configurations still match and resume."""


def config_record(config: object) -> dict:
    """``dataclasses.asdict(config)`` as a run records it: without ``NEVER_RECORDED`` fields and
    ``RECORDED_IF_SET`` fields at their default; nested configs likewise."""
    record = {}
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        rule = f.metadata.get("record")
        if rule == "never" or (rule == "if_set" and value == _default(f)):
            continue
        record[f.name] = (
            config_record(value) if dataclasses.is_dataclass(value) else copy.deepcopy(value)
        )
    return record


def _default(f: dataclasses.Field) -> object:
    if f.default is not dataclasses.MISSING:
        return f.default
    return f.default_factory()  # type: ignore[misc]
