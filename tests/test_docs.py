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
