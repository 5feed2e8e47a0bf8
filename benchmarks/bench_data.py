"""Benchmark: generate the full-size RetailRocket twin and a 10M-row own log, and time their
preparation with DuckDB.

Prints generation time, raw row counts, and the wall time and peak RSS of preparing the processed
dataset (read events and 20M property rows, sessionise, label, as-of join, split, map, write
Parquet) with DuckDB in a fresh process, then the same for the own log. The twin is prepared
``--repeat`` times (each run printed) and judged on the median, since a shared 2-core VM's runs
spread by a few seconds. Targets: the twin in at most 20 s and 1.5 GB peak RSS on 2 cores; the
own log under a 2 GB memory limit.

    python benchmarks/bench_data.py [--scale full] [--seed 0] [--workdir DIR]
                                    [--memory-limit 1200MB] [--threads 2] [--repeat 3]
                                    [--own-log-rows 10000000] [--smoke]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rmtl_bench.smoke import add_smoke_flag, announce_smoke

PEAK = """
# VmHWM is this process's own peak; ru_maxrss would include the parent's peak inherited at exec.
peak_kb = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM:"))
print(json.dumps({"wall_s": wall, "peak_rss_gb": peak_kb / 1024**2,
                  "row_counts": dataset.meta["row_counts"]}))
"""
PREPARE_TWIN = (
    """
import json, sys, time
from rmtl_env.data import load_dataset
start = time.perf_counter()
dataset = load_dataset("retailrocket", data_dir=sys.argv[1], memory_limit=sys.argv[2],
                       threads=int(sys.argv[3]), stream=True, refresh=True)
wall = time.perf_counter() - start
"""
    + PEAK
)
PREPARE_OWN_LOG = (
    """
import json, sys, time
from rmtl_env.data import ColumnRoles, load_dataset
roles = ColumnRoles(user="user", timestamp="ts", labels=["click", "buy"], item="item",
                    categorical=["shop", "brand", "city"], numerical=["price", "age"],
                    nested_labels=True)
start = time.perf_counter()
dataset = load_dataset(sys.argv[1], roles=roles, memory_limit=sys.argv[2],
                       threads=int(sys.argv[3]), stream=True, refresh=True)
wall = time.perf_counter() - start
"""
    + PEAK
)


def write_own_log(path: Path, rows: int, seed: int, chunk: int = 1_000_000) -> None:
    """A CSV log of ``rows`` impressions (user, time, item, three categorical and two numerical
    columns, nested click and buy labels), written in chunks."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.csv as pacsv

    rng = np.random.default_rng(seed)
    users = max(rows // 50, 1)
    with pacsv.CSVWriter(str(path), pa.schema([
        ("user", pa.int64()), ("ts", pa.int64()), ("item", pa.int64()), ("shop", pa.string()),
        ("brand", pa.int64()), ("city", pa.string()), ("price", pa.float64()),
        ("age", pa.float64()), ("click", pa.int8()), ("buy", pa.int8()),
    ])) as writer:  # fmt: skip
        for start in range(0, rows, chunk):
            n = min(chunk, rows - start)
            click = (rng.random(n) < 0.1).astype(np.int8)
            writer.write_table(pa.table({
                "user": rng.integers(0, users, n), "ts": 1_600_000_000_000 + rng.integers(0, 30 * 86_400_000, n),
                "item": rng.zipf(1.3, n) % 1_000_000, "shop": np.char.add("s", (rng.zipf(1.5, n) % 5000).astype(str)),
                "brand": rng.integers(0, 2000, n), "city": rng.choice(["x", "y", "z", "w"], n),
                "price": rng.lognormal(3, 1, n).round(2), "age": rng.integers(18, 80, n).astype(float),
                "click": click, "buy": (click * (rng.random(n) < 0.2)).astype(np.int8),
            }))  # fmt: skip


def prepare_in_fresh_process(code: str, source: Path, args, out: Path) -> dict:
    result = subprocess.run(
        [sys.executable, "-c", code, str(source), args.memory_limit, str(args.threads)],
        check=True, capture_output=True, text=True, env={**os.environ, "RMTL_DATA_DIR": str(out)},
    )  # fmt: skip
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--scale", default="full", choices=["tiny", "small", "full"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workdir", help="where raw and processed files go (default: a temp dir)")
    parser.add_argument("--memory-limit", default="1200MB", help="DuckDB's memory limit")
    parser.add_argument("--threads", type=int, default=2, help="DuckDB's threads")
    parser.add_argument("--repeat", type=int, default=3,
                        help="prepare the twin this many times; the median is judged")  # fmt: skip
    parser.add_argument("--own-log-rows", type=int, default=10_000_000,
                        help="also prepare a generated own log of this many rows (0: skip)")  # fmt: skip
    add_smoke_flag(parser, "the tiny twin, a 20,000-row own log")
    args = parser.parse_args()
    if args.repeat < 1:
        parser.error(f"--repeat must be >= 1, got {args.repeat}")
    if announce_smoke(args):
        args.scale, args.repeat = "tiny", 1
        args.own_log_rows = min(args.own_log_rows, 20_000)
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="rmtl-bench-data-"))
    raw = workdir / f"retailrocket-synthetic-{args.scale}-seed{args.seed}"
    from rmtl_env.data.synthetic import write_twin

    if not (raw / "events.csv").is_file():
        start = time.perf_counter()
        write_twin("retailrocket-synthetic", raw, scale=args.scale, seed=args.seed)
        print(f"generated the {args.scale} twin in {time.perf_counter() - start:.1f}s at {raw}")
    sizes = {p.name: p.stat().st_size for p in sorted(raw.glob("*.csv"))}
    print("raw files (bytes):", json.dumps(sizes))
    runs = []
    for run in range(args.repeat):
        runs.append(prepare_in_fresh_process(PREPARE_TWIN, raw, args, workdir / "processed"))
        print(f"run {run + 1}/{args.repeat}: {runs[-1]['wall_s']:.1f} s, "
              f"peak RSS {runs[-1]['peak_rss_gb']:.2f} GB", flush=True)  # fmt: skip
    counts = runs[-1]["row_counts"]
    print(
        f"events read: {counts['events_read']:,}  property rows read: {counts['property_rows_read']:,}"
    )
    print(f"impressions: {counts['impressions']:,}")
    wall = statistics.median(r["wall_s"] for r in runs)
    peak = max(r["peak_rss_gb"] for r in runs)
    print(f"prepare wall time: {wall:.1f} s, median of {args.repeat} (target <= 20 s)")
    print(f"prepare peak RSS: {peak:.2f} GB, the largest of {args.repeat} (target <= 1.5 GB)")
    if args.own_log_rows:
        log = workdir / f"own-log-{args.own_log_rows}.csv"
        if not log.is_file():
            start = time.perf_counter()
            write_own_log(log, args.own_log_rows, args.seed)
            print(
                f"wrote a {args.own_log_rows:,}-row own log in {time.perf_counter() - start:.1f}s"
            )
        report = prepare_in_fresh_process(PREPARE_OWN_LOG, log, args, workdir / "processed")
        print(f"own log ({log.stat().st_size / 1e9:.2f} GB of CSV): "
              f"{report['row_counts']['impressions']:,} impressions in {report['wall_s']:.1f} s, "
              f"peak RSS {report['peak_rss_gb']:.2f} GB")  # fmt: skip
    print(
        f"DuckDB memory_limit {args.memory_limit}, threads {args.threads}; cores: {os.cpu_count()}"
    )


if __name__ == "__main__":
    main()
