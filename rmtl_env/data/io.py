"""Raw files (their header, digest and epoch units) and atomic writes."""

from __future__ import annotations

import contextlib
import csv
import gzip
import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from rmtl_env.data.errors import DataFormatError


def find_raw_file(folder: Path, name: str) -> Path | None:
    """Return ``folder/name`` or ``folder/name.gz`` if either exists; both at once are refused,
    since they may differ and using one silently would hide the other."""
    found = [c for c in (folder / name, folder / f"{name}.gz") if c.is_file()]
    if len(found) == 2:
        raise DataFormatError(f"{folder} holds both {name} and {name}.gz; keep only one of them")
    return found[0] if found else None


def file_hash(path: Path, algorithm: str = "md5", chunk: int = 1 << 22) -> str:
    """The hex digest of a file's bytes, read block by block."""
    digest = hashlib.new(algorithm)
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def file_digest(path: Path) -> dict[str, object]:
    """Size and md5 of a file (what ``meta.json`` records for each raw file)."""
    return {"file": path.name, "bytes": path.stat().st_size, "md5": file_hash(path)}


def _read_header(path: Path) -> list[str]:
    """The first line of a CSV file (plain or gzip) as column names; the rows are not parsed,
    so a damaged row further down is left to the reader that names its line."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", newline="", encoding="utf-8") as handle:
        return next(csv.reader(handle), [])


def require_header(path: Path, columns: Sequence[str], label: str) -> list[str]:
    """The header of the CSV file ``path`` (``label`` names it in errors), which must hold
    ``columns``: a ``DataFormatError`` for an empty or unreadable file or missing columns."""
    if path.stat().st_size == 0:
        raise DataFormatError(f"{label} is empty; expected a header with columns {list(columns)}")
    try:
        header = _read_header(path)
    except (UnicodeDecodeError, csv.Error) as exc:
        raise DataFormatError(f"{label}: cannot read a CSV header ({exc})") from exc
    except OSError as exc:  # e.g. "Truncated compressed stream" from a cut-off .gz
        raise DataFormatError(f"{label} cannot be read ({exc}); {_CORRUPT_HINT}") from exc
    missing = [c for c in columns if c not in header]
    if missing:
        raise DataFormatError(
            f"{label}: missing column(s) {missing}; found columns {header}, "
            f"expected at least {list(columns)}"
        )
    return header


_CORRUPT_HINT = "the file may be truncated or corrupt: download or copy it again"


def plain(value: object) -> object:
    """A numpy scalar as its Python value, for messages (``18``, not ``np.int64(18)``)."""
    return value.item() if isinstance(value, np.generic) else value


def _umask() -> int:
    """The process's umask (read by setting it and putting it back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_directory(final: Path) -> Iterator[Path]:
    """Yield a temporary folder beside ``final`` and rename it to ``final`` when the block ends.

    Readers never see a half-written folder. If another process finished ``final`` first,
    ours is discarded and theirs is kept.
    """
    final.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=final.parent))
    staging.chmod(0o777 & ~_umask())  # mkdtemp makes it private; a cache may be shared
    try:
        yield staging
        try:
            os.replace(staging, final)
        except OSError:
            if not final.is_dir():
                raise
            shutil.rmtree(staging, ignore_errors=True)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def atomic_write_bytes(path: Path, payload: bytes) -> None:
    """Write a file through a temporary name and an atomic rename. A file-system fault (a full
    disk, a read-only or missing folder, no permission) is an ``OSError`` naming ``path``, and
    leaves neither the file nor the temporary one behind."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.is_dir():
            raise IsADirectoryError(f"cannot write {path}: it is a folder")
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    except OSError as exc:
        raise _naming(exc, path) from None
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp's 0600 would hide results from other users
        with os.fdopen(fd, "wb") as handle:
            handle.write(payload)
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if isinstance(exc, OSError):
            raise _naming(exc, path) from None
        raise


def _naming(exc: OSError, path: Path) -> OSError:
    """``exc`` with a message that names the file being written (``[Errno 28] No space left on
    device`` alone names nothing)."""
    if str(path) in str(exc):
        return exc
    return type(exc)(exc.errno, f"cannot write {path}: {exc.strerror or exc}")


# Epoch milliseconds after 1973 are >= 1e11; epoch seconds after 1979 are in [3e8, 1e11).
_MS_EPOCH_MIN, _S_EPOCH_MIN = 1e11, 3e8


def check_epoch_unit(values: np.ndarray, unit: str, label: str, column: str) -> None:
    """Refuse epoch timestamps whose magnitude says they are in the other unit (seconds read as
    milliseconds would merge sessions 1000x shorter in real time, and drop events as
    duplicates). Only a column whose every value is in the other unit's modern range is refused,
    so hand-made logs that count from 0 are left alone."""
    values = np.asarray(values, dtype=np.float64)
    if len(values) == 0:
        return
    high, low = float(np.nanmax(values)), float(np.nanmin(values))
    if unit == "ms" and low >= _S_EPOCH_MIN and high < _MS_EPOCH_MIN:
        raise DataFormatError(
            f"{label}: column '{column}' looks like epoch seconds (largest value {high:.0f}), "
            "but milliseconds are expected; multiply it by 1000 (own logs: timestamp_unit='s')"
        )
    if unit == "s" and low >= _MS_EPOCH_MIN:
        raise DataFormatError(
            f"{label}: column '{column}' looks like epoch milliseconds (smallest value "
            f"{low:.0f}), but timestamp_unit='s' was declared; use timestamp_unit='ms'"
        )
