"""Compare backbone vs RMTL-backbone over seeds from finished ``rmtl_ddpg.py`` run folders.

    python train/compare_runs.py runs/rmtl_ddpg/* --out docs/results/rmtl_seeds.md

Groups the folders by backbone (from each ``config.json``), pairs seeds, and writes a markdown
table of mean ± std per metric with the paired two-sided t-test p-value (``*`` where p < 0.05).
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from pathlib import Path

import pandas as pd

import tables
from run_folder import read_json


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("runs", nargs="+", type=Path, help="rmtl_ddpg run folders")
    parser.add_argument("--out", type=Path, default=None, help="markdown file to write")
    args = parser.parse_args(argv)
    by_backbone: dict[str, dict[int, dict]] = defaultdict(dict)
    tasks: list[str] = []
    for run in args.runs:
        if not (run / "metrics.json").is_file():
            print(f"skipping {run}: no metrics.json (unfinished run?)", file=sys.stderr)
            continue
        config, metrics = (
            read_json(run / "config.json"),
            read_json(run / "metrics.json"),
        )
        by_backbone[config["backbone"]][config["seed"]] = metrics["test"]
        tasks = [t for t in metrics["test"][config["backbone"]]]
    sections, all_rows = [], []
    for backbone, seeds in sorted(by_backbone.items()):
        order = sorted(seeds)
        results = {m: [seeds[s][m] for s in order] for m in (backbone, f"rmtl-{backbone}")}
        rows = tables.comparison_rows(results, {f"rmtl-{backbone}": backbone}, tasks)
        all_rows += rows
        sections.append(f"### {backbone} (seeds {order})\n\n{tables.comparison_markdown(rows)}\n")
    text = "\n".join(sections)
    print(text)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
        pd.DataFrame(all_rows).to_csv(args.out.with_suffix(".csv"), index=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
