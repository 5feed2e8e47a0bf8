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

from rmtl_bench import tables
from rmtl_bench.run_folder import flat_config, read_json
from rmtl_env.data.errors import CommandError, run_command

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
    seen: dict[Path, Path] = {}
    for run in runs:
        if not run.is_dir():
            raise CommandError(f"run folder {run} does not exist (or is not a folder)")
        real = run.resolve()
        if real in seen:
            raise SystemExit(f"error: {seen[real]} and {run} are the same run folder; pass it once")
        seen[real] = run
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
        test = read_json(run / "metrics.json")["test"]
        twin = next((path for path, other in seeds.values() if other == test), None)
        if twin is not None:  # two seeds cannot give the very same metrics: a copied run
            raise SystemExit(
                f"error: {twin} and {run} hold identical test metrics under different seeds: a "
                "copy of one run? pass only one of them"
            )
        seeds[seed] = (run, test)
    return groups


def headings(keys: list[str], titles: list[str]) -> list[str]:
    """Each group's title, with the settings that tell apart groups of the same title."""
    out = []
    for key, title in zip(keys, titles, strict=True):
        same = [json.loads(k) for k, t in zip(keys, titles, strict=True) if t == title]
        if len(same) > 1:
            mine, others = flat_config(json.loads(key)), [flat_config(c) for c in same]
            differ = sorted(k for k in mine if any(o.get(k) != mine[k] for o in others))
            title += " | " + ", ".join(f"{k}={mine[k]}" for k in differ)
        out.append(title)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("runs", nargs="+", type=Path, help="rmtl_ddpg run folders")
    parser.add_argument("--out", type=Path, default=None, help="markdown file to write")
    args = parser.parse_args(argv)
    sections, all_rows = [], []
    groups = collect(args.runs)
    titles = [
        f"{json.loads(key)['dataset']}: {json.loads(key)['backbone']} (seeds {sorted(seeds)})"
        for key, seeds in groups.items()
    ]
    for (key, seeds), title in zip(groups.items(), headings(list(groups), titles), strict=True):
        config, order = json.loads(key), sorted(seeds)
        backbone = config["backbone"]
        metrics = [seeds[s][1] for s in order]
        tasks = list(metrics[0][backbone])  # the dataset's own task names (own logs too)
        results = {m: [seed[m] for seed in metrics] for m in (backbone, f"rmtl-{backbone}")}
        rows = tables.comparison_rows(results, {f"rmtl-{backbone}": backbone}, tasks)
        all_rows += [{"dataset": config["dataset"], **row} for row in rows]
        note = (
            f"A paired t-test needs at least 2 seeds; this group has 1 (seed {order[0]}), so it "
            "has no p-values. Run more seeds with the same configuration.\n\n"
            if len(order) < 2
            else ""
        )
        sections.append(f"### {title}\n\n{note}{tables.comparison_markdown(rows)}\n")
    text = "\n".join(sections)
    print(text)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
        pd.DataFrame(all_rows).to_csv(args.out.with_suffix(".csv"), index=False)
    return 0


if __name__ == "__main__":
    sys.exit(run_command(main))
