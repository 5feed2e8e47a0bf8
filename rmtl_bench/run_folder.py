"""The run folder and its resume mechanism, shared by every script and the benchmark.

A run folder holds ``config.json`` (the validated configuration and the machine, written when the
run starts), ``stages/<name>.json`` (one per finished stage), ``checkpoints/``, plots, and
``metrics.json``/``metrics.csv``, written last: a folder with ``metrics.json`` is a finished run.
Running again into the same folder resumes it: a stage counts as done only if its record exists
and its outputs load, and once a stage is redone every later stage is redone too. Every write is
atomic (write, then rename).

Under ``torchrun`` every rank runs every stage (``agents.distributed``), but only rank 0 writes
the folder and decides whether a stage resumes; the others follow its decision and load what it
wrote.
"""

from __future__ import annotations

import json
import math
import os
import platform
import shutil
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TypeVar

import torch

from agents import distributed
from agents.runtime import denormals_flushed
from rmtl_bench.tables import metrics_frame
from rmtl_env import __version__
from rmtl_env.data.io import atomic_write_bytes, file_hash

T = TypeVar("T")


def write_json(path: Path, payload: object) -> None:
    """Strict JSON (``NaN`` and infinities, e.g. an undefined AUC, are written as ``null``)."""
    text = json.dumps(_finite(payload), indent=2, default=_json_default, allow_nan=False)
    atomic_write_bytes(Path(path), (text + "\n").encode())


def _finite(value: object) -> object:
    if hasattr(value, "item") and getattr(value, "ndim", None) == 0:  # NumPy and torch scalars
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def read_json(path: Path) -> dict:
    return json.loads(Path(path).read_text())


def json_roundtrip(payload: object) -> object:
    """``payload`` as it reads back from JSON (tuples become lists, paths strings)."""
    return json.loads(json.dumps(payload, default=_json_default))


def _json_default(value: object) -> object:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, tuple | set):
        return list(value)
    if hasattr(value, "item"):
        return value.item()
    raise TypeError(f"cannot write {type(value).__name__} to JSON")


def environment_info() -> dict[str, str | int]:
    """The software and hardware a run used, stored in ``config.json``."""
    return {
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "platform": platform.platform(),
        "cpu": cpu_name(),
        "logical_cpus": os.cpu_count() or 0,
        "torch_threads": torch.get_num_threads(),
        "flush_denormal": denormals_flushed(),
    }


def cpu_name() -> str:
    """The CPU's model name from ``/proc/cpuinfo``, else what ``platform`` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def default_run_dir(script: str, dataset: str, seed: int) -> Path:
    """``runs/<script>/<dataset>-seed<seed>-<UTC time>`` under the working directory."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    return Path("runs") / script / f"{Path(dataset).name}-seed{seed}-{stamp}"


def run_seconds(folder: Path) -> float:
    """A finished run's wall time: from its ``metrics.json``, else (benchmark cells of older versions)
    its ``cell.json``, else the time between ``config.json`` and ``metrics.json``."""
    metrics = read_json(folder / "metrics.json")
    if "seconds" in metrics:
        return float(metrics["seconds"])
    if (folder / "cell.json").is_file():
        return float(read_json(folder / "cell.json")["seconds"])
    return (folder / "metrics.json").stat().st_mtime - (folder / "config.json").stat().st_mtime


def copy_summaries(cell: Path, target: Path) -> None:
    """Copy a run folder's summaries (every JSON and CSV file, none under ``checkpoints``) to
    ``target``, keeping the layout: what a committed result keeps of a run."""
    for path in sorted(cell.rglob("*")):
        if path.is_file() and path.suffix in (".json", ".csv") and "checkpoints" not in path.parts:
            atomic_write_bytes(target / path.relative_to(cell), path.read_bytes())


def export_cells(root: Path, target: Path) -> int:
    """Copy the summaries of every finished cell under ``root`` (one with ``metrics.json``) to
    ``target``, keeping the layout; returns the number of cells. A benchmark run on ``target``
    reuses them and retrains a backbone whose checkpoint a remaining cell needs."""
    cells = sorted(metrics.parent for metrics in root.glob("*/seed*/*/metrics.json"))
    for cell in cells:
        copy_summaries(cell, target / cell.relative_to(root))
    return len(cells)


class DifferentConfig(Exception):
    """The folder holds a run with another configuration."""


MANIFEST = "manifest.json"


def flat_config(config: Mapping, prefix: str = "") -> dict[str, object]:
    """``{"train.lr": 0.001, ...}``: a nested configuration as dotted keys."""
    out: dict[str, object] = {}
    for key, value in config.items():
        if isinstance(value, Mapping):
            out.update(flat_config(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def config_differences(old: Mapping, new: Mapping) -> list[str]:
    """The dotted keys whose values differ between two configurations."""
    a, b = flat_config(old), flat_config(new)
    return [k for k in sorted(set(a) | set(b)) if a.get(k, "<absent>") != b.get(k, "<absent>")]


class RunFolder:
    """One run's folder. ``config`` must be fully validated before the folder is opened.

    Besides ``config.json`` the folder keeps ``manifest.json``: the package version, the data's
    fingerprint (``data``, e.g. the processed dataset's cache key) and, per finished stage, the
    sha256 of every file it wrote under ``checkpoints/``. A resume must match all of it: another
    configuration, version or data is refused naming what differs, and a checkpoint changed
    since its stage wrote it is refused naming the file; ``fresh=True`` (``--fresh``) starts the
    folder over instead."""

    def __init__(self, path: Path, config: Mapping[str, object], data: str | None = None,
                 fresh: bool = False) -> None:  # fmt: skip
        self.path = Path(path)
        self.config = json_roundtrip(dict(config))
        self.data, self.fresh = data, fresh
        self.stage_seconds: dict[str, float] = {}
        self.redoing = False  # a stage ran this time: every later stage is stale
        self.started = time.perf_counter()
        self.writer = distributed.is_main()  # rank 0 (or the only process) writes the folder

    @property
    def finished(self) -> bool:
        return (self.path / "metrics.json").is_file()

    def checkpoint(self, name: str) -> Path:
        return self.path / "checkpoints" / name

    def open(self) -> RunFolder:
        """Write ``config.json``, or check that the folder's run has the same configuration
        (rank 0 does; every rank raises its ``DifferentConfig``)."""
        distributed.from_main(self._open)
        return self

    def _open(self) -> None:
        if self.path.exists() and not self.path.is_dir():
            raise DifferentConfig(f"run folder {self.path} is a file; choose a folder")
        previous, record = self.path / "config.json", {"environment": environment_info()}
        if self.fresh and previous.is_file():  # only a run folder is ever cleared
            for child in self.path.iterdir():
                shutil.rmtree(child) if child.is_dir() else child.unlink()
            print(f"Starting {self.path} afresh (--fresh)")
        if previous.is_file():
            old = read_json(previous)
            first = old.pop("environment", None)
            resumed = old.pop("resumed", [])
            if old != self.config:
                differ = config_differences(old, self.config)
                raise DifferentConfig(
                    f"{self.path} holds a run with a different configuration ({', '.join(differ)} "
                    "differ); choose another --run-dir, or pass --fresh to start it over"
                )
            self._check_manifest()
            print(f"Resuming {self.path}")
            # The first start's machine stays the record; each resume is added beside it.
            record = {"environment": first, "resumed": [*resumed, environment_info()]}
        self.path.mkdir(parents=True, exist_ok=True)
        write_json(previous, {**self.config, **record})
        if not (self.path / MANIFEST).is_file():
            write_json(self.path / MANIFEST, self._new_manifest())

    def _new_manifest(self) -> dict:
        return {"version": __version__, "data": self.data, "stages": {}}

    def _check_manifest(self) -> None:
        """The recorded version and data equal this run's, and every stage's checkpoints are as
        the stage wrote them (folders of older versions have no manifest and are not checked)."""
        path = self.path / MANIFEST
        if not path.is_file():
            return
        manifest = read_json(path)
        for what, recorded, now in (("package version", manifest.get("version"), __version__),
                                    ("data", manifest.get("data"), self.data)):  # fmt: skip
            if recorded != now:
                raise DifferentConfig(
                    f"{self.path} was written with {what} {recorded!r}, this run has {now!r}; "
                    "choose another --run-dir, or pass --fresh to start it over"
                )
        for stage, files in manifest.get("stages", {}).items():
            for name, digest in files.items():
                file = self.path / "checkpoints" / name
                if file.is_file() and file_hash(file, "sha256") != digest:
                    raise DifferentConfig(
                        f"{file} changed since stage '{stage}' wrote it; restore it, or pass "
                        "--fresh to start the run over"
                    )

    def _record_outputs(self, name: str) -> None:
        """Stage ``name``'s checkpoints (the files under ``checkpoints/`` that no earlier stage
        recorded, or that it rewrote) with their sha256, into the manifest."""
        path = self.path / MANIFEST
        manifest = read_json(path) if path.is_file() else self._new_manifest()
        earlier = {f: d for stage, files in manifest["stages"].items() if stage != name
                   for f, d in files.items()}  # fmt: skip
        folder = self.path / "checkpoints"
        files = sorted(p for p in folder.rglob("*") if p.is_file()) if folder.is_dir() else []
        mine = {}
        for file in files:
            digest = file_hash(file, "sha256")
            key = str(file.relative_to(folder))
            if earlier.get(key) != digest:
                mine[key] = digest
        manifest["stages"][name] = mine
        write_json(path, manifest)

    def resume(self, name: str, load: Callable[[], T]) -> tuple[dict, T] | None:
        """``(record, outputs)`` of stage ``name`` if it finished before and ``load()`` reads its
        outputs back; None if it has to run. Rank 0 decides; the other ranks then load."""
        loaded: list[T] = []

        def finished_record() -> dict | None:
            path = self.path / "stages" / f"{name}.json"
            if self.redoing or not path.is_file():
                return None
            try:
                loaded.append(load())
            except Exception as exc:  # any unreadable output (truncated, garbage, missing): redo
                print(f"[{name}] finished before, but its output does not load ({exc}); "
                      "running it again")  # fmt: skip
                return None
            return read_json(path)

        record = distributed.from_main(finished_record)
        if record is None:
            return None
        outputs = loaded[0] if loaded else load()
        self.stage_seconds[name] = record.get("seconds", 0.0)
        print(f"[{name}] already finished in this run folder; reusing it")
        return record, outputs

    def finish(self, name: str, started: float, **record: object) -> dict:
        """Record stage ``name`` as done (its outputs are written)."""
        self.stage_seconds[name] = time.perf_counter() - started
        self.redoing = True
        record = {"seconds": self.stage_seconds[name], **record}
        if self.writer:
            self._record_outputs(name)
            write_json(self.path / "stages" / f"{name}.json", record)
        distributed.barrier()  # rank 0's outputs of the stage exist before any rank loads them
        print(f"[{name}] done in {self.stage_seconds[name]:.1f} s")
        return json_roundtrip(record)

    def stage(self, name: str, load: Callable[[], T], run: Callable[[], dict]) -> tuple[dict, T]:
        """Stage ``name``'s ``(record, outputs)``: resumed if it finished before and ``load()``
        reads its outputs, else ``run()`` writes them and returns the stage's record."""
        resumed = self.resume(name, load)
        if resumed is not None:
            return resumed
        started = time.perf_counter()
        try:
            record = run()
        except OSError as exc:  # a full disk, a read-only folder: say which stage it stopped
            raise type(exc)(exc.errno, f"stage '{name}' of {self.path} stopped: "
                            f"{exc.strerror or exc}") from None  # fmt: skip
        return self.finish(name, started, **record), load()

    def write_file(self, name: str, data: bytes) -> None:
        """``data`` into ``name`` in the folder (atomically; rank 0 only)."""
        if self.writer:
            atomic_write_bytes(self.path / name, data)

    def write_metrics(self, results: Mapping[str, Mapping], **extra: object) -> None:
        """The last write of a run: ``metrics.csv`` (one row per method and task), then
        ``metrics.json`` (results, ``extra``, this invocation's wall time)."""
        if not self.writer:
            return
        csv = metrics_frame(results).to_csv(index=False, float_format="%.6f")
        atomic_write_bytes(self.path / "metrics.csv", csv.encode())
        seconds = time.perf_counter() - self.started
        write_json(self.path / "metrics.json", {"test": results, **extra, "seconds": seconds})
