"""Every figure the scripts and the benchmark write, as PNG (matplotlib, headless)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # scripts run headless; never open windows
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from rmtl_bench.tables import METRIC_LABELS, METRICS, TaskMetrics  # noqa: E402


def save_figure(fig: plt.Figure, path: Path) -> None:
    """Save a matplotlib figure as PNG atomically and close it."""
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=120, bbox_inches="tight")
    plt.close(fig)
    tmp.replace(path)


def plot_learning_curves(
    histories: Mapping[str, Sequence[Mapping[str, float]]], path: Path
) -> None:
    """Training loss and validation mean AUC per epoch, one line per model."""
    fig, (ax_loss, ax_auc) = plt.subplots(1, 2, figsize=(11, 4))
    for name, history in histories.items():
        epochs = [h["epoch"] for h in history]
        ax_loss.plot(
            epochs, [h.get("train_loss", math.nan) for h in history], marker="o", label=name
        )
        ax_auc.plot(epochs, [h["val_auc"] for h in history], marker="o", label=name)
    ax_loss.set(xlabel="epoch", ylabel="training loss (mean BCE over tasks)", title="Training loss")
    ax_auc.set(xlabel="epoch", ylabel="mean validation AUC", title="Validation AUC")
    ax_auc.legend(fontsize=8)
    for ax in (ax_loss, ax_auc):
        ax.grid(alpha=0.3)
    save_figure(fig, path)


def plot_metric_comparison(
    results: Mapping[str, TaskMetrics], tasks: Sequence[str], path: Path
) -> None:
    """Grouped bars: one panel per task and metric, one bar per method."""
    fig, axes = plt.subplots(
        len(tasks), len(METRICS), figsize=(4 * len(METRICS), 3 * len(tasks)), squeeze=False
    )
    methods = list(results)
    for row, task in enumerate(tasks):
        for col, metric in enumerate(METRICS):
            ax = axes[row][col]
            values = [results[m][task][metric] for m in methods]
            ax.bar(range(len(methods)), values, color=plt.cm.tab10.colors[: len(methods)])
            ax.set_xticks(range(len(methods)), methods, rotation=30, ha="right", fontsize=8)
            finite = [v for v in values if not math.isnan(v)]
            if finite:
                low, high = min(finite), max(finite)
                pad = (high - low) * 0.5 or abs(high) * 0.01 or 0.01
                ax.set_ylim(low - pad, high + pad)
            ax.set_title(f"{task} {METRIC_LABELS[metric]}", fontsize=10)
    fig.tight_layout()
    save_figure(fig, path)


def plot_bars(by_method: dict[str, list], task: str, path: Path, title: str) -> None:
    """Mean ± std bars per method; the axis fits the methods that are close together, so a
    collapsed method (D-PLE on the twins) does not flatten the others: its bar runs off the axis
    and its mean is written at the edge."""
    fig, axes = plt.subplots(1, len(METRICS), figsize=(15, 3.8))
    methods = list(by_method)
    for ax, metric in zip(axes, METRICS, strict=True):
        values = np.array([[seed[task][metric] for seed in by_method[m]] for m in methods])
        mean, std = values.mean(1), values.std(1)
        ax.bar(
            range(len(methods)),
            mean,
            yerr=std,
            capsize=3,
            color=[plt.cm.tab10.colors[i % 10] for i in range(len(methods))],
        )
        ax.set_xticks(range(len(methods)), methods, rotation=40, ha="right", fontsize=8)
        inside = ~off_scale(mean)
        low, high = (mean - std)[inside].min(), (mean + std)[inside].max()
        pad = (high - low) * 0.3 + 1e-4
        ax.set_ylim(low - pad, high + pad)
        for i in np.flatnonzero((mean < low - pad) | (mean > high + pad)):
            edge = low - pad * 0.9 if mean[i] < low else high + pad * 0.9
            arrow = "↓" if mean[i] < low else "↑"
            ax.text(
                i,
                edge,
                f"{arrow}{mean[i]:.3f}",
                ha="center",
                va="center",
                fontsize=7,
                bbox={"facecolor": "white", "edgecolor": "none", "pad": 1},
            )
        ax.set_title(f"{title} {METRIC_LABELS[metric]}")
    save_figure(fig, path)


def off_scale(means: np.ndarray, spread: float = 8.0) -> np.ndarray:
    """Means more than ``spread`` median absolute deviations from the median of all methods."""
    deviation = np.abs(means - np.median(means))
    return deviation > spread * max(float(np.median(deviation)), 1e-9)


def plot_lambda(frame: pd.DataFrame, path: Path) -> None:
    """AUC and Logloss (rows) of each task (columns) against lambda, mean ± std over seeds; each
    panel has its own y axis, since the tasks' levels differ far more than lambda moves them."""
    tasks = list(dict.fromkeys(frame["task"]))
    fig, axes = plt.subplots(
        2, len(tasks), figsize=(5.5 * len(tasks), 7), squeeze=False, layout="constrained"
    )
    for row, metric in enumerate(("auc", "logloss")):
        for ax, task in zip(axes[row], tasks, strict=True):
            stats_by_lambda = frame[frame["task"] == task].groupby("lambda")[metric]
            mean, std = stats_by_lambda.mean(), stats_by_lambda.std().fillna(0.0)
            ax.errorbar(mean.index, mean.values, yerr=std.values, marker="o", capsize=3)
            label = METRIC_LABELS[metric]
            ax.set(xlabel="lambda", ylabel=label, title=f"RMTL-PLE {task} {label} vs lambda")
            ax.grid(alpha=0.3)
    save_figure(fig, path)


def plot_transfer(frame: pd.DataFrame, path: Path) -> None:
    """One heatmap per task: mean AUC delta of each (critic source, target backbone) pair."""
    tasks = list(dict.fromkeys(frame["task"]))
    fig, axes = plt.subplots(
        1, len(tasks), figsize=(6 * len(tasks), 4), squeeze=False, layout="constrained"
    )
    for ax, task in zip(axes[0], tasks, strict=True):
        matrix = frame[frame["task"] == task].pivot_table(
            index="source", columns="target", values="auc_delta", aggfunc="mean"
        )
        limit = max(float(np.abs(matrix.values).max()), 1e-6)
        image = ax.imshow(matrix.values, cmap="RdBu", vmin=-limit, vmax=limit)
        for (i, j), value in np.ndenumerate(matrix.values):
            color = "white" if abs(value) > 0.6 * limit else "black"  # readable on dark cells
            ax.text(j, i, f"{value:+.4f}", ha="center", va="center", fontsize=9, color=color)
        ax.set_xticks(range(len(matrix.columns)), matrix.columns)
        ax.set_yticks(range(len(matrix.index)), matrix.index)
        ax.set(xlabel="target backbone (polished)", ylabel="critics trained with",
               title=f"{task}: AUC delta vs target backbone")  # fmt: skip
        fig.colorbar(image, ax=ax, shrink=0.8)
    save_figure(fig, path)


def plot_critic_training(
    history: Sequence[Mapping[str, float]], tasks: Sequence[str], path: Path
) -> None:
    """RMTL's critic stage: per-task TD loss and mean Q per epoch."""
    frame = pd.DataFrame(history)
    fig, (ax_td, ax_q) = plt.subplots(1, 2, figsize=(11, 4))
    for k, task in enumerate(tasks):
        ax_td.plot(frame["epoch"], frame[f"td_loss_{k}"], marker=".", label=task)
        ax_q.plot(frame["epoch"], frame[f"mean_q_{k}"], marker=".", label=task)
    ax_td.set(xlabel="critic epoch", ylabel="TD loss (MSE)", yscale="log", title="Critic TD loss")
    ax_q.set(xlabel="critic epoch", ylabel="mean Q_k(s, a) on the replay", title="Mean Q per task")
    for ax in (ax_td, ax_q):
        ax.legend()
        ax.grid(alpha=0.3)
    save_figure(fig, path)


def plot_loss_weights(weights: np.ndarray, tasks: Sequence[str], path: Path) -> None:
    """Histogram of the polish's loss weights on the training rows, one panel per task."""
    fig, axes = plt.subplots(1, len(tasks), figsize=(5 * len(tasks), 3.5), squeeze=False)
    for k, task in enumerate(tasks):
        axes[0][k].hist(weights[:, k], bins=60, color=plt.cm.tab10.colors[k])
        axes[0][k].set(
            title=f"{task}: loss weights on train", xlabel="w", ylabel="rows", yscale="log"
        )
    save_figure(fig, path)


def plot_critic_phase(history: list[dict], path: Path) -> None:
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot([h["epoch"] for h in history], [h["critic_loss"] for h in history], marker=".")
    ax.set(xlabel="critic-phase epoch", ylabel="SB3 critic loss (MSE)", yscale="log",
           title="D-PLE critic phase (actor frozen)")  # fmt: skip
    ax.grid(alpha=0.3)
    save_figure(fig, path)


def plot_balancers(rows: pd.DataFrame, path: Path) -> None:
    """AUC per method, mean ± std over seeds: one panel per dataset and task (rows) and per
    protocol and backbone (columns); equal weighting's mean is the dashed line."""
    rows = rows.assign(panel=rows["backbone"].str.upper() + " " + rows["protocol"])
    pairs = list(dict.fromkeys(zip(rows["dataset"], rows["task"], strict=True)))
    columns = list(dict.fromkeys(rows["panel"]))
    methods = list(dict.fromkeys(rows["method"]))
    fig, axes = plt.subplots(
        len(pairs), len(columns), figsize=(4.2 * len(columns), 0.28 * len(methods) * len(pairs)
                                           + 1.2 * len(pairs)),
        squeeze=False, layout="constrained",
    )  # fmt: skip
    for i, (dataset, task) in enumerate(pairs):
        for j, panel in enumerate(columns):
            ax = axes[i, j]
            data = rows[(rows["dataset"] == dataset) & (rows["task"] == task)
                        & (rows["panel"] == panel)]  # fmt: skip
            if data.empty:
                ax.set_axis_off()
                continue
            stats = data.groupby("method", sort=False)["auc"].agg(["mean", "std"])
            stats = stats.reindex([m for m in methods if m in stats.index])
            colours = ["tab:red" if m == "rmtl" else "tab:blue" for m in stats.index]
            ax.errorbar(stats["mean"], range(len(stats)), xerr=stats["std"].fillna(0), fmt="none",
                        ecolor="grey", capsize=2)  # fmt: skip
            ax.scatter(stats["mean"], range(len(stats)), c=colours, zorder=3, s=18)
            if "equal" in stats.index:
                ax.axvline(stats.loc["equal", "mean"], color="grey", ls="--", lw=0.8)
            ax.set_yticks(range(len(stats)), stats.index, fontsize=8)
            ax.invert_yaxis()
            ax.set_title(f"{dataset} {task}: {panel}", fontsize=9)
            ax.set_xlabel("test AUC", fontsize=8)
            ax.tick_params(axis="x", labelsize=7)
    save_figure(fig, path)


def plot_sweep(gains: pd.DataFrame, knob: str, path: Path) -> None:
    """Each method's AUC gain over equal weighting against the knob, mean ± std of the paired
    gain over seeds; one panel per task."""
    tasks = list(dict.fromkeys(gains["task"]))
    fig, axes = plt.subplots(1, len(tasks), figsize=(5 * len(tasks), 3.8), squeeze=False,
                             layout="constrained")  # fmt: skip
    for ax, task in zip(axes[0], tasks, strict=True):
        for method, rows in gains[gains["task"] == task].groupby("method", sort=False):
            rows = rows.sort_values("level")
            ax.errorbar(rows["level"], rows["gain_mean"], yerr=rows["gain_std"], marker="o",
                        capsize=3, label=method, ls="--" if method == "equal" else "-")  # fmt: skip
        ax.axhline(0, color="grey", lw=0.8)
        ax.set_xlabel(f"twin knob: {knob}")
        ax.set_ylabel("test AUC gain over equal")
        ax.set_title(task)
        ax.legend(fontsize=8)
    save_figure(fig, path)


def plot_rl_curves(curves: pd.DataFrame, dataset: str, path: Path) -> None:
    """The validation score along training, mean and seed range per method, one panel per
    ``family`` (online agents against env steps, offline ones against gradient steps; symlog:
    early scores reach thousands below 0)."""
    families = list(dict.fromkeys(curves["family"]))
    fig, axes = plt.subplots(1, len(families), figsize=(6.5 * len(families), 4.2), squeeze=False)
    for ax, family in zip(axes[0], families, strict=True):
        frame = curves[curves["family"] == family]
        for method, m in frame.groupby("method", sort=False):
            by_step = m.groupby("steps")["score"]
            mean = by_step.mean()
            ax.plot(mean.index, mean.values, label=method)
            ax.fill_between(mean.index, by_step.min().values, by_step.max().values, alpha=0.2)
        ax.axhline(0, color="grey", lw=0.8, ls="--")
        ax.axhline(100, color="black", lw=0.8, ls=":")
        ax.set_yscale("symlog", linthresh=100)
        ax.set_xlabel("gradient steps" if "offline" in family else "env steps")
        ax.set_ylabel("normalised score (validation)")
        ax.set_title(f"{dataset}: {family}")
        ax.legend(fontsize=8)
    save_figure(fig, path)
