"""Benchmark: training and evaluation memory with the splits in memory versus streamed.

Prepares (once, cached) the KuaiRand-27K twin at ``--scale`` with DuckDB, then, in a fresh
process per mode, opens the dataset in memory (``load_dataset``) or streamed
(``load_dataset(..., stream=True)``, ``--buffer-rows``), takes ``--steps`` training minibatches
of ESMM at the paper's dimensions and predicts the whole validation split, and prints the wall
times, samples/s and the process's peak RSS (its VmHWM, as bench_data.py measures).

    python benchmarks/bench_stream.py [--scale 1/20] [--steps 200] [--buffer-rows 1000000]
        [--seed 0] [--smoke]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

from rmtl_bench.smoke import add_smoke_flag, announce_smoke
from rmtl_env.data import load_dataset

MEASURE = """
import itertools, json, sys, time
import torch
from agents.models import build_model
from agents.runtime import seed_everything
from agents.trainer import EpochBatches, TrainConfig, adam, fit_batches, predict
from rmtl_env.data import SessionDataset, StreamedDataset
mode, folder, steps, buffer_rows, seed = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
start = time.perf_counter()
data = StreamedDataset(folder, buffer_rows) if mode == "stream" else SessionDataset.load(folder)
train, val = data.split("train"), data.split("val")
opened = time.perf_counter() - start
seed_everything(seed)
model = build_model("esmm", data.field_dims, len(data.numerical_fields), len(data.tasks))
config = TrainConfig(seed=seed)
optimizer = adam(model.parameters(), config.lr, config.precision, config.weight_decay)
start = time.perf_counter()
batches = itertools.islice(EpochBatches(train, config, torch.device("cpu")).next(), steps)
fit_batches(model, batches, optimizer)
trained = time.perf_counter() - start
start = time.perf_counter()
probs = predict(model, val)
predicted = time.perf_counter() - start
peak_kb = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM:"))
print(json.dumps({"open_s": opened, "train_s": trained, "predict_s": predicted,
                  "train_rows": len(train), "val_rows": len(val), "peak_rss_gb": peak_kb / 1024**2,
                  "mean_prob": float(probs.mean())}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--scale", default="1/20", help="fraction of the full 27K size")
    parser.add_argument("--steps", type=int, default=200, help="training minibatches of 2048")
    parser.add_argument("--buffer-rows", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=0)
    add_smoke_flag(parser, "the 1/4000 twin, one training step, blocks of 10,000 rows")
    args = parser.parse_args()
    if announce_smoke(args):
        args.scale, args.steps, args.buffer_rows = "1/4000", 1, 10_000
    start = time.perf_counter()
    dataset = load_dataset("kuairand-27k-synthetic", scale=args.scale, stream=True)
    folder = dataset.meta["path"]
    print(f"KuaiRand-27K twin {args.scale}: {folder} ({time.perf_counter() - start:.0f} s)")
    for mode in ("memory", "stream"):
        done = subprocess.run(
            [sys.executable, "-c", MEASURE, mode, folder, str(args.steps), str(args.buffer_rows),
             str(args.seed)],
            check=True, capture_output=True, text=True,
        )  # fmt: skip
        r = json.loads(done.stdout.strip().splitlines()[-1])
        print(
            f"{mode:>6}: open {r['open_s']:6.1f} s | {args.steps} training steps "
            f"{r['train_s']:6.1f} s ({args.steps * 2048 / r['train_s']:,.0f} samples/s) | "
            f"predict {r['val_rows']:,} val rows {r['predict_s']:6.1f} s "
            f"({r['val_rows'] / r['predict_s']:,.0f} rows/s) | peak RSS {r['peak_rss_gb']:.2f} GB"
            f" | train split {r['train_rows']:,} rows, mean val prediction {r['mean_prob']:.6f}"
        )


if __name__ == "__main__":
    main()
