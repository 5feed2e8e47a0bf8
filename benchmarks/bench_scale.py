"""Benchmark: out-of-core preparation of the KuaiRand-27K twin with DuckDB.

For each fraction of the real 27K size, writes the twin's raw files (once, into ``--work``), then
prepares them with DuckDB under ``--memory-limit`` in a fresh process, and prints
the wall time, the preparing process's peak RSS, rows per second and the linear extrapolation to
the full 27K (322,278,385 standard log rows). Target: peak RSS under 6 GB at a 4 GB limit.

    python benchmarks/bench_scale.py [--fractions 1/20 1/10] [--memory-limit 4GB] [--threads 2]
        [--work /tmp/rmtl-scale] [--seed 0] [--smoke]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

from rmtl_bench.smoke import add_smoke_flag, announce_smoke
from rmtl_env.data.io import atomic_directory
from rmtl_env.data.synthetic import twin_fraction, write_twin

FULL_ROWS = 322_278_385  # KuaiRand-27K's standard log rows

PREPARE = """
import json, sys, time
from pathlib import Path
from rmtl_env.data.kuairand import KuaiRandConfig, KuaiRandFiles
from rmtl_env.data.kuairand import prepare_kuairand
from rmtl_env.data.processing import ProcessingConfig
raw, out, limit, threads = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3], int(sys.argv[4])
files = KuaiRandFiles.in_folder(raw, version="27k")
start = time.perf_counter()
meta = prepare_kuairand(files, KuaiRandConfig(), ProcessingConfig(), out, "kuairand-27k-synthetic",
                        memory_limit=limit, threads=threads)
# VmHWM is this process's own peak (as in bench_data.py).
peak_kb = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM:"))
print(json.dumps({"seconds": time.perf_counter() - start, "peak_rss_gb": peak_kb / 1024**2,
                  "rows": meta["row_counts"]["log_rows_read"]}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--fractions", nargs="+", default=["1/20", "1/10"])
    parser.add_argument("--memory-limit", default="4GB")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--work", type=Path, default=Path("/tmp/rmtl-scale"))
    parser.add_argument("--seed", type=int, default=0)
    add_smoke_flag(parser, "the 1/4000 twin")
    args = parser.parse_args()
    if announce_smoke(args):
        args.fractions = ["1/4000"]
    print(
        f"KuaiRand-27K twin, DuckDB preparation, memory_limit {args.memory_limit}, "
        f"{args.threads} threads"
    )
    for text in args.fractions:
        fraction = twin_fraction(text)
        raw = args.work / f"raw-{fraction:g}-seed{args.seed}"
        if not raw.is_dir():  # written into a staging folder, renamed when complete
            start = time.perf_counter()
            with atomic_directory(raw) as staging:
                write_twin("kuairand-27k-synthetic", staging, scale=text, seed=args.seed)
            print(f"  wrote the {text} twin in {time.perf_counter() - start:.0f} s")
        out = args.work / f"processed-{fraction:g}"
        if out.exists():
            shutil.rmtree(out)
        out.mkdir(parents=True)
        # A fresh process per fraction, so that the peak RSS is this preparation's alone.
        done = subprocess.run(
            [sys.executable, "-c", PREPARE, str(raw), str(out), args.memory_limit,
             str(args.threads)],
            check=True, capture_output=True, text=True,
        )  # fmt: skip
        result = json.loads(done.stdout.strip().splitlines()[-1])
        rate = result["rows"] / result["seconds"]
        print(
            f"fraction {text:>5}: {result['rows']:>12,} log rows, {result['seconds']:7.1f} s, "
            f"{rate:>10,.0f} rows/s, peak RSS {result['peak_rss_gb']:.2f} GB (target < 6 GB); "
            f"full 27K extrapolated: {FULL_ROWS / rate / 60:.0f} min"
        )


if __name__ == "__main__":
    main()
