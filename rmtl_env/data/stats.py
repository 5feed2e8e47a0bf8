"""Per-split statistics of a processed dataset (stored in ``meta.json`` and printed by the CLI)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from rmtl_env.data.dataset import SessionDataset


def split_statistics(dataset: SessionDataset) -> dict[str, dict]:
    """Sessions, impressions, users, items, label rates and mean session length per split; for
    synthetic data also the oracle AUC and Logloss of the true probabilities."""
    from rmtl_env.data.dataset import SPLITS, label_column, true_prob_column

    frame = dataset.frame
    stats: dict[str, dict] = {}
    for name in SPLITS:
        part = frame[frame["split"] == name]
        sessions = int(part["session_id"].nunique())
        entry = {
            "sessions": sessions,
            "impressions": len(part),
            "users": int(part["raw_user_id"].nunique()) if "raw_user_id" in part else None,
            "items": int(part["raw_item_id"].nunique()) if "raw_item_id" in part else None,
            "mean_session_length": float(len(part) / sessions) if sessions else 0.0,
            "label_rate": {t: float(part[label_column(t)].mean()) for t in dataset.tasks},
        }
        if dataset.has_true_probs and len(part):
            entry["oracle"] = {
                t: {
                    **_oracle(
                        part[label_column(t)].to_numpy(), part[true_prob_column(t)].to_numpy()
                    )
                }
                for t in dataset.tasks
            }
        stats[name] = entry
    return stats


def _oracle(labels: np.ndarray, probs: np.ndarray) -> dict[str, float]:
    """AUC (NaN with one class) and mean BCE (probabilities clipped to ``PROB_EPS``) of the true
    probabilities: how predictable the labels are. Computed here with scikit-learn rather than
    through ``rmtl_env.metrics``, which sits above the data layer."""
    from sklearn.metrics import log_loss, roc_auc_score

    from rmtl_env.data.dataset import PROB_EPS

    clipped = np.clip(probs.astype(np.float64), PROB_EPS, 1.0 - PROB_EPS)
    one_class = len(np.unique(labels)) < 2
    return {
        "auc": float("nan") if one_class else float(roc_auc_score(labels, clipped)),
        "logloss": float(log_loss(labels, clipped, labels=[0, 1])),
    }


def format_statistics(meta: dict) -> str:
    """A plain-text table of ``meta["splits"]``, one row per split."""
    tasks = meta["tasks"]
    rows = []
    for name, entry in meta["splits"].items():
        row = {
            "split": name,
            "sessions": entry["sessions"],
            "impressions": entry["impressions"],
            "users": entry.get("users"),
            "items": entry.get("items"),
            "mean_len": round(entry["mean_session_length"], 2),
        }
        for task in tasks:
            row[f"rate:{task}"] = f"{100 * entry['label_rate'][task]:.2f}%"
        for task in tasks:
            oracle = entry.get("oracle", {}).get(task)
            if oracle:
                row[f"oracle_auc:{task}"] = f"{oracle['auc']:.4f}"
                row[f"oracle_logloss:{task}"] = f"{oracle['logloss']:.4f}"
        rows.append(row)
    table = pd.DataFrame(rows)
    header = (
        f"dataset {meta['dataset']} ({meta['source']}): tasks {tasks}, "
        f"{len(meta['categorical_fields'])} categorical fields {meta['categorical_fields']}, "
        f"{len(meta['numerical_fields'])} numerical fields {meta['numerical_fields']}"
    )
    counts = ", ".join(f"{k}={v}" for k, v in meta.get("row_counts", {}).items())
    return f"{header}\nrow counts: {counts}\n{table.to_string(index=False)}"


__all__ = ["format_statistics", "split_statistics"]
