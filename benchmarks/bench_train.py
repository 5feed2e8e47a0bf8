"""Benchmark: supervised training throughput of ESMM, MMoE and PLE at batch 2048 on CPU.

For each model: training samples per second (forward, backward and Adam step on the paper's
dimensions, 7 RetailRocket fields + 1 numerical), the model's FLOPs per step counted with
``torch.utils.flop_counter``, and the achieved GFLOP/s as a percentage of this process's own fp32
matrix-multiply peak (back-to-back 2048^3 ``torch.mm`` for 4 s, measured first; the fastest
single multiply is printed too). Target: >= 50 %.

``--precision bf16`` also runs every model's steps in bf16 (``TrainConfig.precision``: the
trainer's own ``train_epoch`` under ``torch.autocast``) and prints both rates, then pretrains
``--auc-model`` on the small RetailRocket twin in fp32 and in bf16 and prints both test AUCs.
Each precision runs with its own dropout masks and Adam (``TrainConfig.mask_source``:
torch's masks and Adam's loop at fp32, int16 masks and the fused Adam at bf16);
``--dropout-masks bernoulli int16`` runs every row with each source of masks instead, and the
AUC check with the last one.

``--weightings`` (all of them when given without names) times a step of ``--weighting-model``
(PLE) under each loss weighting (``TrainConfig.weighting``) at fp32 and at bf16 and prints it
relative to an ``equal`` step of the same run (measured before and after the others, the mean
of both). Target for the Jacobian balancers with K = 2 on PLE: at most 2x.

    python benchmarks/bench_train.py [--models esmm mmoe ple] [--steps 20] [--seed 0]
        [--precision bf16 [--auc-model esmm]] [--dropout-masks bernoulli int16]
        [--weightings [upgrad mgda ...] [--weighting-model ple]] [--smoke]
"""

from __future__ import annotations

import argparse
import dataclasses
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from agents.models import build_model
from agents.models.layers import DROPOUT_MASKS
from agents.runtime import seed_everything
from agents.trainer import PRECISIONS, TrainConfig, adam, train_epoch
from agents.weighting import JACOBIAN, WEIGHTINGS, make_balancer, parameter_groups
from rmtl_bench.smoke import add_smoke_flag, announce_smoke

RETAILROCKET_FIELD_DIMS = [41, 26, 61, 3, 1091, 286, 635]
SMOKE_SIZES = {"embed_dim": 8, "bottom_dims": (16, 8), "tower_dims": (8,)}  # --smoke's models


def matmul_peak_gflops(size: int = 2048, seconds: float = 4.0) -> tuple[float, float]:
    """``(sustained, best)`` fp32 GEMM rate of this process in GFLOP/s: the mean rate of
    back-to-back ``size^3`` multiplies over ``seconds``, and the fastest single one."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    for _ in range(3):
        a @ b
    times: list[float] = []
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        start = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - start)
    flops = 2 * size**3 / 1e9
    return flops * len(times) / sum(times), flops / min(times)


def train_step_rate(
    name: str,
    batch_size: int,
    steps: int,
    seed: int,
    precision: str = "fp32",
    masks: str = "bernoulli",
    weighting: str = "equal",
    sizes: dict | None = None,
) -> tuple[float, float]:
    """``(samples/s, FLOPs per step)`` of full training steps of model ``name`` through the
    trainer's ``train_epoch`` (forward, BCE, backward, and the trainer's Adam for
    ``precision``) at ``precision``, with dropout masks from ``masks`` and the task losses
    weighed by ``weighting``; ``sizes``: ``ModelConfig`` fields replacing the paper's."""
    seed_everything(seed)
    model = build_model(name, RETAILROCKET_FIELD_DIMS, 1, 2, **(sizes or {}))
    balancer = make_balancer(weighting, model)
    optimizer = adam(parameter_groups(model, balancer), 1e-3, precision, weight_decay=1e-6)
    categorical = torch.stack(
        [torch.randint(0, d, (batch_size,)) for d in RETAILROCKET_FIELD_DIMS], dim=1
    )
    tensors = (categorical, torch.randn(batch_size, 1), (torch.rand(batch_size, 2) < 0.1).float())

    def run(count: int) -> None:
        order = torch.arange(batch_size).repeat(count)
        train_epoch(model, tensors, order, optimizer, batch_size, precision=precision,
                    masks=masks, balancer=balancer)  # fmt: skip

    counter = FlopCounterMode(display=False)
    with counter:
        run(1)
    run(2)
    start = time.perf_counter()
    run(steps)
    elapsed = time.perf_counter() - start
    return steps * batch_size / elapsed, float(counter.get_total_flops())


def weighting_step_times(
    name: str, weightings: list[str], batch_size: int, steps: int, seed: int,
    sizes: dict | None = None,
) -> None:  # fmt: skip
    """Print each weighting's step time relative to ``equal`` at fp32 and at bf16."""
    print(f"\n{name} step time per loss weighting, relative to equal (batch {batch_size}, "
          f"{steps} steps; equal timed before and after the others):")  # fmt: skip
    print(f"{'weighting':<12} {'kind':>9} " + " ".join(f"{p + ' ms':>9} {'x equal':>8}"
                                                        for p in PRECISIONS))  # fmt: skip
    times: dict[str, dict[str, float]] = {}
    for precision in PRECISIONS:
        masks = TrainConfig(precision=precision).mask_source

        def step_ms(weighting: str, precision: str = precision, masks: str = masks) -> float:
            rate, _ = train_step_rate(name, batch_size, steps, seed, precision, masks, weighting,
                                      sizes)  # fmt: skip
            return 1000 * batch_size / rate

        first = step_ms("equal")
        timed = {w: step_ms(w) for w in weightings if w != "equal"}
        timed["equal"] = (first + step_ms("equal")) / 2
        for weighting, ms in timed.items():
            times.setdefault(weighting, {})[precision] = ms
    for weighting in ["equal", *[w for w in weightings if w != "equal"]]:
        kind = "jacobian" if weighting in JACOBIAN else "loss" if weighting != "equal" else ""
        cells = " ".join(f"{times[weighting][p]:>9.1f} {times[weighting][p] / times['equal'][p]:>7.2f}x"
                         for p in PRECISIONS)  # fmt: skip
        print(f"{weighting:<12} {kind:>9} {cells}")


def test_auc(
    name: str, precision: str, seed: int, masks: str | None, smoke: bool = False
) -> tuple[dict, float]:
    """Test metrics and seconds of ``name`` pretrained on the small RetailRocket twin (the
    tiny one for one epoch in a ``smoke`` run)."""
    from agents.pipeline import DataConfig, evaluate, load_splits, pretrain

    splits = load_splits(DataConfig(scale="tiny") if smoke else DataConfig())
    start = time.perf_counter()
    train = TrainConfig(precision=precision, dropout_masks=masks)
    if smoke:
        train = dataclasses.replace(train, epochs=1)
    fit = pretrain(name, splits, train=train, seed=seed, progress=False)
    seconds = time.perf_counter() - start
    return evaluate({name: fit.model}, splits.test)[name], seconds


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--models", nargs="+", default=["esmm", "mmoe", "ple"])
    parser.add_argument("--batch-size", type=int, default=2048)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--precision", choices=PRECISIONS, default="fp32",
                        help="bf16: also run and compare bf16")  # fmt: skip
    parser.add_argument("--auc-model", default="esmm", help="model of the fp32/bf16 AUC check")
    parser.add_argument("--dropout-masks", nargs="+", choices=DROPOUT_MASKS,
                        help="each row with each source (default: the precision's own, "
                        "TrainConfig.mask_source)")  # fmt: skip
    parser.add_argument(
        "--weightings",
        nargs="*",
        choices=WEIGHTINGS,
        default=None,
        help="time a step under each loss weighting (all when given alone)",
    )
    parser.add_argument("--weighting-model", default="ple",
                        help="the model of the --weightings timing")  # fmt: skip
    add_smoke_flag(parser, "tiny networks, batches of 64, one timed step, a 256^3 peak for 0.1 s, "
                   "--weightings alone times FAMO and UPGrad, the AUC check on the tiny twin for "
                   "one epoch")  # fmt: skip
    args = parser.parse_args()
    smoke = announce_smoke(args)
    sizes = SMOKE_SIZES if smoke else {}
    if smoke:
        args.batch_size, args.steps = 64, 1
    precisions = ["fp32"] if args.precision == "fp32" else ["fp32", "bf16"]
    peak, best = matmul_peak_gflops(256, 0.1) if smoke else matmul_peak_gflops()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(
        f"fp32 matmul peak (2048^3 torch.mm, sustained): {peak:.1f} GFLOP/s (best single: {best:.1f})"
    )
    print(
        f"{'model':<8} {'precision':>9} {'masks':>9} {'params':>10} {'samples/s':>11} "
        f"{'GFLOP/step':>11} {'GFLOP/s':>9} {'% fp32 peak':>11}"
    )
    for name in args.models:
        params = sum(
            p.numel()
            for p in build_model(name, RETAILROCKET_FIELD_DIMS, 1, 2, **sizes).parameters()
        )
        for precision in precisions:
            own = TrainConfig(precision=precision).mask_source
            for masks in args.dropout_masks or [own]:
                rate, flops = train_step_rate(
                    name, args.batch_size, args.steps, args.seed, precision, masks, sizes=sizes
                )
                achieved = rate / args.batch_size * flops / 1e9
                print(
                    f"{name:<8} {precision:>9} {masks:>9} {params:>10,} {rate:>11,.0f} "
                    f"{flops / 1e9:>11.2f} {achieved:>9.1f} {100 * achieved / peak:>10.1f}%"
                )
    if args.weightings is not None:
        every = ["famo", "upgrad"] if smoke else list(WEIGHTINGS)  # a loss-level, a Jacobian one
        weighting_step_times(args.weighting_model, args.weightings or every,
                             args.batch_size, args.steps, args.seed, sizes)  # fmt: skip
    if args.precision == "bf16":
        scale = "tiny" if smoke else "small"
        print(f"\n{args.auc_model} pretrained on the {scale} RetailRocket twin, seed {args.seed}:")
        for precision in precisions:
            masks = args.dropout_masks[-1] if args.dropout_masks else None
            metrics, seconds = test_auc(args.auc_model, precision, args.seed, masks, smoke)
            aucs = ", ".join(f"{task} AUC {m['auc']:.4f}" for task, m in metrics.items())
            print(f"  {precision}: {aucs} ({seconds:.0f} s)")


if __name__ == "__main__":
    main()
