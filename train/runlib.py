"""Run folders, result tables and plots shared by the scripts in ``train/``.

A run folder holds ``config.json`` (written first), ``metrics.json`` and ``metrics.csv`` (one row
per method x task), ``checkpoints/`` and PNG plots. Every write is atomic.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import platform
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # scripts run headless; never open windows
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402

from agents.runtime import denormals_flushed  # noqa: E402
from agents.trainer import TrainConfig  # noqa: E402
from rmtl_env.data import SessionDataset, SplitData, load_dataset  # noqa: E402
from rmtl_env.data.io import atomic_write_bytes  # noqa: E402

METRICS = ("auc", "logloss", "s_logloss")
METRIC_LABELS = {"auc": "AUC", "logloss": "Logloss", "s_logloss": "s-Logloss"}
TaskMetrics = Mapping[str, Mapping[str, float]]


def default_run_dir(script: str, dataset: str, seed: int) -> Path:
    """``runs/<script>/<dataset>-seed<seed>-<UTC time>`` under the working directory."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    return Path("runs") / script / f"{dataset}-seed{seed}-{stamp}"


def write_json(path: Path, payload: object) -> None:
    text = json.dumps(payload, indent=2, sort_keys=False, default=_json_default)
    atomic_write_bytes(Path(path), (text + "\n").encode())


def json_roundtrip(payload: object) -> object:
    """``payload`` as it reads back from JSON (tuples become lists, paths strings)."""
    return json.loads(json.dumps(payload, default=_json_default))


def read_json(path: Path) -> dict:
    return json.loads(Path(path).read_text())


def _json_default(value: object) -> object:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, tuple | set):
        return list(value)
    if hasattr(value, "item"):
        return value.item()
    raise TypeError(f"cannot write {type(value).__name__} to JSON")


def environment_info() -> dict[str, str | int]:
    """The software and hardware a run used, stored in ``config.json``."""
    return {
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "platform": platform.platform(),
        "cpu": cpu_name(),
        "logical_cpus": os.cpu_count() or 0,
        "torch_threads": torch.get_num_threads(),
        "flush_denormal": denormals_flushed(),
    }


def cpu_name() -> str:
    """The CPU's model name from ``/proc/cpuinfo``, else what ``platform`` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def write_config(run_dir: Path, config: Mapping[str, object]) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    write_json(run_dir / "config.json", {**config, "environment": environment_info()})


def metrics_frame(results: Mapping[str, TaskMetrics]) -> pd.DataFrame:
    """Long table ``method, task, auc, logloss, s_logloss`` from ``{method: {task: metrics}}``."""
    rows = [
        {"method": method, "task": task, **{m: metrics[task][m] for m in METRICS}}
        for method, metrics in results.items()
        for task in metrics
    ]
    return pd.DataFrame(rows, columns=["method", "task", *METRICS])


def write_metrics(
    run_dir: Path, results: Mapping[str, TaskMetrics], extra: dict | None = None
) -> None:
    """``metrics.json`` (nested, plus ``extra``) and ``metrics.csv`` (long table)."""
    write_json(run_dir / "metrics.json", {"test": results, **(extra or {})})
    csv = metrics_frame(results).to_csv(index=False, float_format="%.6f")
    atomic_write_bytes(run_dir / "metrics.csv", csv.encode())


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


def add_run_arguments(
    parser: argparse.ArgumentParser | argparse._ArgumentGroup, script: str
) -> None:
    """The data, seed, device and output flags every script shares."""
    parser.add_argument(
        "--dataset",
        default="retailrocket-synthetic",
        help="catalog name (retailrocket, kuairand-1k, *-synthetic), a processed "
        "folder or an own-log file (default: the small RetailRocket twin)",
    )
    parser.add_argument("--scale", default="small", help="synthetic twin size: tiny, small or full")
    parser.add_argument("--data-dir", default=None, help="folder of the raw files (real datasets)")
    parser.add_argument(
        "--seed", type=int, default=0, help="seeds model init, shuffling, dropout and exploration"
    )
    parser.add_argument(
        "--data-seed",
        type=int,
        default=0,
        help="seed of the synthetic twin (the same data for every --seed)",
    )
    parser.add_argument("--device", default="auto", help="auto (CUDA if available), cpu or cuda")
    parser.add_argument(
        "--run-dir",
        type=Path,
        default=None,
        help=f"output folder (default runs/{script}/<dataset>-seed<S>-<time>)",
    )
    parser.add_argument("--no-progress", action="store_true", help="hide the tqdm bars")


def add_backbone_arguments(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """Backbone dimension flags (defaults: the paper's)."""
    parser.add_argument("--embed-dim", type=int, default=128, help="embedding size per field")
    parser.add_argument(
        "--bottom-dims",
        type=int,
        nargs="+",
        default=[512, 256],
        help="bottom / expert / PLE level sizes",
    )
    parser.add_argument("--tower-dims", type=int, nargs="+", default=[128, 64], help="tower sizes")


def add_training_arguments(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """Supervised training flags (defaults: the paper's); ``train_config`` reads them."""
    parser.add_argument(
        "--epochs",
        type=int,
        default=50,
        help="maximum epochs of each training run (early stopping ends sooner)",
    )
    parser.add_argument(
        "--patience",
        type=int,
        default=2,
        help="epochs without a mean validation AUC gain before stopping",
    )
    parser.add_argument("--batch-size", type=int, default=2048, help="training minibatch")
    parser.add_argument("--lr", type=float, default=1e-3, help="backbone Adam learning rate")
    parser.add_argument("--weight-decay", type=float, default=1e-6, help="Adam weight decay")
    parser.add_argument(
        "--no-shuffle",
        action="store_true",
        help="keep the training rows in session and time order every epoch (the official code)",
    )


def train_config(args: argparse.Namespace) -> TrainConfig:
    """``TrainConfig`` from ``add_training_arguments`` flags and ``--seed``."""
    return TrainConfig(
        lr=args.lr,
        weight_decay=args.weight_decay,
        batch_size=args.batch_size,
        max_epochs=args.epochs,
        patience=args.patience,
        shuffle=not args.no_shuffle,
        seed=args.seed,
    )


def model_overrides(args: argparse.Namespace) -> dict:
    """``ModelConfig`` overrides from ``add_backbone_arguments`` flags."""
    return {
        "embed_dim": args.embed_dim,
        "bottom_dims": tuple(args.bottom_dims),
        "tower_dims": tuple(args.tower_dims),
    }


def run_data_config(args: argparse.Namespace) -> dict:
    """The data part of a run's ``config.json``."""
    return {
        "dataset": args.dataset,
        "scale": args.scale,
        "data_dir": args.data_dir,
        "data_seed": args.data_seed,
        "seed": args.seed,
    }


def load_splits(args: argparse.Namespace) -> tuple[SessionDataset, SplitData, SplitData, SplitData]:
    """The dataset named by ``add_run_arguments`` flags and its train, val and test splits."""
    synthetic = args.dataset.endswith("synthetic")
    params = {"scale": args.scale, "seed": args.data_seed} if synthetic else {}
    dataset = load_dataset(args.dataset, data_dir=args.data_dir, **params)
    return dataset, *(dataset.split(name) for name in ("train", "val", "test"))


def attribute_docs(cls: type) -> dict[str, str]:
    """``{field: text}`` from the ``Attributes:`` section of a dataclass docstring (a line
    ``a, b: text`` documents both fields; continuation lines are joined)."""
    docs: dict[str, str] = {}
    names: list[str] = []
    section = (cls.__doc__ or "").split("Attributes:", 1)[-1]
    for line in section.splitlines():
        text = line.strip()
        head, sep, rest = text.partition(": ")
        candidates = [n.strip() for n in head.split(",")]
        if sep and all(n.isidentifier() for n in candidates):
            names = candidates
            for name in names:
                docs[name] = rest
        elif text and names:
            for name in names:
                docs[name] += " " + text
    return docs


def add_dataclass_arguments(
    parser: argparse.ArgumentParser | argparse._ArgumentGroup,
    cls: type,
    skip: Sequence[str] = (),
    prefix: str = "",
) -> list[str]:
    """One ``--<prefix><field>`` flag per field of dataclass ``cls`` (default: the field's
    default, help: its docstring line); returns the argparse destinations, in field order."""
    docs, dests = attribute_docs(cls), []
    defaults = cls()
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        default = getattr(defaults, f.name)
        flag = "--" + (prefix + f.name).replace("_", "-")
        kwargs: dict = {"default": default, "help": f"{docs.get(f.name, '')} (default {default})"}
        if isinstance(default, bool):
            kwargs["action"] = argparse.BooleanOptionalAction
        elif isinstance(default, tuple):
            kwargs.update(type=type(default[0]), nargs="+")
        else:
            kwargs["type"] = type(default)
        action = parser.add_argument(flag, **kwargs)
        dests.append(action.dest)
    return dests


def dataclass_from_args(cls: type, args: argparse.Namespace, prefix: str = "", **fixed):
    """An instance of ``cls`` from the flags of :func:`add_dataclass_arguments`."""
    values = {
        f.name: getattr(args, prefix + f.name)
        for f in dataclasses.fields(cls)
        if hasattr(args, prefix + f.name)
    }
    return cls(**{**values, **fixed})
