"""Multi-seed result tables: mean ± std per cell and paired t-tests (scipy) between methods."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
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


def table1_frame(
    results: Mapping[str, SeedResults],
    pairs: Mapping[str, str],
    oracles: Mapping[str, Mapping[str, Mapping[str, float]]] | None = None,
    alpha: float = 0.05,
) -> pd.DataFrame:
    """Long table of Table 1: one row per dataset x task x metric x method.

    Args:
        results: ``{dataset: {method: [per-seed {task: {metric: value}}]}}``.
        pairs: ``{rmtl method: its backbone}``; those rows get the paired t-test p-value.
        oracles: ``{dataset: {task: {metric: value}}}`` for synthetic data (method ``oracle``).
        alpha: significance level of the ``significant`` column.
    """
    rows = []
    for dataset, by_method in results.items():
        tasks = list(next(iter(by_method.values()))[0])
        for task in tasks:
            for metric in METRICS:
                for method, seeds in by_method.items():
                    values = [seed[task][metric] for seed in seeds]
                    p = float("nan")
                    if method in pairs and pairs[method] in by_method:
                        base = [seed[task][metric] for seed in by_method[pairs[method]]]
                        p = paired_p_value(values, base)
                    rows.append(
                        {
                            "dataset": dataset,
                            "task": task,
                            "metric": metric,
                            "method": method,
                            "mean": float(np.mean(values)),
                            "std": float(np.std(values, ddof=1))
                            if len(values) > 1
                            else float("nan"),
                            "seeds": len(values),
                            "p_value": p,
                            "significant": bool(p < alpha),
                        }
                    )
                if oracles and dataset in oracles:
                    rows.append(
                        {
                            "dataset": dataset,
                            "task": task,
                            "metric": metric,
                            "method": "oracle",
                            "mean": oracles[dataset][task][metric],
                            "std": float("nan"),
                            "seeds": 1,
                            "p_value": float("nan"),
                            "significant": False,
                        }
                    )
    return pd.DataFrame(rows)


def table1_markdown(frame: pd.DataFrame, seeds: Sequence[int] | Mapping[str, Sequence[int]]) -> str:
    """Paper layout: rows dataset x task x metric, one column per method, mean ± std over seeds
    (one list for all datasets, or one per dataset); ``*`` marks an RMTL variant whose difference
    from its backbone has p < 0.05."""
    methods = list(dict.fromkeys(frame["method"]))
    if isinstance(seeds, Mapping):
        over = "; ".join(f"{d}: seeds {list(s)}" for d, s in seeds.items())
    else:
        over = f"seeds {list(seeds)}"
    lines = [
        f"Mean ± std over {over}. `*`: paired two-sided t-test vs the backbone, p < 0.05.",
        "",
        "| dataset | task | metric | " + " | ".join(methods) + " |",
        "|---|---|---|" + "---|" * len(methods),
    ]
    for (dataset, task, metric), group in frame.groupby(["dataset", "task", "metric"], sort=False):
        by_method = group.set_index("method")
        cells = []
        for method in methods:
            if method not in by_method.index:
                cells.append("")
                continue
            row = by_method.loc[method]
            text = (
                f"{row['mean']:.4f}"
                if np.isnan(row["std"])
                else f"{row['mean']:.4f} ± {row['std']:.4f}"
            )
            cells.append(text + ("*" if row["significant"] else ""))
        arrow = "↑" if metric == "auc" else "↓"
        lines.append(
            f"| {dataset} | {task} | {METRIC_LABELS[metric]} {arrow} | " + " | ".join(cells) + " |"
        )
    return "\n".join(lines) + "\n"


def study_markdown(frame: pd.DataFrame, study: str) -> str:
    """Summary table of an ablation, transfer or lambda study (means ± std over seeds)."""
    if study == "transfer":
        parts = []
        for task, group in frame.groupby("task", sort=False):
            matrix = group.pivot_table(
                index="source", columns="target", values="auc_delta", aggfunc="mean"
            )
            header = "| critic source \\ target | " + " | ".join(matrix.columns) + " |"
            body = [
                f"| {source} | " + " | ".join(f"{v:+.4f}" for v in row) + " |"
                for source, row in matrix.iterrows()
            ]
            parts.append(
                f"AUC delta vs each target's own backbone, task {task}\n\n"
                + "\n".join([header, "|---|" + "---|" * len(matrix.columns), *body])
            )
        return "\n\n".join(parts) + "\n"
    key = "lambda" if study == "lambda" else "variant"
    summary = frame.groupby([key, "task"], sort=False)[list(METRICS)].agg(["mean", "std"])
    lines = [
        f"| {key} | task | " + " | ".join(METRIC_LABELS[m] for m in METRICS) + " |",
        "|---|---|" + "---|" * len(METRICS),
    ]
    for (value, task), row in summary.iterrows():
        cells = [
            f"{row[(m, 'mean')]:.4f} ± {0.0 if np.isnan(row[(m, 'std')]) else row[(m, 'std')]:.4f}"
            for m in METRICS
        ]
        lines.append(f"| {value} | {task} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
