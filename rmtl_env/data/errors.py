"""Errors raised by the data layer. Every message names the file, the column and what was expected."""

from __future__ import annotations


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
