"""Dataset catalog: names to loaders, and the processed-dataset cache.

``load_dataset(name, **params)`` accepts

- ``"retailrocket"``: the Kaggle files in ``data_dir`` (default ``$RMTL_DATA_DIR/raw/retailrocket``);
- ``"kuairand-1k"``: the Zenodo files in ``data_dir`` (default ``$RMTL_DATA_DIR/raw/kuairand-1k``);
- ``"kuairand-27k"``: the KuaiRand-27K files (same schema, 322M log rows, prepared out of core);
- ``"kuairand-27k-synthetic"``: a 27K twin in the real 27K file names, ``scale`` a fraction of
  full size (``0.05``, ``"1/20"``) or ``tiny``/``small``;
- ``"retailrocket-synthetic"`` and ``"kuairand-synthetic"``: the synthetic twins (``scale``,
  ``seed``), whose raw files are generated once into the cache and then read by the real loaders;
- a path to a processed dataset folder (``meta.json`` inside), loaded as is;
- a path to a CSV, Parquet or JSON-lines log with ``roles=ColumnRoles(...)`` (or a path to a
  roles JSON).

DuckDB prepares every source (``rmtl_env.data.engine``) under ``memory_limit`` and ``threads``.

Processed datasets are cached under ``$RMTL_DATA_DIR`` (default ``~/.cache/rmtl``) in
``processed/<name>-<key>``, where the key hashes the name, every parameter and the identity of
the raw files (size and modification time); a second load with the same parameters reads the
cached Parquet. Writes are atomic.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import warnings
from dataclasses import fields
from pathlib import Path
from typing import Any

from rmtl_env.data import custom, kuairand, retailrocket
from rmtl_env.data.dataset import META_FILE, SessionDataset
from rmtl_env.data.io import atomic_directory
from rmtl_env.data.processing import ProcessingConfig
from rmtl_env.data.stream import StreamedDataset
from rmtl_env.data.synthetic import twin_fraction, twin_knobs
from rmtl_env.data.synthetic.common import check_scale

GENERATOR_VERSION = 2
ENGINES = ("pandas", "duckdb")
"""The values the retired ``engine`` argument still accepts (DuckDB prepares every source)."""
CATALOG = (
    "retailrocket",
    "kuairand-1k",
    "kuairand-27k",
    "retailrocket-synthetic",
    "kuairand-synthetic",
    "kuairand-27k-synthetic",
)
DEFAULT_DATASET = "retailrocket-synthetic"


def cache_root() -> Path:
    """``$RMTL_DATA_DIR`` or ``~/.cache/rmtl``."""
    # An empty RMTL_DATA_DIR means unset: Path("") is the working folder, where processed/ and
    # raw/ folders would land in the user's checkout.
    return Path(os.environ.get("RMTL_DATA_DIR") or Path.home() / ".cache" / "rmtl").expanduser()


def _split_params(params: dict, config_class: type) -> tuple[dict, dict]:
    names = {f.name for f in fields(config_class)}
    mine = {k: v for k, v in params.items() if k in names}
    return mine, {k: v for k, v in params.items() if k not in names}


def _processing(params: dict) -> tuple[ProcessingConfig, dict]:
    mine, rest = _split_params(params, ProcessingConfig)
    return ProcessingConfig(**mine), rest


def _reject(rest: dict, name: str, accepted: list[str]) -> None:
    if rest:
        raise TypeError(
            f"load_dataset({name!r}): unknown parameter(s) {sorted(rest)}; accepted: {sorted(accepted)}"
        )


def synthetic_raw_dir(name: str, scale: str, seed: int, knobs: dict | None = None) -> Path:
    """Folder of a twin's raw files, generated atomically on first use (``knobs``: the
    generator's ``TWIN_KNOBS`` that are set, part of the folder's name)."""
    from rmtl_env.data.synthetic import write_twin

    knobs = knobs or {}
    tag = "".join(f"-{k}{v:g}" for k, v in sorted(knobs.items()))
    folder = cache_root() / "raw" / f"{name}-{scale}-seed{seed}{tag}-v{GENERATOR_VERSION}"
    if not folder.is_dir():
        with atomic_directory(folder) as staging:
            write_twin(name, staging, scale=scale, seed=seed, **knobs)
    return folder


def _file_identity(paths: list[Path]) -> list:
    return [[str(p.resolve()), p.stat().st_size, p.stat().st_mtime_ns] for p in paths]


MEMORY_SIZE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*(B|KB|MB|GB|TB|KiB|MiB|GiB|TiB)\s*", re.I)


def check_engine_settings(memory_limit: str, threads: int) -> None:
    """DuckDB's ``memory_limit`` (a positive size: ``"4GB"``, ``"500MB"``, ``"1.5GiB"``) and
    ``threads`` (an integer >= 1), checked before any work starts."""
    size = MEMORY_SIZE.fullmatch(str(memory_limit))
    if size is None or float(size.group(1)) <= 0:
        raise ValueError(
            f"memory_limit must be a positive size such as '4GB', '500MB' or '1.5GiB', got "
            f"{memory_limit!r}"
        )
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ValueError(f"threads must be an integer >= 1, got {threads!r}")


def load_dataset(
    name: str | os.PathLike = DEFAULT_DATASET,
    *,
    data_dir: str | os.PathLike | None = None,
    scale: str = "small",
    seed: int = 0,
    refresh: bool = False,
    roles: custom.ColumnRoles | str | os.PathLike | None = None,
    engine: str | None = None,
    memory_limit: str = "4GB",
    threads: int = 2,
    stream: bool = False,
    twin: dict[str, float] | None = None,
    **params: Any,
) -> SessionDataset | StreamedDataset:
    """Load (preparing with DuckDB and caching on first use) a processed session dataset.

    Args:
        name: a catalog name, a processed dataset folder or a log file (see the module docstring).
        data_dir: folder of the real raw files.
        scale: ``tiny``, ``small`` or ``full`` (synthetic twins only).
        seed: generator seed (synthetic twins only).
        refresh: rebuild even if a cached copy exists.
        roles: column roles of a log file.
        engine: no longer needed (DuckDB prepares every source); ``"pandas"`` or ``"duckdb"`` is
            accepted with a ``FutureWarning`` and changes nothing.
        memory_limit: DuckDB's memory limit (``"4GB"``, ``"500MB"``); it spills beyond it.
        threads: DuckDB's threads.
        stream: return a ``StreamedDataset`` (its splits read from Parquet block by block,
            ``rmtl_env.data.stream``) instead of loading the impressions into memory.
        twin: knobs of the RetailRocket twin's generator (``conflict``, ``noise``:
            ``rmtl_env.data.synthetic.TWIN_KNOBS``); unset or 0 is the standard twin.
        **params: loader parameters (``RetailRocketConfig`` or ``KuaiRandConfig`` fields) and
            processing parameters (``split_ratios``, ``min_count``, ``share_threshold``).
    """
    path = Path(name)
    retire_engine(engine)
    check_engine_settings(memory_limit, threads)
    knobs = twin_knobs(str(name), twin or {})  # checked before anything is read or written
    if str(name) not in CATALOG:
        if (path / META_FILE).is_file():
            _reject(params, str(name), [])
            return _open(path, stream)
        if path.is_file() and roles is not None:
            return _load_custom(path, roles, refresh, params, stream, (memory_limit, threads))
        raise ValueError(
            f"unknown dataset {str(name)!r}: expected one of {list(CATALOG)}, a processed dataset "
            f"folder (with {META_FILE}), or a CSV, Parquet or JSON-lines log file together with "
            "roles=..."
        )
    engine_settings = (memory_limit, threads)
    return _load_catalog(str(name), data_dir, scale, seed, refresh, knobs, engine_settings,
                         stream, params)  # fmt: skip


def _load_catalog(name: str, data_dir, scale: str, seed: int, refresh: bool, knobs: dict,
                  engine: tuple, stream: bool, params: dict):  # fmt: skip
    """A catalog dataset (``load_dataset`` with a catalog name)."""
    processing, rest = _processing(params)
    if name.startswith("retailrocket"):
        loader_params, rest = _split_params(rest, retailrocket.RetailRocketConfig)
        _reject(rest, name, _accepted(retailrocket.RetailRocketConfig))
        config = retailrocket.RetailRocketConfig(**loader_params)
    else:
        loader_params, rest = _split_params(rest, kuairand.KuaiRandConfig)
        _reject(rest, name, _accepted(kuairand.KuaiRandConfig))
        config = kuairand.KuaiRandConfig(**loader_params)

    if name.endswith("-synthetic"):
        # The 27K twin's scale is a fraction of full size (named in its canonical form).
        scale = f"{twin_fraction(scale):g}" if "27k" in name else check_scale(scale)
        raw_dir = synthetic_raw_dir(name, scale, int(seed), knobs)
        identity = {"scale": scale, "seed": int(seed), "generator": GENERATOR_VERSION}
        identity |= {"knobs": knobs} if knobs else {}
    else:
        raw_dir = Path(data_dir) if data_dir is not None else cache_root() / "raw" / name
        identity = None
    if name.startswith("retailrocket"):
        files = retailrocket.RetailRocketFiles.in_folder(raw_dir, "retailrocket-synthetic")
        paths, prepare = [files.events, *files.properties], retailrocket.prepare_retailrocket
    else:
        files = kuairand.KuaiRandFiles.in_folder(
            raw_dir, config.include_random_log, version="27k" if "27k" in name else "1k"
        )
        paths = [*files.logs, files.user_features, files.video_features]
        prepare = kuairand.prepare_kuairand
    key_source = {
        "name": name,
        "loader": repr(config),
        "processing": repr(processing),
        "raw": identity or _file_identity(paths),
    }
    write = lambda folder: prepare(files, config, processing, folder, name, *engine)  # noqa: E731
    dataset = _cached(name, key_source, refresh, write, stream=stream)
    if identity:
        dataset.meta["params"]["synthetic"] = identity
    return dataset


def retire_engine(engine: str | None) -> None:
    """The retired ``engine`` argument: accepted with a ``FutureWarning``, an unknown value
    refused."""
    if engine is None:
        return
    if engine not in ENGINES:
        raise ValueError(f"engine must be {' or '.join(map(repr, ENGINES))}, got {engine!r}")
    warnings.warn(
        f"engine={engine!r} is no longer needed: DuckDB prepares every source (the processed "
        "dataset is the one the pandas engine gave); drop the argument",
        FutureWarning,
        stacklevel=3,
    )


def _accepted(config_class: type) -> list[str]:
    return [f.name for f in fields(config_class)] + [f.name for f in fields(ProcessingConfig)]


def folder_name(stem: str) -> str:
    """A log file's name as a cache-folder name: characters outside ASCII letters, digits,
    ``.``, ``_`` and ``-`` become ``_``, with a short hash of the original name when any did (so
    ``données.csv`` and ``donnees.csv`` stay apart)."""
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", stem).lstrip("._-") or "log"
    if safe == stem:
        return stem
    return f"{safe}-{hashlib.sha256(stem.encode()).hexdigest()[:8]}"


def _load_custom(path: Path, roles, refresh: bool, params: dict, stream: bool, engine: tuple):
    if not isinstance(roles, custom.ColumnRoles):
        roles = custom.ColumnRoles.from_json(roles)
    processing, rest = _processing(params)
    dataset_name = str(rest.pop("dataset_name", None) or folder_name(path.stem))
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", dataset_name):
        # It names the cache folder: a path such as "../../x" would write outside the cache.
        raise ValueError(
            f"dataset_name must be letters, digits, '.', '_' or '-' (a folder name), "
            f"got {dataset_name!r}"
        )
    _reject(rest, str(path), [f.name for f in fields(ProcessingConfig)] + ["dataset_name"])
    key_source = {
        "name": dataset_name,
        "roles": repr(roles),
        "processing": repr(processing),
        "raw": _file_identity([path]),
    }
    memory_limit, threads = engine
    write = lambda folder: custom.prepare_custom(  # noqa: E731
        path, roles, processing, folder, dataset_name, memory_limit, threads
    )
    return _cached(dataset_name, key_source, refresh, write, stream=stream)


def _cached(name: str, key_source: dict, refresh: bool, write, stream: bool = False):
    """The cached dataset of ``key_source``, else ``write(folder)`` (a preparation that writes
    the folder, returning its meta) into a staging folder renamed into place; ``stream``:
    returned as a ``StreamedDataset``."""
    key = hashlib.sha256(json.dumps(key_source, sort_keys=True, default=str).encode()).hexdigest()
    folder = cache_root() / "processed" / f"{name}-{key[:16]}"
    if folder.is_dir() and not refresh:
        dataset = _open(folder, stream)
        dataset.meta["path"] = str(folder)
        return dataset
    _check_writable(folder.parent)  # before the preparation, which can take minutes
    with atomic_directory(folder) as staging:
        meta = write(staging)
        meta["cache_key"] = key
        (staging / META_FILE).write_text(json.dumps(meta, indent=2))
        if refresh and folder.is_dir():  # only once the new one is complete
            import shutil

            shutil.rmtree(folder)
    dataset = _open(folder, stream)
    dataset.meta["path"] = str(folder)
    return dataset


def _open(folder: Path, stream: bool) -> SessionDataset | StreamedDataset:
    """A processed folder, streamed or loaded into memory."""
    return StreamedDataset(folder) if stream else SessionDataset.load(folder)


def _check_writable(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        writable = os.access(folder, os.W_OK | os.X_OK)
    except OSError:
        writable = False
    if not writable:
        raise PermissionError(
            f"the dataset cache {folder} is not writable; set RMTL_DATA_DIR to a folder you can "
            "write to (the processed dataset is built there once, then reused)"
        )
