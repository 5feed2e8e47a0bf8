"""Command-line flags generated from the config dataclasses, so each hyper-parameter is declared
once: its dataclass field, default and ``Attributes:`` line are the flag, its default and help.

    parser = argparse.ArgumentParser()
    add_config_flags(parser, "train", TrainConfig())                 # --lr, --batch-size, ...
    add_config_flags(parser, "rmtl", PRESETS, skip=("seed",))        # defaults per preset
    args = parser.parse_args()
    train = config_from_flags(parser, args, "train", TrainConfig())

Flags that are not given are absent from the namespace (``argparse.SUPPRESS``), so a config is
its base (the dataclass default or a preset) with exactly the given flags replaced, and the
dataclass's own checks validate the result. A nested dataclass field gets flags prefixed with its
name (``RMTLConfig.critic.embed_dim`` is ``--critic-embed-dim``).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import sys
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from agents import distributed
from agents.checkpoint import CheckpointError
from agents.domains import domain_of
from agents.models import ModelConfig
from agents.pipeline import DataConfig
from agents.trainer import TrainConfig
from agents.weighting import check_training
from rmtl_bench import jobs
from rmtl_bench.run_folder import DifferentConfig, default_run_dir, read_json
from rmtl_bench.tables import format_table
from rmtl_env.data.errors import DataFormatError

Parser = argparse.ArgumentParser | argparse._ArgumentGroup


def attribute_docs(cls: type) -> dict[str, str]:
    """``{field: text}`` from the ``Attributes:`` section of a dataclass docstring (a line
    ``a, b: text`` documents both fields; continuation lines are joined)."""
    docs: dict[str, str] = {}
    names: list[str] = []
    section = (cls.__doc__ or "").split("Attributes:", 1)[-1]
    for line in section.splitlines():
        text = line.strip()
        head, sep, rest = text.partition(": ")
        candidates = [n.strip() for n in head.split(",")]
        if sep and all(n.isidentifier() for n in candidates):
            names = candidates
            for name in names:
                docs[name] = rest
        elif text and names:
            for name in names:
                docs[name] += " " + text
    return docs


def _flag_type(hint: Any) -> dict[str, Any]:
    """argparse keywords for a field annotated ``hint``."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):  # ``X | None``: a flag of type X
        return _flag_type(next(a for a in args if a is not type(None)))
    if origin is typing.Literal:
        return {"type": type(args[0]), "choices": list(args)}
    if origin is tuple:
        return {"type": args[0], "nargs": "+"}
    if hint is bool:
        return {"action": argparse.BooleanOptionalAction}
    return {"type": hint}


def _bases(bases: object | Mapping[str, object]) -> dict[str, object]:
    return dict(bases) if isinstance(bases, Mapping) else {"": bases}


def add_config_flags(
    parser: Parser,
    key: str,
    bases: object | Mapping[str, object],
    skip: Sequence[str] = (),
    prefix: str = "",
) -> None:
    """One ``--<prefix><field>`` flag per field of the dataclass instance ``bases`` (or of a
    ``{preset name: instance}`` mapping, whose defaults the help lists); destinations are
    ``<key>.<field>``."""
    named = _bases(bases)
    first = next(iter(named.values()))
    cls = type(first)
    docs, hints = attribute_docs(cls), typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        if dataclasses.is_dataclass(hints[f.name]):
            nested = {name: getattr(base, f.name) for name, base in named.items()}
            add_config_flags(parser, f"{key}.{f.name}", nested, prefix=f"{prefix}{f.name}_")
            continue
        values = {name: getattr(base, f.name) for name, base in named.items()}
        if len(set(map(repr, values.values()))) == 1:
            shown = _show(next(iter(values.values())))
        else:
            shown = ", ".join(f"{name} {_show(v)}" for name, v in values.items())
        kind = _flag_type(hints[f.name])
        if "type" in kind and "choices" not in kind:
            kind["metavar"] = f.name.upper()
        parser.add_argument(
            "--" + (prefix + f.name).replace("_", "-"),
            dest=f"{key}.{f.name}",
            default=argparse.SUPPRESS,
            help=f"{docs.get(f.name, '')} (default: {shown}"
            + (f"; {domain_of(f)})" if domain_of(f) is not None else ")"),
            **kind,
        )


def _show(value: object) -> str:
    return " ".join(map(str, value)) if isinstance(value, tuple) else str(value)


def given_flags(args: argparse.Namespace, key: str) -> dict[str, Any]:
    """The ``<key>.<field>`` flags that were given, as ``{field: value}`` (nested keys kept)."""
    head = key + "."
    return {k.removeprefix(head): v for k, v in vars(args).items() if k.startswith(head)}


def replace_from_flags(base: Any, given: Mapping[str, Any]) -> Any:
    """``base`` with the given fields replaced; ``a.b`` entries go into nested dataclass ``a``."""
    own = {k: v for k, v in given.items() if "." not in k}
    for name in {k.split(".", 1)[0] for k in given if "." in k}:
        inner = {k.split(".", 1)[1]: v for k, v in given.items() if k.startswith(name + ".")}
        own[name] = replace_from_flags(getattr(base, name), inner)
    return dataclasses.replace(base, **own)


def config_from_flags(
    parser: argparse.ArgumentParser, args: argparse.Namespace, key: str, base: Any, **fixed: Any
) -> Any:
    """The config ``base`` with the given ``<key>.*`` flags and ``fixed`` applied; an invalid
    value ends the program with argparse's usage error naming it."""
    try:
        return replace_from_flags(base, {**given_flags(args, key), **fixed})
    except (TypeError, ValueError) as exc:
        parser.error(f"{key}: {exc}")


def add_run_flags(parser: Parser, script: str) -> None:
    """The seed, device and output flags every script shares."""
    parser.add_argument(
        "--seed", type=int, default=0, help="seeds model init, shuffling, dropout and exploration"
    )
    parser.add_argument("--device", default="auto", help="auto (CUDA if available), cpu or cuda")
    parser.add_argument(
        "--run-dir",
        type=Path,
        default=None,
        help=f"output folder (default runs/{script}/<dataset>-seed<S>-<time>)",
    )
    parser.add_argument("--no-progress", action="store_true", help="hide the tqdm bars")
    parser.add_argument(
        "--fresh", action="store_true",
        help="start --run-dir over: delete the run it holds instead of resuming it",
    )  # fmt: skip


def report(run: Callable[[], Mapping], folder: Path, title: str) -> int:
    """Run a job, print its test table and run folder; a folder holding another configuration
    ends the program with a one-line error."""
    try:
        results = run()
    except (DifferentConfig, CheckpointError, DataFormatError, FileNotFoundError) as exc:
        raise SystemExit(f"error: {exc}") from None
    tasks = list(next(iter(results.values())))
    print(f"\nTest split of {title}:")
    print(format_table(results, tasks))
    scores = _policy_scores(folder)
    if scores:
        print("Normalised score (rmtl_env.evaluate_policy; 0 = each task's base rate, 100 = the "
              "twin's true probabilities): " + ", ".join(scores))  # fmt: skip
    print(f"\nRun folder: {folder}")
    return 0


def _policy_scores(folder: Path) -> list[str]:
    """``"<model> <score>"`` of each model the run scored (none on data without true
    probabilities, or where this process did not write the folder)."""
    path = Path(folder) / "metrics.json"
    if not path.is_file():
        return []
    scores = read_json(path).get("policy_scores") or {}
    return [f"{m} {s['score']:.1f}" for m, s in scores.items() if s.get("score") is not None]


def add_common_flags(parser: argparse.ArgumentParser, script: str, title: str) -> Parser:
    """The data, run, backbone and training flags every script shares; returns the backbone
    group, for the script's own backbone flags."""
    add_config_flags(parser.add_argument_group("data"), "data", DataConfig())
    add_run_flags(parser.add_argument_group("run"), script)
    group = parser.add_argument_group(title)
    add_config_flags(group, "model", ModelConfig())
    add_config_flags(group, "train", TrainConfig(), skip=("seed", "keep_initial"))
    return group


def common_configs(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """``args.data``, ``args.model_config`` and ``args.train`` from the common flags."""
    args.data = config_from_flags(parser, args, "data", DataConfig())
    args.model_config = config_from_flags(parser, args, "model", ModelConfig())
    args.train = config_from_flags(parser, args, "train", TrainConfig(), seed=args.seed)


def check_weightings(
    parser: argparse.ArgumentParser, weightings: Sequence[str | None], backbones: Sequence[str]
) -> None:
    """A parser error, before any work, when a loss weighting cannot train one of the
    ``backbones`` or cannot run under torchrun (``agents.weighting.check_training``)."""
    try:
        check_training(weightings, backbones, distributed.launched_world_size())
    except ValueError as exc:
        parser.error(str(exc))


def run_job(script: str, args: argparse.Namespace, job: Callable[[Path, Any], Mapping]) -> int:
    """``job(run folder, jobs.Job)`` with the common flags' data, seed, device and progress;
    prints the test table. Under ``torchrun`` rank 0 alone prints and shows bars, and the run
    folder must be given (``--run-dir``): a default one is stamped with each rank's clock."""
    main = distributed.launched_rank() == 0
    if args.run_dir is None and distributed.launched_world_size() > 1:
        raise SystemExit("error: under torchrun give every rank the same --run-dir")
    spec = jobs.Job(args.data, args.seed, args.device, progress=main and not args.no_progress,
                    fresh=args.fresh)  # fmt: skip
    folder = args.run_dir or default_run_dir(script, args.data.dataset, args.seed)
    title = f"{args.data.dataset}, seed {args.seed}"
    try:
        with (
            open(os.devnull, "w") as sink,
            contextlib.redirect_stdout(sys.stdout if main else sink),
        ):
            return report(lambda: job(folder, spec), folder, title)
    finally:
        distributed.shutdown()
