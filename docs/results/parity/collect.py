"""Collect the parity study's numbers: the official chains' logs and our run folders -> CSV.

python docs/results/parity/collect.py OFFICIAL_WORK OURS_ROOT [OURS_ROOT ...] --out parity.csv \
    [--table1 docs/results/table1_seeds.csv]

``--table1`` adds our default (paper preset) runs: Table 1's RMTL cells on the RetailRocket twin
for the models and seeds the official chains ran, as the variant ``paper-defaults``.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import pandas as pd

FINAL = re.compile(r"task (\d), AUC ([0-9.]+), Log-loss ([0-9.]+), session logloss ([0-9.]+)")
TASKS = ("ctr", "ctcvr")


def final_metrics(path: Path) -> dict[str, dict[str, float]]:
    """The official SLmain.py's final test lines: ``{task: {auc, logloss, s_logloss}}``."""
    return {
        TASKS[int(task)]: {"auc": float(auc), "logloss": float(ll), "s_logloss": float(sll)}
        for task, auc, ll, sll in FINAL.findall(path.read_text())
    }


def row(pipeline, model, seed, variant, task, polished, backbone) -> dict:
    out = {"pipeline": pipeline, "model": model, "seed": seed, "variant": variant, "task": task}
    for metric in ("auc", "logloss", "s_logloss"):
        out[f"backbone_{metric}"] = backbone[metric]
        out[metric] = polished[metric]
        out[f"delta_{metric}"] = polished[metric] - backbone[metric]
    return out


def official_rows(work: Path) -> list[dict]:
    rows = []
    for chain in sorted(p for p in work.glob("*-s[0-9]*") if p.is_dir()):
        model, seed = chain.name.rsplit("-s", 1)
        if not (chain / "sl.log").is_file():
            continue
        backbone = final_metrics(chain / "sl.log")
        for lam in ("1", "0.7"):
            path = chain / f"polish{lam}.log"
            if path.is_file() and final_metrics(path):
                for task, m in final_metrics(path).items():
                    rows.append(row("official", model, int(seed), f"lam{lam}", task, m,
                                    backbone[task]))  # fmt: skip
    return rows


def our_rows(root: Path) -> list[dict]:
    rows = []
    for metrics in sorted(root.glob("*-s[0-9]*/*/metrics.json")):
        model, seed = metrics.parent.parent.name.rsplit("-s", 1)
        test = json.loads(metrics.read_text())["test"]
        for task, m in test[f"rmtl-{model}"].items():
            rows.append(row("ours", model, int(seed), metrics.parent.name, task, m,
                            test[model][task]))  # fmt: skip
    return rows


def table1_rows(path: Path, chains: set[tuple[str, int]]) -> list[dict]:
    """Table 1's per-seed RetailRocket-twin cells of the (model, seed) pairs in ``chains``."""
    cells = pd.read_csv(path)
    cells = cells[cells["dataset"] == "retailrocket-synthetic"].set_index(
        ["method", "seed", "task"]
    )
    rows = []
    for model, seed in sorted(chains):
        for task in TASKS:
            backbone, polished = (cells.loc[(m, seed, task)] for m in (model, f"rmtl-{model}"))
            rows.append(row("ours", model, seed, "paper-defaults", task, polished, backbone))
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("official", type=Path)
    p.add_argument("ours", type=Path, nargs="+")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--table1", type=Path, help="table1_seeds.csv: adds the paper-defaults rows")
    args = p.parse_args()
    rows = official_rows(args.official)
    for root in args.ours:
        rows += our_rows(root)
    if args.table1:
        rows += table1_rows(args.table1, {(r["model"], r["seed"]) for r in rows})
    frame = pd.DataFrame(rows)
    frame["run"] = frame["pipeline"] + " " + frame["variant"]
    frame.to_csv(args.out, index=False)
    for value in ("backbone_auc", "delta_auc"):
        print(f"\n{value}")
        print(frame.pivot_table(index=["model", "seed", "task"], columns=["pipeline", "variant"],
                                values=value).round(4).to_string())  # fmt: skip


if __name__ == "__main__":
    main()
