"""The documentation does not go stale: every page's Python blocks, read in order as one
program, use no name that the page never defines (a snippet that calls an undefined
``my_model``), and every command a page shows names a script that exists with flags it has."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def blocks(page: Path, lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", page.read_text(), re.S)


@pytest.mark.parametrize("page", [p for p in PAGES if blocks(p, "python")], ids=lambda p: p.name)
def test_every_python_block_uses_only_names_its_page_defines(page, tmp_path) -> None:
    program = tmp_path / f"{page.stem}.py"
    program.write_text("\n\n".join(blocks(page, "python")))
    done = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "--no-cache", "--isolated", "--select",
         "F821", str(program)], capture_output=True, text=True,
    )  # fmt: skip
    assert done.returncode == 0, f"{page.name}:\n{done.stdout}"


def shown_flags() -> dict[str, dict[str, set[str]]]:
    """``{script: {flag: pages}}`` of every ``python train/*.py`` command in a bash block."""
    found: dict[str, dict[str, set[str]]] = {}
    for page in PAGES:
        for block in blocks(page, "bash"):
            for line in block.replace("\\\n", " ").splitlines():
                match = re.search(r"python (train/\w+\.py)(.*)", line.split("#", 1)[0])
                if match:
                    words = shlex.split(match.group(2).split("&&")[0])
                    flags = found.setdefault(match.group(1), {})
                    for word in words:
                        if word.startswith("--"):
                            flags.setdefault(word.split("=", 1)[0], set()).add(page.name)
    return found


@pytest.mark.parametrize("script", sorted(shown_flags()))
def test_every_shown_command_names_a_script_and_flags_that_exist(script) -> None:
    assert (ROOT / script).is_file(), f"{script} does not exist"
    help_text = subprocess.run([sys.executable, script, "--help"], cwd=ROOT, capture_output=True,
                               text=True, timeout=120).stdout  # fmt: skip
    flags = shown_flags()[script]
    unknown = {f: sorted(pages) for f, pages in flags.items() if f not in help_text}
    assert not unknown, f"{script} has no flag(s) {unknown} (shown on those pages)"


# Pages whose Python blocks are executed by tests of their own (with tiny-scale replacements):
# the heading of each block -> the test that runs it.
RUN_ELSEWHERE = {
    "clients.md": "env/test_client_examples.py",
    "rl.md": "env/test_client_examples.py, train/test_scripts.py",
    "rmtl.md": "test_readme_examples.py",
    "scale.md": "data/test_engine.py::test_readme_scale_example",
}


@pytest.mark.parametrize(
    "page",
    [p for p in PAGES if blocks(p, "python") and p.name not in RUN_ELSEWHERE],
    ids=lambda p: p.name,
)
def test_every_python_block_runs(page, tmp_path) -> None:
    """The page's Python blocks, in order, as one program, in a fresh process from the
    repository root (the shared test cache holds the twins; nothing is written in the tree)."""
    program = tmp_path / f"{page.stem}.py"
    program.write_text("\n\n".join(blocks(page, "python")))
    done = subprocess.run([sys.executable, str(program)], cwd=ROOT, capture_output=True,
                          text=True, timeout=600)  # fmt: skip
    assert done.returncode == 0, f"{page.name}:\n{done.stderr[-3000:]}"


@pytest.mark.parametrize("name", sorted(RUN_ELSEWHERE))
def test_the_pages_run_elsewhere_have_their_blocks_run_by_their_tests(name) -> None:
    """Every Python block of such a page is the first block under a heading that a test runs
    (``readme_code``/``run_readme`` take the first block after a heading)."""
    source = "\n".join(p.read_text() for p in (ROOT / "tests").rglob("*.py"))
    text = (ROOT / "docs" / name).read_text()
    for match in re.finditer(r"```python\n", text):
        heading = re.findall(r"^(#+ .*)$", re.sub(r"```.*?```", "", text[: match.start()],
                                                   flags=re.S), re.M)[-1]  # fmt: skip
        before = text[: match.start()]
        assert "```python" not in before[before.rindex(heading) :], (
            f"{name}: a second block under {heading!r}"
        )
        assert heading in source, f"{name}: no test runs the block under {heading!r}"


def test_the_example_roles_file_describes_the_example_log() -> None:
    from rmtl_env.data import ColumnRoles, load_dataset

    roles = ColumnRoles.from_json(ROOT / "examples" / "roles.json")
    from_file = load_dataset(
        ROOT / "examples" / "own_log.csv", roles=ROOT / "examples" / "roles.json"
    )
    assert from_file.tasks == roles.labels == ["click", "buy"]
    assert len(from_file.frame) == 600 and from_file.meta["source"] == "custom"
