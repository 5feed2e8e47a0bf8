"""Compare backbone vs RMTL-backbone over seeds from finished ``rmtl_ddpg.py`` run folders.

    python train/compare_runs.py runs/rmtl_ddpg/* --out docs/results/rmtl_seeds.md

Groups the folders by dataset and configuration (everything in ``config.json`` but the seeds and
the machine), pairs the seeds of each group, and writes a markdown table per group of mean ± std
per metric with the paired two-sided t-test p-value (``*`` where p < 0.05). Two folders of the same
group and seed are refused, never silently replaced.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pandas as pd

import tables
from run_folder import read_json

IGNORED = ("environment", "seed")  # what may differ between the seeds of one comparison


def group_key(config: dict) -> str:
    """The configuration of a run without its seeds: runs with equal keys are comparable."""
    rest = {k: v for k, v in config.items() if k not in IGNORED}
    for section in ("train", "rmtl"):
        if isinstance(rest.get(section), dict):
            rest[section] = {k: v for k, v in rest[section].items() if k != "seed"}
    return json.dumps(rest, sort_keys=True)


def collect(runs: list[Path]) -> dict[str, dict[int, tuple[Path, dict]]]:
    """``{group key: {seed: (folder, test metrics)}}`` of the finished RMTL runs."""
    groups: dict[str, dict[int, tuple[Path, dict]]] = {}
    for run in runs:
        if not (run / "metrics.json").is_file():
            print(f"skipping {run}: no metrics.json (unfinished run?)", file=sys.stderr)
            continue
        config = read_json(run / "config.json")
        if config.get("job", config.get("script")) not in ("rmtl", "rmtl_ddpg"):
            print(f"skipping {run}: not an rmtl_ddpg run", file=sys.stderr)
            continue
        seeds = groups.setdefault(group_key(config), {})
        seed = int(config["seed"])
        if seed in seeds:
            raise SystemExit(
                f"error: {seeds[seed][0]} and {run} are the same configuration and seed {seed}; "
                "pass only one of them"
            )
        seeds[seed] = (run, read_json(run / "metrics.json")["test"])
    return groups


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("runs", nargs="+", type=Path, help="rmtl_ddpg run folders")
    parser.add_argument("--out", type=Path, default=None, help="markdown file to write")
    args = parser.parse_args(argv)
    sections, all_rows = [], []
    for key, seeds in collect(args.runs).items():
        config, order = json.loads(key), sorted(seeds)
        backbone = config["backbone"]
        metrics = [seeds[s][1] for s in order]
        tasks = list(metrics[0][backbone])  # the dataset's own task names (own logs too)
        results = {m: [seed[m] for seed in metrics] for m in (backbone, f"rmtl-{backbone}")}
        rows = tables.comparison_rows(results, {f"rmtl-{backbone}": backbone}, tasks)
        all_rows += [{"dataset": config["dataset"], **row} for row in rows]
        title = f"{config['dataset']}: {backbone} (seeds {order})"
        sections.append(f"### {title}\n\n{tables.comparison_markdown(rows)}\n")
    text = "\n".join(sections)
    print(text)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
        pd.DataFrame(all_rows).to_csv(args.out.with_suffix(".csv"), index=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
