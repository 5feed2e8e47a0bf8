"""The ``--smoke`` flag every script in ``benchmarks/`` takes: the same stages at sizes that run in
seconds, so that a test can run each benchmark command the documentation shows. A smoke run's
figures are not measurements; it says so before it starts."""

from __future__ import annotations

import argparse


def add_smoke_flag(parser: argparse.ArgumentParser, sizes: str) -> None:
    """``--smoke``, whose help names the ``sizes`` it runs at."""
    parser.add_argument(
        "--smoke", action="store_true",
        help=f"every stage at sizes that run in seconds ({sizes}); the figures are not "
        "measurements",
    )  # fmt: skip


def announce_smoke(args: argparse.Namespace) -> bool:
    """Whether ``--smoke`` was given, saying so on stdout when it was."""
    if args.smoke:
        print("Smoke run (--smoke): every stage at tiny sizes; these figures are not measurements.")
    return bool(args.smoke)


# The training scripts' flags at tiny size: the tiny twin, tiny networks and one epoch per stage
# (argparse keeps a flag's last value, so they can follow any command line).
_TINY = ["--scale", "tiny", "--embed-dim", "8", "--bottom-dims", "16", "8", "--tower-dims", "8",
         "--epochs", "1", "--batch-size", "512", "--no-progress"]  # fmt: skip
TINY_FLAGS = {
    "mtl_baselines": _TINY,
    "rmtl_ddpg": [*_TINY, "--critic-embed-dim", "8", "--critic-batch-size", "512",
                  "--critic-epochs", "1"],
    "dple_sb3": [*_TINY, "--actor-steps", "48", "--actor-batch-size", "32",
                 "--critic-batch-size", "256", "--critic-max-epochs", "2"],
}  # fmt: skip
