"""Shared fixtures: private cache and SB3 log folders for the whole run, and the real raw samples.

The scripts in ``train/`` are scripts, not a package: tests import them by name (``import
benchmark``), so their folder goes on ``sys.path`` here, once. Their support code is the installed
package ``rmtl_bench``."""

from __future__ import annotations

import itertools
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

SHARED_RAW = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "raw"
SCRIPTS = Path(__file__).resolve().parents[1] / "train"
if str(SCRIPTS) not in sys.path:
    sys.path.insert(0, str(SCRIPTS))


@pytest.fixture(scope="session", autouse=True)
def private_folders(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Point ``$RMTL_DATA_DIR`` at a fresh folder so tests never touch a user's cache, and
    ``$SB3_LOGDIR`` beside it: stock SB3 models learning without a logger (as the README's
    examples do) otherwise leave an empty ``SB3-<date>`` folder in /tmp."""
    cache = tmp_path_factory.mktemp("rmtl-cache")
    with pytest.MonkeyPatch.context() as env:
        env.setenv("RMTL_DATA_DIR", str(cache))
        env.setenv("SB3_LOGDIR", str(tmp_path_factory.mktemp("sb3-logs")))
        yield cache


@pytest.fixture(scope="session")
def shared_raw() -> Path:
    """``../shared/data/raw`` beside the checkout; tests that need it skip when it is absent."""
    if not SHARED_RAW.is_dir():
        pytest.skip(f"real raw samples not found at {SHARED_RAW} (a user's clone has no ../shared)")
    return SHARED_RAW


@pytest.fixture
def prepare(tmp_path):
    """``prepare(files, config=None, processing=None)``: the processed dataset of raw files
    (``RetailRocketFiles`` or ``KuaiRandFiles``, e.g. an events file alone), written by the
    engine into a fresh folder and loaded."""
    numbers = itertools.count()

    from rmtl_env.data.dataset import SessionDataset
    from rmtl_env.data.kuairand import KuaiRandConfig, KuaiRandFiles, prepare_kuairand
    from rmtl_env.data.processing import ProcessingConfig
    from rmtl_env.data.retailrocket import (
        RetailRocketConfig,
        RetailRocketFiles,
        prepare_retailrocket,
    )

    def run(files, config=None, processing=None):
        out = tmp_path / f"processed-{next(numbers)}"
        out.mkdir()
        processing = processing or ProcessingConfig()
        if isinstance(files, RetailRocketFiles):
            prepare_retailrocket(files, config or RetailRocketConfig(), processing, out,
                                 progress=False)  # fmt: skip
        elif isinstance(files, KuaiRandFiles):
            prepare_kuairand(files, config or KuaiRandConfig(), processing, out, progress=False)
        else:
            raise TypeError(f"files must be RetailRocketFiles or KuaiRandFiles, got {files!r}")
        return SessionDataset.load(out)

    return run


@pytest.fixture(scope="session")
def rr_small():
    from rmtl_env.data import load_dataset

    return load_dataset("retailrocket-synthetic", scale="small", seed=0)


@pytest.fixture(scope="session")
def kr_small():
    from rmtl_env.data import load_dataset

    return load_dataset("kuairand-synthetic", scale="small", seed=0)


ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"


def doc_pages() -> list[Path]:
    """The README and every documentation page, where the examples live."""
    return [README, *sorted((ROOT / "docs").glob("*.md"))]


def doc_text(heading: str) -> tuple[Path, str]:
    """``(page, text from heading on)`` of the page holding heading ``heading`` (a whole line)."""
    import re

    for page in doc_pages():
        text = page.read_text()
        match = re.search(rf"^{re.escape(heading)}$", text, re.M)
        if match:
            return page, text[match.start() :]
    raise AssertionError(f"no README or docs page has the heading {heading!r}")


def readme_code(heading: str, replacements: dict[str, str] | None = None, lang: str = "python"):
    """The first ``lang`` block after the README or docs heading ``heading`` (a whole line), with
    each ``old -> new`` replacement applied; each ``old`` must occur, so an edited page cannot
    silently stop shrinking the example."""
    import re

    page, text = doc_text(heading)
    code = re.search(rf"```{lang}\n(.*?)```", text, re.S).group(1)
    for old, new in (replacements or {}).items():
        assert old in code, f"{old!r} is not in the {page.name} block under {heading!r}"
        code = code.replace(old, new)
    return code


def run_readme_code(heading: str, replacements: dict[str, str] | None = None) -> dict:
    """Execute a README block (see ``readme_code``) and return its namespace."""
    namespace: dict = {}
    exec(compile(readme_code(heading, replacements), str(README), "exec"), namespace)
    return namespace


@pytest.fixture(name="run_readme")
def run_readme_fixture():
    """``run_readme(heading, replacements)``: execute a README block, return its namespace."""
    return run_readme_code


@pytest.fixture(name="readme_source")
def readme_source_fixture():
    """``readme_source(heading, replacements)``: a README block's code (see ``readme_code``)."""
    return readme_code


@pytest.fixture(scope="session")
def kr_tiny_regrouped(tmp_path_factory: pytest.TempPathFactory):
    """``(in memory, streamed)``: the tiny KuaiRand twin, and a copy of its processed folder whose
    Parquet file has row groups of 333 rows, so that streaming reads 14 blocks, splits start
    and end inside row groups and sessions cross block boundaries."""
    import shutil

    import pyarrow.parquet as pq

    from rmtl_env.data import StreamedDataset, load_dataset

    data = load_dataset("kuairand-synthetic", scale="tiny")
    folder = tmp_path_factory.mktemp("regrouped") / "kuairand-tiny"
    shutil.copytree(data.meta["path"], folder)
    table = pq.read_table(folder / "impressions.parquet")
    pq.write_table(table, folder / "impressions.parquet", row_group_size=333)
    return data, StreamedDataset(folder, buffer_rows=700)


@pytest.fixture(autouse=True)
def denormals_restored():
    """The trainer flushes denormals process-wide (``agents.runtime``), which makes hypothesis
    refuse to draw floats in any later test; each test starts with the default."""
    yield
    if "torch" in sys.modules:
        sys.modules["torch"].set_flush_denormal(False)


@pytest.fixture(scope="session")
def quick_benchmark(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """``python train/benchmark.py --profile quick --out <folder> --no-cell-plots`` run once for
    the whole session: its ``<folder>/quick`` and what it printed. Tests that add cells work on a
    copy."""
    import contextlib
    import io

    import benchmark

    out, printed = tmp_path_factory.mktemp("bench"), io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert benchmark.main(["--profile", "quick", "--out", str(out), "--no-cell-plots"]) == 0
    return out / "quick", printed.getvalue()
