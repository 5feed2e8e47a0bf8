"""The benchmark's cells: each (dataset, seed, method) cell is the run folder of one ``jobs``
job, run in-process unless it has ``metrics.json``. A cell names the cells it depends on (the
backbone whose checkpoint it loads, the RMTL cell whose critics it uses); a dependency whose
output no longer loads is retrained in a fresh folder (same seed, same weights)."""

from __future__ import annotations

import argparse
import shutil
import time
from dataclasses import replace
from functools import partial
from pathlib import Path

import pandas as pd

from agents.checkpoint import load_critic, load_model
from rmtl_bench import jobs
from rmtl_bench.run_folder import DifferentConfig, read_json
from rmtl_bench.studies import PROFILES, RMTL, SUPERVISED, Profile, Variant, dataset_config


class MissingCell(Exception):
    """A cell that ``--report-only`` would have had to run."""


class Cells:
    """Runs each missing cell in-process and returns every cell's test metrics."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args, self.profile = args, PROFILES[args.profile]
        self.root = args.out / args.profile
        weighting = getattr(args, "weighting", "equal")
        if weighting != "equal":  # every training with another weighting, in its own folder
            train = {**self.profile.train, "weighting": weighting}
            self.profile = replace(self.profile, train=train)
            self.root = args.out / f"{args.profile}-{weighting}"
        self.ran: list[float] = []  # wall seconds of the cells this invocation ran
        self.reused: set[Path] = set()  # cells finished before this invocation started
        self.used: dict[Path, None] = {}  # every cell read or run, in order (an ordered set)
        self.started, self.started_wall = time.time(), time.perf_counter()

    def job(self, dataset: str, seed: int) -> jobs.Job:
        profile: Profile = self.profile
        data = dataset_config(dataset, profile.scale, self.args.data_dirs.get(dataset))
        return jobs.Job(data, seed, self.args.device, self.args.progress, self.args.cell_plots)

    def folder(self, dataset: str, seed: int, name: str) -> Path:
        return self.root / dataset / f"seed{seed}" / name

    def run(self, folder: Path, run) -> dict:
        """The cell's test metrics, running ``run(folder)`` first unless it finished before."""
        self.used[folder] = None
        if (folder / "metrics.json").is_file():
            # Not counted: cells that this invocation's --workers processes just finished.
            if (folder / "metrics.json").stat().st_mtime < self.started:
                self.reused.add(folder)
        elif self.args.report_only:
            raise MissingCell(str(folder.relative_to(self.root)))
        else:
            print(f"--- {folder.relative_to(self.root)}", flush=True)
            started = time.perf_counter()
            try:
                run(folder)
            except DifferentConfig:
                # An unfinished cell left by another configuration or an older version of this
                # package: the benchmark owns its cell folders, so it starts this one afresh.
                print(f"{folder.relative_to(self.root)}: unfinished, other configuration; rerun")
                shutil.rmtree(folder)
                run(folder)
            self.ran.append(time.perf_counter() - started)
        return read_json(folder / "metrics.json")["test"]

    def needed(self, folder: Path, output: Path, load, dependent: Path) -> None:
        """Start ``folder`` afresh if ``dependent`` is about to run and ``folder``'s finished
        ``output`` does not load (its summary was carried here without it, or it was deleted)."""
        if self.args.report_only or (dependent / "metrics.json").is_file():
            return
        if not (folder / "metrics.json").is_file():
            return
        try:
            load(output)
        except Exception as exc:  # noqa: BLE001 -- whatever stops it loading, retrain it
            print(f"{folder.relative_to(self.root)}: {output.name} does not load ({exc}); retrain")
            shutil.rmtree(folder)  # its summary is stale; a fresh run folder, not a resume

    def backbone(self, dataset: str, seed: int, model: str, for_cell: Path | None = None):
        """The backbone cell's checkpoint and test metrics."""
        folder, p = self.folder(dataset, seed, model), self.profile
        checkpoint = folder / "checkpoints" / f"{model}.pt"
        if for_cell is not None:
            self.needed(folder, checkpoint, load_model, for_cell)
        job = self.job(dataset, seed)
        run = partial(jobs.run_baselines, job=job, models=[model], model=p.model_config(),
                      train=p.train_config(seed))  # fmt: skip
        return checkpoint, self.run(folder, run)

    @staticmethod
    def scratch_name(model: str, weighting: str) -> str:
        """The cell of ``model`` trained from scratch with ``weighting`` (``equal``: the backbone
        cell itself)."""
        return model if weighting == "equal" else f"{model}-scratch-{weighting}"

    def scratch(self, dataset: str, seed: int, model: str, weighting: str) -> dict:
        """``{task: metrics}`` of ``model`` trained from scratch with loss ``weighting``."""
        if weighting == "equal":
            return self.backbone(dataset, seed, model)[1][model]
        folder, p = self.folder(dataset, seed, self.scratch_name(model, weighting)), self.profile
        train = replace(p.train_config(seed), weighting=weighting)
        run = partial(jobs.run_baselines, job=self.job(dataset, seed), models=[model],
                      model=p.model_config(), train=train)  # fmt: skip
        return self.run(folder, run)[model]

    def rmtl(self, dataset: str, seed: int, variant: Variant) -> dict:
        folder, p = self.folder(dataset, seed, variant.cell), self.profile
        checkpoint, _ = self.backbone(dataset, seed, variant.target, for_cell=folder)
        critics = (
            None if variant.source is None else self.critics(dataset, seed, variant.source, folder)
        )
        run = partial(
            jobs.run_rmtl, job=self.job(dataset, seed), backbone=variant.target,
            model=p.model_config(), train=p.train_config(seed),
            rmtl=p.rmtl_config(seed, **variant.rmtl), backbone_checkpoint=checkpoint,
            critics_from=critics,
        )  # fmt: skip
        return self.run(folder, run)[f"rmtl-{variant.target}"]

    def critics(self, dataset: str, seed: int, model: str, for_cell: Path) -> Path:
        """The critics checkpoint of the ``rmtl-<model>`` cell (running the cell if needed)."""
        folder = self.folder(dataset, seed, f"rmtl-{model}")
        path = folder / "checkpoints" / "critics.pt"
        self.needed(folder, path, load_critic, for_cell)
        self.rmtl(dataset, seed, Variant({}, model, f"rmtl-{model}"))
        return path

    def dple(self, dataset: str, seed: int) -> dict:
        folder, p = self.folder(dataset, seed, "d-ple"), self.profile
        checkpoint, _ = self.backbone(dataset, seed, "ple", for_cell=folder)
        run = partial(jobs.run_dple, job=self.job(dataset, seed), dple=p.dple_config(),
                      model=p.model_config(), train=p.train_config(seed),
                      backbone_checkpoint=checkpoint)  # fmt: skip
        return self.run(folder, run)["d-ple"]

    def method(self, dataset: str, seed: int, method: str) -> dict:
        """``{task: metrics}`` of one Table 1 method in one (dataset, seed)."""
        if method in SUPERVISED:
            return self.backbone(dataset, seed, method)[1][method]
        if method == "d-ple":
            return self.dple(dataset, seed)
        return self.rmtl(dataset, seed, Variant({}, RMTL[method], method))


def whole_seeds(seeds: list[int], frame_of_seed, what: str) -> tuple[pd.DataFrame, list[int]]:
    """``(rows, seeds)`` of the seeds whose cells are all finished (``frame_of_seed(seed)``
    raises ``MissingCell`` for the others, which are named and left out of the table)."""
    done, parts = [], []
    for seed in seeds:
        try:
            parts.append(frame_of_seed(seed))
            done.append(seed)
        except MissingCell as missing:
            print(f"seed {seed}: not finished ({missing} has no metrics.json)")
    if not done:
        raise SystemExit(f"no seed has every cell of {what} finished; nothing to tabulate")
    return pd.concat(parts, ignore_index=True), done
