"""The per-split statistics of a processed dataset (``meta.json``'s ``splits``, computed by the
engine) as the table the CLI prints."""

from __future__ import annotations

import pandas as pd


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


__all__ = ["format_statistics"]
