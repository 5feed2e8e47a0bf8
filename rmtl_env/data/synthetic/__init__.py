"""Synthetic twins that write raw files in the real formats (see each module's docstring)."""

from __future__ import annotations

from pathlib import Path

from rmtl_env.data.synthetic.common import SCALES
from rmtl_env.data.synthetic.kuairand import write_kuairand_27k_twin, write_kuairand_twin
from rmtl_env.data.synthetic.retailrocket import TWIN_KNOBS, check_knobs, write_retailrocket_twin

# The 27K twin's named scales as fractions of the real KuaiRand-27K.
FRACTIONS_27K = {"tiny": 0.0005, "small": 0.005, "full": 1.0}


def twin_fraction(scale: str | float) -> float:
    """The 27K twin's fraction of full size: a named scale (``FRACTIONS_27K``) or a number in
    (0, 1] such as ``0.05`` or ``"1/20"``."""
    if isinstance(scale, str) and scale in FRACTIONS_27K:
        return FRACTIONS_27K[scale]
    try:
        if isinstance(scale, str) and "/" in scale:
            numerator, denominator = scale.split("/")
            value = float(numerator) / float(denominator)
        else:
            value = float(scale)
    except (TypeError, ValueError, ZeroDivisionError):
        value = float("nan")
    if not 0.0 < value <= 1.0:
        raise ValueError(
            f"scale of kuairand-27k-synthetic must be one of {list(FRACTIONS_27K)} or a fraction "
            f"in (0, 1] such as 0.05 or '1/20', got {scale!r}"
        )
    return value


def _write_27k(out_dir: str | Path, scale: str | float = "small", seed: int = 0) -> Path:
    return write_kuairand_27k_twin(out_dir, twin_fraction(scale), seed)


TWINS = {
    "retailrocket-synthetic": write_retailrocket_twin,
    "kuairand-synthetic": write_kuairand_twin,
    "kuairand-27k-synthetic": _write_27k,
}


KNOB_TWIN = "retailrocket-synthetic"
"""The one twin whose generator has knobs (``TWIN_KNOBS``)."""


def twin_knobs(name: str, knobs: dict[str, float]) -> dict[str, float]:
    """The knobs of twin ``name`` that are set (non-zero), checked: known, in range, and only on
    the twin that has them."""
    set_knobs = check_knobs(knobs)
    if set_knobs and name != KNOB_TWIN:
        raise ValueError(f"twin knobs {sorted(set_knobs)} exist for {KNOB_TWIN} only")
    return set_knobs


def write_twin(
    name: str, out_dir: str | Path, scale: str = "small", seed: int = 0, **knobs: float
) -> Path:
    """Write the raw files of twin ``name`` (``retailrocket-synthetic`` or ``kuairand-synthetic``);
    ``knobs``: the RetailRocket twin's ``TWIN_KNOBS`` (``conflict``, ``noise``)."""
    if name not in TWINS:
        raise ValueError(f"unknown synthetic dataset {name!r}; expected one of {list(TWINS)}")
    if twin_knobs(name, knobs):
        return TWINS[name](out_dir, scale=scale, seed=seed, **knobs)
    return TWINS[name](out_dir, scale=scale, seed=seed)


__all__ = [
    "FRACTIONS_27K",
    "SCALES",
    "TWINS",
    "KNOB_TWIN",
    "TWIN_KNOBS",
    "check_knobs",
    "twin_knobs",
    "twin_fraction",
    "write_kuairand_27k_twin",
    "write_kuairand_twin",
    "write_retailrocket_twin",
    "write_twin",
]
