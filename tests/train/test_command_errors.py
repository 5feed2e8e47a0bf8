"""Every entry script answers a user error with one line on stderr and exit status 2; the
traceback appears only with ``--debug`` or ``RMTL_DEBUG=1`` (``rmtl_env.data.errors.run_command``)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from rmtl_env.data.errors import CommandError, run_command

ROOT = Path(__file__).resolve().parents[2]
COMMANDS = {
    "train/mtl_baselines.py": ["--dataset", "nosuch"],
    "train/rmtl_ddpg.py": ["--dataset", "nosuch"],
    "train/dple_sb3.py": ["--dataset", "nosuch"],
    "train/benchmark.py": ["--block", "rl", "--report-only", "--out", "{tmp}"],
    "train/compare_runs.py": ["{tmp}/no-such-run"],
    "train/export_minari.py": ["nosuch"],
    "-m rmtl_env.data": ["stats", "nosuch"],
}


def run(command: str, args: list[str], tmp_path: Path, **env) -> subprocess.CompletedProcess:
    argv = [sys.executable, *command.split()] + [a.replace("{tmp}", str(tmp_path)) for a in args]
    environment = {**os.environ, **env}
    environment.pop("RMTL_DEBUG", None) if not env else None
    return subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env=environment)  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize("command", list(COMMANDS))
def test_a_user_error_is_one_line_and_exit_2(command, tmp_path) -> None:
    pytest.importorskip("minari") if "export_minari" in command else None
    done = run(command, COMMANDS[command], tmp_path)
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode == 2, done.stderr
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr
    assert "Traceback" not in done.stderr
    assert ("nosuch" in lines[0]) or ("no-such-run" in lines[0]) or ("finished" in lines[0])


@pytest.mark.slow
def test_debug_shows_the_traceback(tmp_path) -> None:
    done = run("train/mtl_baselines.py", ["--dataset", "nosuch"], tmp_path, RMTL_DEBUG="1")
    assert done.returncode == 1 and "Traceback" in done.stderr and "nosuch" in done.stderr


def test_run_command_keeps_bugs_and_usage_exits_apart(capsys) -> None:
    def user(argv):
        raise CommandError("--lam must be in [0, 1], got 5.0\n(see --help)")

    assert run_command(user, []) == 2
    assert capsys.readouterr().err == (
        "error: --lam must be in [0, 1], got 5.0 (see --help) (details: --debug or RMTL_DEBUG=1)\n"
    )

    def bug(argv):
        raise KeyError("a bug keeps its traceback")

    with pytest.raises(KeyError):
        run_command(bug, [])

    def usage(argv):
        raise SystemExit(2)  # argparse has printed its usage already

    with pytest.raises(SystemExit):
        run_command(usage, [])
    with pytest.raises(CommandError):
        run_command(user, ["--debug"])
