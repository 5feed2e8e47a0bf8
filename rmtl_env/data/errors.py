"""Errors raised by the data layer. Every message names the file, the column and what was expected."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable


class DataFormatError(ValueError):
    """A raw or processed file does not have the expected format."""


class MissingRawFilesError(FileNotFoundError):
    """Raw files of a real dataset are not where the loader looks for them."""

    def __init__(
        self, dataset: str, data_dir: str, missing: list[str], url: str, synthetic: str
    ) -> None:
        listed = "\n".join(f"  - {name}" for name in missing)
        super().__init__(
            f"{dataset}: raw files missing in {data_dir!s}:\n{listed}\n"
            f"Download them from {url} and put them (plain or .gz) in that folder, "
            f"or pass data_dir=... . "
            f"To run without the real files use the synthetic twin: "
            f'load_dataset("{synthetic}") or `python -m rmtl_env.data stats {synthetic}`.'
        )
        self.missing = missing


def name_list(value: object, argument: str) -> list[str]:
    """``value`` as a list of names, refusing a bare string (which Python would split into
    letters: ``tasks="ctr"`` is ``["c", "t", "r"]``) and anything that is not names."""
    if isinstance(value, str):
        raise ValueError(f"{argument} must be a list of names, got the string {value!r}; "
                         f"write [{value!r}]")  # fmt: skip
    try:
        names = list(value)
    except TypeError:
        raise ValueError(f"{argument} must be a list of names, got {value!r}") from None
    if not all(isinstance(name, str) for name in names):
        raise ValueError(f"{argument} must be a list of names (strings), got {names!r}")
    return names


class CommandError(Exception):
    """A user error of a command: its message names the argument or file and what was expected,
    and ``run_command`` prints it as the one line of the failure."""


# What a user's input or machine can cause (bad values, missing or unwritable files, a full disk,
# a memory limit too small); anything else is a bug and keeps its traceback.
USER_ERRORS = (CommandError, ValueError, OSError, MemoryError)  # OSError: files, disks, folders
DEBUG_ENV = "RMTL_DEBUG"


def run_command(main: Callable[[list[str]], int | None], argv: list[str] | None = None) -> int:
    """Run a command's ``main(argv)``. A user error (``USER_ERRORS``, or ``SystemExit`` with a
    message) prints one line, ``error: <message>``, on stderr and returns 2; ``--debug`` among
    the arguments or ``RMTL_DEBUG=1`` in the environment shows the traceback instead."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv or os.environ.get(DEBUG_ENV, "") not in ("", "0")
    argv = [a for a in argv if a != "--debug"]
    try:
        return int(main(argv) or 0)
    except SystemExit as stop:
        if not isinstance(stop.code, str) or debug:
            raise
        message = stop.code
    except USER_ERRORS as exc:
        if debug:
            raise
        message = str(exc) or type(exc).__name__
    line = " ".join(part.strip() for part in message.splitlines() if part.strip())
    line = line.removeprefix("error: ")
    print(f"error: {line} (details: --debug or {DEBUG_ENV}=1)", file=sys.stderr)
    return 2
