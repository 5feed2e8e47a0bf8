"""Declared domains of numeric settings.

A config field states the values it takes where it is declared,
``lr: float = field(default=1e-3, metadata=within(0, low_open=True))``; the dataclass checks every
declared field in one call (``check_domains`` in ``__post_init__``), before any work starts, and
the command line shows the domain in ``--help`` (``rmtl_bench/cli.py``). A value outside its domain,
``NaN`` and ``inf`` included, is refused with the field, the domain and the value.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Domain:
    """The numbers a setting takes: bounds (closed unless ``*_open``), integers only or not."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    integer: bool = False

    def __str__(self) -> str:
        kind = "an integer" if self.integer else "a finite number"
        if self.low is not None and self.high is not None:
            left, right = "(" if self.low_open else "[", ")" if self.high_open else "]"
            return f"{kind} in {left}{self.low:g}, {self.high:g}{right}"
        if self.low is not None:
            return f"{kind} {'>' if self.low_open else '>='} {self.low:g}"
        if self.high is not None:
            return f"{kind} {'<' if self.high_open else '<='} {self.high:g}"
        return kind

    def contains(self, value: Any) -> bool:
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            return False
        if self.integer and not isinstance(value, numbers.Integral):
            return False
        if not math.isfinite(value):
            return False
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return False
        return self.high is None or (value < self.high if self.high_open else value <= self.high)


def within(
    low: float | None = None,
    high: float | None = None,
    *,
    low_open: bool = False,
    high_open: bool = False,
    integer: bool = False,
    **metadata: Any,
) -> dict[str, Any]:
    """Field metadata declaring a domain (merged with any other ``metadata``)."""
    return {**metadata, "domain": Domain(low, high, low_open, high_open, integer)}


def at_least(low: int = 1, **metadata: Any) -> dict[str, Any]:
    """Field metadata for an integer count ``>= low``."""
    return within(low, integer=True, **metadata)


def domain_of(field: dataclasses.Field) -> Domain | None:
    return field.metadata.get("domain")


def check_domains(config: Any) -> None:
    """Refuse every declared field of the dataclass ``config`` whose value (each element of a
    tuple; ``None`` is left to the field's own meaning) lies outside its domain."""
    for field in dataclasses.fields(config):
        domain, value = domain_of(field), getattr(config, field.name)
        if domain is None or value is None:
            continue
        if not all(domain.contains(v) for v in (value if isinstance(value, tuple) else (value,))):
            what = f"sizes, each {domain}" if isinstance(value, tuple) else str(domain)
            raise ValueError(f"{type(config).__name__}.{field.name} must be {what}, got {value!r}")
