"""Device choice and seeding, shared by every script."""

from __future__ import annotations

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


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch so that a CPU run with the same seed repeats exactly."""
    random.seed(seed)
    np.random.seed(seed)  # noqa: NPY002 -- seeds libraries that still draw from the global RNG
    torch.manual_seed(seed)
