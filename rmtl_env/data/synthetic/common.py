"""Pieces shared by the synthetic twins: scales, seeded draws, session simulation, CSV writing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

SCALES = ("tiny", "small", "full")


def check_scale(scale: str) -> str:
    if scale not in SCALES:
        raise ValueError(f"scale must be one of {SCALES}, got {scale!r}")
    return scale


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def logit(p: float) -> float:
    return float(np.log(p / (1.0 - p)))


def intercept_for_rate(static: np.ndarray, rate: float) -> float:
    """Intercept ``b`` with ``mean(sigmoid(static + b)) == rate`` (bisection)."""
    low, high = -15.0, 15.0
    for _ in range(60):
        mid = (low + high) / 2
        low, high = (mid, high) if sigmoid(static + mid).mean() < rate else (low, mid)
    return (low + high) / 2


def zipf_choice(rng: np.random.Generator, n: int, size: int, exponent: float) -> np.ndarray:
    """Draw ``size`` indices in ``[0, n)`` with probability proportional to ``(rank + 1)^-exponent``."""
    weights = (np.arange(1, n + 1, dtype=np.float64)) ** -exponent
    cdf = np.cumsum(weights)
    cdf /= cdf[-1]
    return np.minimum(np.searchsorted(cdf, rng.random(size), side="right"), n - 1)


def session_lengths(rng: np.random.Generator, n: int, mean_extra: float, tail: float) -> np.ndarray:
    """Heavy-tailed session lengths >= 1: a geometric body mixed with a Pareto tail, as logged
    sessions are (most are short, a few run to hundreds of impressions)."""
    body = rng.geometric(1.0 / (1.0 + mean_extra), size=n)
    long = rng.random(n) < tail
    body[long] += np.minimum((rng.pareto(1.5, size=int(long.sum())) * 8).astype(np.int64), 400)
    return body.astype(np.int64)


def simulate_intent(
    rng: np.random.Generator,
    lengths: np.ndarray,
    static_logit: np.ndarray,
    *,
    start_sd: float,
    persistence: float,
    step_sd: float,
    drift: float,
    click_jump: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Session-level latent intent that evolves along each session.

    Rows are grouped by session in order (``lengths`` per session). Intent starts at
    N(0, start_sd^2); after each impression it becomes
    ``persistence * z + drift + click_jump * clicked + N(0, step_sd^2)``, so the position in the
    session and what happened earlier in it shift later probabilities. The click probability of a
    row is ``sigmoid(static_logit + z)``; its click is drawn here because later intent depends on it.

    Returns ``(intent, p_click, click)`` per row.
    """
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    total = int(lengths.sum())
    intent = np.empty(total)
    p_click = np.empty(total)
    click = np.empty(total, dtype=bool)
    z = rng.normal(0.0, start_sd, size=len(lengths))
    for t in range(int(lengths.max(initial=0))):
        alive = np.flatnonzero(lengths > t)
        rows = starts[alive] + t
        intent[rows] = z[alive]
        p = sigmoid(static_logit[rows] + z[alive])
        p_click[rows] = p
        clicked = rng.random(len(rows)) < p
        click[rows] = clicked
        z[alive] = (
            persistence * z[alive]
            + drift
            + click_jump * clicked
            + rng.normal(0.0, step_sd, size=len(alive))
        )
    return intent, p_click, click


def write_csv(table: pa.Table, path: Path) -> None:
    """Write a CSV as the real dumps are: unquoted header and values, empty nulls. Values must not
    contain commas or quotes (use pandas for files that need quoting)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    pacsv.write_csv(
        table, tmp, write_options=pacsv.WriteOptions(quoting_style="none", quoting_header="none")
    )
    tmp.replace(path)
