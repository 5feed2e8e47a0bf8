"""Multi-seed result tables: mean ± std per cell and paired t-tests (scipy) between methods."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from scipy import stats

from runlib import METRIC_LABELS, METRICS

SeedResults = Mapping[str, Sequence[Mapping[str, Mapping[str, float]]]]
"""``{method: [per-seed {task: {metric: value}}]}``, seeds in the same order for every method."""


def paired_p_value(a: Sequence[float], b: Sequence[float]) -> float:
    """Two-sided paired t-test p-value of ``a`` vs ``b`` (NaN with fewer than 2 pairs or no spread)."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if len(a) != len(b):
        raise ValueError(f"paired samples need equal lengths, got {len(a)} and {len(b)}")
    if len(a) < 2 or np.allclose(a - b, (a - b)[0]):
        return float("nan")
    return float(stats.ttest_rel(a, b).pvalue)


def cell(values: Sequence[float]) -> str:
    values = np.asarray(values, dtype=float)
    if len(values) == 1:
        return f"{values[0]:.4f}"
    return f"{values.mean():.4f} ± {values.std(ddof=1):.4f}"


def comparison_rows(
    results: SeedResults, pairs: Mapping[str, str], tasks: Sequence[str]
) -> list[dict[str, object]]:
    """One row per task x metric x pair: both means, stds, the mean difference and the p-value.

    ``pairs`` maps a method (e.g. ``rmtl-ple``) to the method it is compared with (``ple``).
    """
    rows = []
    for method, baseline in pairs.items():
        for task in tasks:
            for metric in METRICS:
                a = [seed[task][metric] for seed in results[method]]
                b = [seed[task][metric] for seed in results[baseline]]
                rows.append(
                    {
                        "method": method,
                        "baseline": baseline,
                        "task": task,
                        "metric": metric,
                        "seeds": len(a),
                        "method_mean": float(np.mean(a)),
                        "method_std": float(np.std(a, ddof=1)) if len(a) > 1 else 0.0,
                        "baseline_mean": float(np.mean(b)),
                        "baseline_std": float(np.std(b, ddof=1)) if len(b) > 1 else 0.0,
                        "mean_diff": float(np.mean(np.subtract(a, b))),
                        "p_value": paired_p_value(a, b),
                    }
                )
    return rows


def comparison_markdown(rows: Sequence[Mapping[str, object]], alpha: float = 0.05) -> str:
    """Markdown table of ``comparison_rows``; ``*`` marks p < alpha."""
    lines = [
        "| task | metric | baseline | mean ± std | method | mean ± std | diff | p (paired t) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        p = r["p_value"]
        mark = "*" if p == p and p < alpha else ""
        lines.append(
            f"| {r['task']} | {METRIC_LABELS[r['metric']]} | {r['baseline']} | "
            f"{r['baseline_mean']:.4f} ± {r['baseline_std']:.4f} | {r['method']} | "
            f"{r['method_mean']:.4f} ± {r['method_std']:.4f} | {r['mean_diff']:+.4f}{mark} | "
            f"{'nan' if p != p else f'{p:.3g}'} |"
        )
    return "\n".join(lines)
