"""Result tables: one run's metrics (long frame, plain text) and multi-seed tables (mean ± std,
paired t-tests with scipy)."""

from __future__ import annotations

import datetime
import math
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import pandas as pd
from scipy import stats

METRICS = ("auc", "logloss", "s_logloss")
METRIC_LABELS = {"auc": "AUC", "logloss": "Logloss", "s_logloss": "s-Logloss"}
TaskMetrics = Mapping[str, Mapping[str, float]]

SeedResults = Mapping[str, Sequence[Mapping[str, Mapping[str, float]]]]
"""``{method: [per-seed {task: {metric: value}}]}``, seeds in the same order for every method."""


def metrics_frame(results: Mapping[str, TaskMetrics]) -> pd.DataFrame:
    """Long table ``method, task, auc, logloss, s_logloss`` from ``{method: {task: metrics}}``."""
    rows = [
        {"method": method, "task": task, **{m: metrics[task][m] for m in METRICS}}
        for method, metrics in results.items()
        for task in metrics
    ]
    return pd.DataFrame(rows, columns=["method", "task", *METRICS])


def format_table(results: Mapping[str, TaskMetrics], tasks: Sequence[str]) -> str:
    """A plain-text table: one row per method, AUC / Logloss / s-Logloss per task."""
    headers = ["method"] + [f"{t}:{METRIC_LABELS[m]}" for t in tasks for m in METRICS]
    rows = [
        [method] + [_fmt(metrics[t][m]) for t in tasks for m in METRICS]
        for method, metrics in results.items()
    ]
    widths = [max(len(str(r[i])) for r in [headers, *rows]) for i in range(len(headers))]
    lines = [
        "  ".join(
            str(c).rjust(w) if i else str(c).ljust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        )
        for row in [headers, *rows]
    ]
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(lines)


def _fmt(value: float) -> str:
    return "nan" if value is None or math.isnan(value) else f"{value:.4f}"


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


def per_seed_frame(
    results: Mapping[str, Mapping[str, Sequence[TaskMetrics]]],
    used_seeds: Mapping[str, Sequence[int]],
    seconds: Callable[[str, int, str], float],
) -> pd.DataFrame:
    """One row per dataset, seed, method and task: the cell's test metrics and its wall time
    (``seconds(dataset, seed, method)``), the numbers behind every mean, std and t-test."""
    rows = []
    for dataset, by_method in results.items():
        for method, per_seed in by_method.items():
            for seed, tasks in zip(used_seeds[dataset], per_seed, strict=True):
                cell = seconds(dataset, seed, method)
                for task, metrics in tasks.items():
                    rows.append({"dataset": dataset, "seed": seed, "method": method,
                                 "task": task, **metrics, "cell_seconds": cell})  # fmt: skip
    return pd.DataFrame(rows)


def paired_markdown(frame: pd.DataFrame, key: str, pairs: Sequence[tuple[str, str]]) -> str:
    """Paired t-tests over seeds between rows of a study ``frame`` (``key`` names the variant
    column; ``pairs`` are ``(method, baseline)`` values of it)."""
    results = {
        variant: [
            {t: dict(g.loc[g["task"] == t, list(METRICS)].iloc[0]) for t in g["task"]}
            for _, g in group.groupby("seed", sort=True)
        ]
        for variant, group in frame.groupby(key, sort=False)
    }
    tasks = list(dict.fromkeys(frame["task"]))
    rows = [row for pair in pairs for row in comparison_rows(results, dict([pair]), tasks)]
    return (
        "\nPaired comparisons over seeds (`*`: two-sided paired t-test p < 0.05):\n\n"
        + comparison_markdown(rows)
        + "\n"
    )


def utc_now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")


def duration(seconds: float) -> str:
    if seconds < 3600:
        return f"{seconds / 60:.1f} min"
    return f"{int(seconds // 3600)} h {int(seconds % 3600 // 60):02d} min"


def provenance_markdown(
    *,
    args,
    env: dict,
    folders: dict[str, list],
    seconds: dict[str, float],
    threads: dict[str, list[int]],
    wall: float,
    ran: int,
    ran_seconds: float,
    reused: int,
) -> str:
    """The benchmark's Markdown footer: command (``args``), date, machine (``env``), the
    invocation's ``wall`` time with the cells it ``ran`` (their ``ran_seconds``) and ``reused``,
    and per dataset the cells behind the numbers (``folders``) with their recorded wall time
    (``seconds``) and torch ``threads``."""
    lines = [
        "## Provenance",
        "",
        f"- Command: `{args.command}` (profile `{args.profile}`)",
        f"- Written: {utc_now()}",
        f"- Machine: {env['cpu']}, {env['logical_cpus']} logical CPUs, {env['platform']}; "
        f"Python {env['python']}, torch {env['torch']}, device `{args.device}`",
        f"- This invocation: {duration(wall)} wall time, {args.workers} worker(s); ran {ran} "
        f"cells ({duration(ran_seconds)} of cell time), reused {reused} finished cells",
    ]
    if args.profile == "quick":
        lines.append(
            "- **A smoke run, not a result**: the quick profile trains tiny networks for two "
            "epochs on the tiny twins (about 2,200 training rows) to check that every stage "
            "runs; its metrics are not comparable with the paper's or the full profile's, and "
            "AUCs below 0.5 are expected."
        )
    for dataset, cell_folders in folders.items():
        seeds = sorted({int(f.parent.name.removeprefix("seed")) for f in cell_folders})
        lines.append(
            f"- {dataset}: {len(cell_folders)} cells (seeds {seeds}), "
            f"{duration(seconds[dataset])} of recorded cell wall time; torch threads per cell: "
            f"{', '.join(map(str, threads[dataset]))}"
        )
    return "\n".join(lines) + "\n"


def balancers_markdown(summary: pd.DataFrame, seeds: Sequence[int], alpha: float = 0.05) -> str:
    """The balancers block as Markdown: per panel, one row per method with AUC, Logloss and
    s-Logloss per task (mean ± std over ``seeds``), each AUC's difference from ``equal`` and
    from RMTL (``*``: paired t-test p < ``alpha``), and the mean wall time of a run."""

    def diff(row, metric: str, other: str) -> str:
        d, p = row.get(f"{metric}_diff_vs_{other}"), row.get(f"{metric}_p_vs_{other}")
        if d is None or d != d:
            return "·"
        return f"{d:+.4f}{'*' if p == p and p < alpha else ''}"

    lines = [
        "# RMTL against the adaptive loss balancers",
        "",
        f"Test split, mean ± std over model seeds {list(seeds)}. `Δ eq` and `Δ RMTL`: the mean "
        "paired difference in AUC from equal weighting and from RMTL (`*`: two-sided paired "
        f"t-test p < {alpha}); `s`: mean wall time of one run of the cell.",
    ]
    keys = ["dataset", "protocol", "backbone"]
    for (dataset, protocol, backbone), panel in summary.groupby(keys, sort=False):
        tasks = list(dict.fromkeys(panel["task"]))
        lines += ["", f"## {dataset}: {backbone.upper()}, {protocol}", ""]
        head = ["method"]
        for t in tasks:
            head += [f"{t} AUC", "Δ eq", "Δ RMTL", f"{t} Logloss", f"{t} s-Logloss"]
        lines += ["| " + " | ".join([*head, "s"]) + " |", "|" + "---|" * (len(head) + 1)]
        for method, rows in panel.groupby("method", sort=False):
            by_task = {r["task"]: r for r in rows.to_dict("records")}
            cells = [method]
            for t in tasks:
                r = by_task[t]
                cells += [
                    f"{r['auc_mean']:.4f} ± {r['auc_std']:.4f}",
                    diff(r, "auc", "equal"),
                    diff(r, "auc", "rmtl"),
                    f"{r['logloss_mean']:.4f} ± {r['logloss_std']:.4f}",
                    f"{r['s_logloss_mean']:.4f} ± {r['s_logloss_std']:.4f}",
                ]
            cells.append(f"{rows['cell_seconds'].iloc[0]:.0f}")
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def sweep_markdown(
    gains: pd.DataFrame, knob: str, seeds: Sequence[int], alpha: float = 0.05
) -> str:
    """A knob sweep as Markdown: per task, one row per method and one column per level with the
    mean test AUC and its paired gain over equal weighting (``*``: p < ``alpha``)."""
    levels = sorted(set(gains["level"]))
    lines = [
        f"# When does weighting matter? The `{knob}` knob of the RetailRocket twin",
        "",
        f"PLE polished from the same pretrained backbone, test split, model seeds {list(seeds)}. "
        "Each cell: mean AUC, then its mean paired gain over equal weighting "
        f"(`*`: two-sided paired t-test p < {alpha}).",
    ]
    for task, by_task in gains.groupby("task", sort=False):
        lines += ["", f"## {task}", "", "| method | " + " | ".join(
            f"{knob} = {level:g}" for level in levels) + " |",
            "|---|" + "---|" * len(levels)]  # fmt: skip
        for method, rows in by_task.groupby("method", sort=False):
            by_level = {r["level"]: r for r in rows.to_dict("records")}
            cells = []
            for level in levels:
                r = by_level.get(level)
                if r is None:
                    cells.append("·")
                    continue
                p = r["p_value"]
                mark = "*" if p == p and p < alpha else ""
                gain = "" if method == "equal" else f" ({r['gain_mean']:+.4f}{mark})"
                cells.append(f"{r['auc_mean']:.4f}{gain}")
            lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
