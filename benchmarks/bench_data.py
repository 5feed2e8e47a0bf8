"""Benchmark: generate the full-size RetailRocket twin and time ``prepare`` on it.

Prints generation time, raw row counts, and the wall time and peak RSS of preparing the processed
dataset (read events and 20M property rows, sessionise, label, as-of join, split, map, write
Parquet) with DuckDB in a fresh process. Targets: at most 20 s and 1.5 GB peak RSS on 2 cores.

    python benchmarks/bench_data.py [--scale full] [--seed 0] [--workdir DIR]
                                    [--memory-limit 1GB] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PREPARE = """
import json, sys, time
from rmtl_env.data import load_dataset
start = time.perf_counter()
dataset = load_dataset("retailrocket", data_dir=sys.argv[1], memory_limit=sys.argv[2],
                       threads=int(sys.argv[3]), stream=True, refresh=True)
wall = time.perf_counter() - start
# VmHWM is this process's own peak; ru_maxrss would include the parent's peak inherited at exec.
peak_kb = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM:"))
print(json.dumps({"wall_s": wall, "peak_rss_gb": peak_kb / 1024**2,
                  "impressions": dataset.meta["row_counts"]["impressions"],
                  "row_counts": dataset.meta["row_counts"]}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--scale", default="full", choices=["tiny", "small", "full"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workdir", help="where raw and processed files go (default: a temp dir)")
    parser.add_argument("--memory-limit", default="1GB", help="DuckDB's memory limit")
    parser.add_argument("--threads", type=int, default=2, help="DuckDB's threads")
    args = parser.parse_args()
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="rmtl-bench-data-"))
    raw = workdir / f"retailrocket-synthetic-{args.scale}-seed{args.seed}"
    from rmtl_env.data.synthetic import write_twin

    if not (raw / "events.csv").is_file():
        start = time.perf_counter()
        write_twin("retailrocket-synthetic", raw, scale=args.scale, seed=args.seed)
        print(f"generated the {args.scale} twin in {time.perf_counter() - start:.1f}s at {raw}")
    sizes = {p.name: p.stat().st_size for p in sorted(raw.glob("*.csv"))}
    print("raw files (bytes):", json.dumps(sizes))
    out = workdir / "processed"
    result = subprocess.run(
        [sys.executable, "-c", PREPARE, str(raw), args.memory_limit, str(args.threads)],
        check=True, capture_output=True, text=True, env={**os.environ, "RMTL_DATA_DIR": str(out)},
    )  # fmt: skip
    report = json.loads(result.stdout.strip().splitlines()[-1])
    counts = report["row_counts"]
    print(
        f"events read: {counts['events_read']:,}  property rows read: {counts['property_rows_read']:,}"
    )
    print(f"impressions: {report['impressions']:,}")
    print(f"prepare wall time: {report['wall_s']:.1f} s (target <= 20 s)")
    print(f"prepare peak RSS: {report['peak_rss_gb']:.2f} GB (target <= 1.5 GB)")
    print(
        f"DuckDB memory_limit {args.memory_limit}, threads {args.threads}; cores: {os.cpu_count()}"
    )


if __name__ == "__main__":
    main()
