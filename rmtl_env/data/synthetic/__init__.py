"""Synthetic twins that write raw files in the real formats (see each module's docstring)."""

from __future__ import annotations

from pathlib import Path

from rmtl_env.data.synthetic.common import SCALES
from rmtl_env.data.synthetic.kuairand import write_kuairand_twin
from rmtl_env.data.synthetic.retailrocket import write_retailrocket_twin

TWINS = {
    "retailrocket-synthetic": write_retailrocket_twin,
    "kuairand-synthetic": write_kuairand_twin,
}


def write_twin(name: str, out_dir: str | Path, scale: str = "small", seed: int = 0) -> Path:
    """Write the raw files of twin ``name`` (``retailrocket-synthetic`` or ``kuairand-synthetic``)."""
    if name not in TWINS:
        raise ValueError(f"unknown synthetic dataset {name!r}; expected one of {list(TWINS)}")
    return TWINS[name](out_dir, scale=scale, seed=seed)


__all__ = ["SCALES", "TWINS", "write_kuairand_twin", "write_retailrocket_twin", "write_twin"]
