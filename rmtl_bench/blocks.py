"""The benchmark's balancers block: RMTL against the adaptive loss balancers, in two protocols.

- ``scratch``: each weighting trains the backbone from scratch, as Table 1 trains its baselines
  (``equal`` is the plain backbone); RMTL is the whole method (pretrain, critics, polish).
- ``polish``: each weighting retrains the same pretrained backbone that RMTL polishes, under
  RMTL's polish schedule, without critic weights (``weight_variant="none"``); the only
  difference from RMTL is the weighting.

PLE on every dataset in both protocols; ESMM, whose only shared parameters are its embeddings,
on the RetailRocket data in the polish protocol. One row per (panel, method, seed, task).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from agents.weighting import WEIGHTINGS
from rmtl_bench.cells import Cells
from rmtl_bench.studies import Variant, knob_dataset

RMTL_METHOD = "rmtl"
BLOCK_METHODS = [*WEIGHTINGS, RMTL_METHOD]


@dataclass(frozen=True)
class Panel:
    """One comparison: a dataset, a protocol and the backbone every method trains."""

    dataset: str
    protocol: str  # "scratch" or "polish"
    backbone: str

    @property
    def label(self) -> str:
        return f"{self.dataset} {self.backbone.upper()} {self.protocol}"


def panels(datasets: list[str]) -> list[Panel]:
    """The block's panels for ``datasets``, in run order (the polish panels first: they are the
    cheaper runs and the direct comparison with RMTL)."""
    out = []
    for dataset in datasets:
        out += [Panel(dataset, "polish", "ple"), Panel(dataset, "scratch", "ple")]
        if dataset.startswith("retailrocket"):
            out.append(Panel(dataset, "polish", "esmm"))
    return out


def polish_variant(backbone: str, weighting: str) -> Variant:
    """The polish-protocol cell of ``weighting``: the pretrained backbone retrained with that
    weighting and no critic weights (the critics of the RMTL cell are loaded but unused)."""
    return Variant(
        {"method": weighting}, backbone, f"{backbone}-polish-{weighting}", backbone,
        {"weight_variant": "none", "polish_weighting": weighting},
    )  # fmt: skip


def cell_folder(cells: Cells, panel: Panel, seed: int, method: str) -> Path:
    """The run folder of one method in one panel and seed."""
    if method == RMTL_METHOD:
        name = f"rmtl-{panel.backbone}"
    elif panel.protocol == "polish":
        name = polish_variant(panel.backbone, method).cell
    else:
        name = cells.scratch_name(panel.backbone, method)
    return cells.folder(panel.dataset, seed, name)


def cell_metrics(cells: Cells, panel: Panel, seed: int, method: str) -> dict:
    """``{task: metrics}`` of one method in one panel and seed, running the cell if needed."""
    dataset, backbone = panel.dataset, panel.backbone
    if method == RMTL_METHOD:
        return cells.rmtl(dataset, seed, Variant({}, backbone, f"rmtl-{backbone}"))
    if panel.protocol == "polish":
        return cells.rmtl(dataset, seed, polish_variant(backbone, method))
    return cells.scratch(dataset, seed, backbone, method)


def panel_rows(
    cells: Cells, panel: Panel, seed: int, methods: list[str], seconds, **labels
) -> list[dict]:
    """One row per method and task of a panel's seed (running missing cells): ``labels``, the
    method, seed, task, the test metrics and the cell's wall time (``seconds(folder)``)."""
    return [
        {**labels, "method": method, "seed": seed, "task": task, **metrics,
         "cell_seconds": seconds(cell_folder(cells, panel, seed, method))}
        for method in methods
        for task, metrics in cell_metrics(cells, panel, seed, method).items()
    ]  # fmt: skip


def block_frame(
    cells: Cells, datasets: list[str], methods: list[str], seeds: list[int], seconds
) -> pd.DataFrame:
    """The per-seed rows of every panel (running missing cells; under ``--report-only`` a
    missing one raises ``MissingCell``)."""
    rows = []
    for seed in seeds:
        for panel in panels(datasets):
            labels = {"dataset": panel.dataset, "protocol": panel.protocol,
                      "backbone": panel.backbone}  # fmt: skip
            rows += panel_rows(cells, panel, seed, methods, seconds, **labels)
    return pd.DataFrame(rows)


def summary_frame(rows: pd.DataFrame, paired_p) -> pd.DataFrame:
    """Per panel, method and task: mean and std over seeds of each metric, the paired t-test
    p-values and mean differences against ``equal`` and against RMTL, and the mean cell time."""
    out = []
    keys = ["dataset", "protocol", "backbone"]
    for panel_key, panel in rows.groupby(keys, sort=False):
        for task, by_task in panel.groupby("task", sort=False):
            table = {m: g.sort_values("seed") for m, g in by_task.groupby("method", sort=False)}
            for method, g in table.items():
                row = dict(zip(keys, panel_key, strict=True)) | {
                    "method": method, "task": task, "seeds": len(g),
                    "cell_seconds": float(g["cell_seconds"].mean()),
                }  # fmt: skip
                for metric in ("auc", "logloss", "s_logloss"):
                    values = g[metric].to_numpy()
                    row[f"{metric}_mean"] = float(values.mean())
                    row[f"{metric}_std"] = float(values.std(ddof=1)) if len(values) > 1 else 0.0
                    for other in ("equal", RMTL_METHOD):
                        if other in table and other != method:
                            base = table[other][metric].to_numpy()
                            row[f"{metric}_diff_vs_{other}"] = float(np.mean(values - base))
                            row[f"{metric}_p_vs_{other}"] = paired_p(values, base)
                out.append(row)
    return pd.DataFrame(out)


# --- When does weighting matter? The twin's knobs swept -----------------------------------------

SWEEPS = {"conflict": (0.0, 0.5, 0.9), "noise": (0.0, 0.5, 0.9)}
"""Each knob's levels (``rmtl_env.data.synthetic.TWIN_KNOBS``); 0 is the standard twin, whose
cells the balancers block shares."""
SWEEP_DATASET = "retailrocket-synthetic"


def sweep_panels(knob: str) -> list[tuple[float, Panel]]:
    """``(level, panel)``: PLE polished on the RetailRocket twin at each level of ``knob``."""
    return [(level, Panel(knob_dataset(SWEEP_DATASET, knob, level), "polish", "ple"))
            for level in SWEEPS[knob]]  # fmt: skip


def sweep_frame(cells: Cells, knob: str, methods: list[str], seeds: list[int], seconds):
    """Per-seed rows of the sweep of ``knob`` (a ``level`` column), running missing cells."""
    rows = []
    for level, panel in sweep_panels(knob):
        for seed in seeds:
            rows += panel_rows(cells, panel, seed, methods, seconds, knob=knob, level=level)
    return pd.DataFrame(rows)


def sweep_gains(rows: pd.DataFrame, paired_p) -> pd.DataFrame:
    """Per level, method and task: the mean AUC and its paired gain over equal weighting (mean,
    std over seeds, p-value)."""
    out = []
    for (level, task), group in rows.groupby(["level", "task"], sort=False):
        equal = group[group.method == "equal"].sort_values("seed")
        for method, g in group.groupby("method", sort=False):
            g = g.sort_values("seed")
            gain = g["auc"].to_numpy() - equal["auc"].to_numpy()
            out.append({
                "level": level, "task": task, "method": method, "seeds": len(g),
                "auc_mean": float(g["auc"].mean()), "gain_mean": float(gain.mean()),
                "gain_std": float(gain.std(ddof=1)) if len(gain) > 1 else 0.0,
                "p_value": float("nan") if method == "equal" else paired_p(g["auc"], equal["auc"]),
                "logloss_mean": float(g["logloss"].mean()),
            })  # fmt: skip
    return pd.DataFrame(out)
