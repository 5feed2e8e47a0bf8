"""Write a split's logged sessions as a Minari dataset, with a behaviour policy's actions.

    python train/export_minari.py retailrocket-synthetic --split train --behaviour uniform
    python train/export_minari.py retailrocket-synthetic --checkpoint runs/.../checkpoints/ple.pt \\
        --noise 0.3          # a trained model's predictions, with RMTL's logit noise

The logs hold feedback, not actions: ``--behaviour uniform`` (random probabilities, the official
RMTL replay's) or ``labels`` (the logged feedback), or a model checkpoint's predictions. The
dataset (``rmtl/<name>-<split>-<behaviour>-v0`` unless ``--dataset-id``) lands under
``$MINARI_DATASETS_PATH`` (default ``~/.minari/datasets``); Minari never overwrites one. Needs
the ``minari`` extra. The dataset flags are ``python -m rmtl_env.data``'s.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

from agents.checkpoint import CheckpointError, check_fits, load_model
from agents.replay import noisy_actions
from agents.trainer import predict
from rmtl_env.data.__main__ import add_dataset_args, load_from_args, loader_params_from_args
from rmtl_env.data.errors import DataFormatError, run_command


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_dataset_args(p)
    # fmt: off
    p.add_argument("--split", default="train", choices=["train", "val", "test"])
    p.add_argument("--behaviour", default="uniform", choices=["uniform", "labels"],
                   help="actions of the logged steps: uniform random probabilities, or the "
                   "logged labels")
    p.add_argument("--checkpoint", help="a model checkpoint (run folder checkpoints/*.pt) whose "
                   "predictions are the actions instead of --behaviour")
    p.add_argument("--noise", type=float, default=0.0,
                   help="logit-noise std on the checkpoint's predictions (>= 0)")
    p.add_argument("--action-seed", type=int, default=0, help="seed of random actions and noise")
    p.add_argument("--max-sessions", type=int, help="export only the split's first sessions")
    p.add_argument("--data-format", default="hdf5", choices=["hdf5", "arrow"],
                   help="Minari storage")
    p.add_argument("--dataset-id", help="Minari id (default rmtl/<name>-<split>-<behaviour>-v0)")
    p.add_argument("--author", default="rmtl-env", help="the dataset's author (metadata)")
    p.add_argument("--author-email", help="the author's e-mail (metadata)")
    p.add_argument("--code-permalink", help="permalink to the code that made the dataset")
    # fmt: on
    args = p.parse_args(argv)
    if not args.noise >= 0 or (args.noise and not args.checkpoint):
        p.error("--noise must be >= 0 and needs --checkpoint")
    return args


def checkpoint_actions(args: argparse.Namespace, dataset) -> np.ndarray:
    """The checkpoint's (noisy) predictions on ``args.split``, as RMTL's replay draws them."""
    model = load_model(args.checkpoint)
    check_fits(model, dataset, args.checkpoint)
    return noisy_actions(predict(model, dataset.split(args.split)), args.noise, args.action_seed)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        import minari  # noqa: F401

        from rmtl_env.offline import default_dataset_id, export_minari
    except ImportError:
        print('error: export_minari.py needs Minari: pip install -e ".[minari]"', file=sys.stderr)
        return 2
    behaviour = "checkpoint" if args.checkpoint else args.behaviour
    dataset_id = args.dataset_id or default_dataset_id(args.name, args.split, behaviour)
    roles = {"roles": args.roles} if args.roles else {}
    env_kwargs = {
        "dataset": args.name, "split": args.split, "data_dir": args.data_dir,
        "scale": args.scale, "data_seed": args.seed,
        "dataset_kwargs": {**loader_params_from_args(args), **roles},
    }  # fmt: skip
    try:
        dataset = load_from_args(args)
        actions = checkpoint_actions(args, dataset) if args.checkpoint else args.behaviour
        exported = export_minari(
            dataset_id, actions, seed=args.action_seed, algorithm_name=behaviour,
            data_format=args.data_format, max_sessions=args.max_sessions, author=args.author,
            author_email=args.author_email, code_permalink=args.code_permalink, **env_kwargs,
        )  # fmt: skip
    except (CheckpointError, DataFormatError, FileExistsError, FileNotFoundError,
            ValueError) as exc:  # fmt: skip
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(
        f"wrote Minari dataset {dataset_id!r}: {exported.total_episodes:,} episodes, "
        f"{exported.total_steps:,} steps ({behaviour} actions); minari.load_dataset({dataset_id!r})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(run_command(main))
