"""The documentation does not go stale: every page's Python blocks, read in order as one
program, use no name that the page never defines (a snippet that calls an undefined
``my_model``) and run; every command a page shows goes through its own program's parsing and
runs at tiny size (two ``torchrun`` lines excepted, each with its reason); every table a page
shows as a command's output is the committed result of that command."""

from __future__ import annotations

import importlib.util
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def fenced_blocks(text: str) -> list[tuple[str, str]]:
    """``(language, body)`` of every fenced block of a page, in order."""
    found, opened, body = [], None, []
    for line in text.splitlines():
        if line.lstrip().startswith("```"):  # a fence in a list item is indented
            if opened is None:
                opened, body = line.lstrip()[3:].strip(), []
            else:
                found.append((opened, "\n".join(body)))
                opened = None
        elif opened is not None:
            body.append(line)
    return found


def blocks(page: Path, lang: str) -> list[str]:
    """The bodies of ``page``'s blocks in language ``lang``."""
    return [body for language, body in fenced_blocks(page.read_text()) if language == lang]


@pytest.mark.parametrize("page", [p for p in PAGES if blocks(p, "python")], ids=lambda p: p.name)
def test_every_python_block_uses_only_names_its_page_defines(page, tmp_path) -> None:
    program = tmp_path / f"{page.stem}.py"
    program.write_text("\n\n".join(blocks(page, "python")))
    done = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "--no-cache", "--isolated", "--select",
         "F821", str(program)], capture_output=True, text=True,
    )  # fmt: skip
    assert done.returncode == 0, f"{page.name}:\n{done.stdout}"


def shown_commands() -> list[tuple[str, str]]:
    """``(page, command)`` for every command line of every bash block: continuation lines
    joined, comments dropped, ``&&`` and ``;`` chains split."""
    found = []
    for page in PAGES:
        for block in blocks(page, "bash"):
            for line in block.replace("\\\n", " ").splitlines():
                line = line.split(" #", 1)[0].strip()
                for part in re.split(r"&&|;", "" if line.startswith("#") else line):
                    if part.strip():
                        found.append((page.name, part.strip()))
    return found


# Shell words of the pages' loops and placeholders, with a value a command line can take.
PLACEHOLDERS = {"$bb": "ple", "$seed": "0", "<run>": "RUN", "HOST": "localhost"}
# Commands a page shows that are not ours (the set-up steps, a shell loop's own words, other
# tools): each named here so that a new command of ours cannot hide among them.
OTHER_TOOLS = ("git ", "cd ", "python3 -m venv", ". .venv", "pip install", "python -m pytest",
               "mkdir ", "cp ", "tensorboard ", "for ", "do", "done")  # fmt: skip


def argv_of(command: str) -> tuple[str, list[str]]:
    """``(program, argv)`` of one of our commands: ``train/X.py``, ``benchmarks/X.py`` or
    ``-m rmtl_env.data`` (``torchrun``'s own flags dropped), placeholders filled in."""
    for word, value in PLACEHOLDERS.items():
        command = command.replace(word, value)
    words = shlex.split(command)
    if words[:3] == ["python", "-m", "rmtl_env.data"]:
        return "rmtl_env.data", words[3:]
    script = next(i for i, w in enumerate(words) if w.endswith(".py"))
    return words[script], words[script + 1 :]


def test_every_shown_command_is_ours_or_a_named_other_tool() -> None:
    commands = shown_commands()
    assert len(commands) > 50
    for page, command in commands:
        if not command.startswith(OTHER_TOOLS):
            program, _ = argv_of(command)
            assert program == "rmtl_env.data" or (ROOT / program).is_file(), (page, command)


OURS = [(page, c) for page, c in shown_commands() if not c.startswith(OTHER_TOOLS)]


def load_benchmark(program: str):
    """The module of a ``benchmarks/`` script (a folder of scripts, not a package)."""
    spec = importlib.util.spec_from_file_location(Path(program).stem, ROOT / program)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("page, command", OURS, ids=[c[:70] for _, c in OURS])
def test_every_shown_command_parses_as_its_program_parses_it(
    page, command, capsys, monkeypatch
) -> None:
    """Each of our commands a page shows goes through its program's own argument parsing (the
    scripts' ``parse_args``, with their checks of flag combinations; a benchmark's parser up to
    ``--help``), so a renamed flag, a value outside its choices or a combination a script
    refuses fails here. The data commands on a twin at tiny scale and on ``examples/`` run."""
    program, argv = argv_of(command)
    if program == "rmtl_env.data":
        from rmtl_env.data.__main__ import build_parser, main

        build_parser().parse_args(argv)
        if argv[0] == "stats" and ("tiny" in argv or argv[1].startswith("examples/")):
            assert main(argv) == 0
            assert "train" in capsys.readouterr().out
        return
    if program.startswith("benchmarks/"):  # a benchmark parses in main(): parse up to --help
        module = load_benchmark(program)
        monkeypatch.setattr(sys, "argv", [program, *argv, "--help"])
        with pytest.raises(SystemExit) as done:
            module.main()
        assert done.value.code == 0, f"{page}: {command}\n{capsys.readouterr().err}"
        return
    module = __import__(Path(program).stem)
    try:
        module.parse_args(argv)
    except SystemExit as refused:
        if refused.code == 0 and "--help" in argv:
            return
        pytest.fail(f"{page}: {command!r} is refused ({refused.code}):\n{capsys.readouterr().err}")


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


# --- Printed outputs ------------------------------------------------------------------------------

RESULTS = ROOT / "docs" / "results"
METRIC_COLUMNS = {"AUC": "auc", "Logloss": "logloss", "s-Logloss": "s_logloss"}


def printed_tables() -> list[tuple[str, str, str]]:
    """``(page, command, output)`` of every output block (a block without a language holding a
    ``method`` table) with the first of our commands in the bash block before it."""
    found = []
    for page in PAGES:
        command = None
        for language, body in fenced_blocks(page.read_text()):
            if language == "bash":
                command = next((line for line in body.splitlines() if "train/" in line), None)
            elif not language and re.search(r"^method\s", body, re.M):
                found.append((page.name, command.split(" #", 1)[0].strip(), body))
    return found


def table_rows(output: str) -> dict[str, dict[tuple[str, str], float]]:
    """``{method: {(task, metric): value}}`` of a printed ``format_table``."""
    lines = [line.split() for line in output.splitlines() if line.strip()]
    header = next(words for words in lines if words[0] == "method")
    columns = [tuple(word.split(":")) for word in header[1:]]
    rows = lines[lines.index(header) + 2 :]  # below the dashed rule
    return {row[0]: {(task, METRIC_COLUMNS[m]): float(v) for (task, m), v in
                     zip(columns, row[1:], strict=True)} for row in rows}  # fmt: skip


TABLES = printed_tables()


def test_the_pages_show_printed_tables() -> None:
    assert {page for page, _, _ in TABLES} >= {"README.md", "rmtl.md", "models.md"}


@pytest.mark.parametrize("page, command, output", TABLES, ids=[p for p, _, _ in TABLES])
def test_every_printed_table_is_the_committed_result_of_its_command(page, command, output) -> None:
    """A table a page shows as a command's output holds, to its 4 printed digits, the Table 1
    cells of the same dataset and seed (``docs/results/table1_seeds.csv``, written by the
    benchmark runner, which runs the same jobs with the same defaults; the backbones Table 1
    does not run in ``mtl_baselines_seed0.csv``) and the twin's oracle (``table1.csv``). One
    unit in the last digit is allowed: the pages say where a CPU's last digit differs. So a
    changed default, model or metric cannot leave a page's example behind the committed
    results."""
    dataset = re.search(r"--dataset (\S+)", command)
    dataset = dataset.group(1) if dataset else "retailrocket-synthetic"
    seed = re.search(r"--seed (\d+)", command)
    seed = int(seed.group(1)) if seed else 0
    title = re.search(r"Test split of (\S+), seed (\d+):", output)
    if title:
        assert (title.group(1), int(title.group(2))) == (dataset, seed), (page, command)
    cells = pd.concat([pd.read_csv(RESULTS / name)
                       for name in ("table1_seeds.csv", "mtl_baselines_seed0.csv")])  # fmt: skip
    cells = cells[(cells.dataset == dataset) & (cells.seed == seed)]
    summary = pd.read_csv(RESULTS / "table1.csv")
    oracle = summary[(summary.dataset == dataset) & (summary.method == "oracle")]
    shown = table_rows(output)
    assert len(shown) >= 3
    for method, values in shown.items():
        for (task, metric), value in values.items():
            if method == "oracle":
                rows = oracle[(oracle.task == task) & (oracle.metric == metric)]["mean"]
            else:
                rows = cells[(cells.method == method) & (cells.task == task)][metric]
            assert len(rows) == 1, f"{page}: no committed cell for {method} {task} {metric}"
            assert abs(value - round(float(rows.iloc[0]), 4)) <= 1.5e-4, (
                f"{page}: {method} {task}:{metric} shows {value}, the committed result is "
                f"{float(rows.iloc[0]):.4f}"
            )


# --- Every command of ours, run at tiny size ------------------------------------------------------

# What each command gets appended (argparse keeps a flag's last value): the training scripts'
# tiny flags (rmtl_bench.smoke.TINY_FLAGS), a benchmark script's --smoke, and for the benchmark
# runner its quick profile with one seed, one balancer and four RL rows.
TINY_27K = "1/4000"  # the KuaiRand-27K twin's tiny size: a fraction of the 27K log
RUNNER_TINY = ["--profile", "quick", "--seeds", "0", "--no-cell-plots"]
BLOCK_TINY = {"balancers": ["--weightings", "famo"], "conflict": ["--weightings", "famo"],
              "noise": ["--weightings", "famo"],
              "rl": ["--rl-methods", "uniform", "constant", "ple", "td3"]}  # fmt: skip
WORK_FLAG = {"bench_data": "--workdir", "bench_scale": "--work"}  # their output folders
# A real dataset's command reads, instead of the user's download, the raw files its twin writes
# in the same format (``~/data/KuaiRand-1K/data`` -> the KuaiRand twin's).
REAL_AS_TWIN = {"kuairand-27k": ("kuairand-27k-synthetic", TINY_27K),
                "kuairand-1k": ("kuairand-synthetic", "tiny"),
                "retailrocket": ("retailrocket-synthetic", "tiny")}  # fmt: skip
# Commands run by a test of their own, and the one command no single machine can run.
RUN_ELSEWHERE_COMMANDS = {"torchrun --standalone": "train/test_torchrun.py"}
NOT_RUNNABLE = {"torchrun --nnodes=2": "two nodes with eight GPUs each"}
RUNS = [(page, c) for page, c in OURS if "--help" not in c
        and not c.startswith((*RUN_ELSEWHERE_COMMANDS, *NOT_RUNNABLE))]  # fmt: skip


def test_commands_not_run_here_are_run_by_their_test_or_cannot_run_on_one_machine() -> None:
    skipped = [c for _, c in OURS if c.startswith((*RUN_ELSEWHERE_COMMANDS, *NOT_RUNNABLE))]
    assert len(skipped) == 2, skipped
    for prefix, test in RUN_ELSEWHERE_COMMANDS.items():
        source = (ROOT / "tests" / test).read_text()
        assert "--standalone" in source and "--nproc_per_node" in source, (prefix, test)


@pytest.fixture(scope="session")
def real_like(tmp_path_factory) -> dict[str, Path]:
    """Per real dataset, a raw folder in its format (its twin's), in place of a download."""
    from rmtl_env.data.synthetic import write_twin

    root = tmp_path_factory.mktemp("real-like")
    return {real: write_twin(twin, root / real, scale=scale)
            for real, (twin, scale) in REAL_AS_TWIN.items()}  # fmt: skip


@pytest.fixture(scope="session")
def runner_out(tmp_path_factory, quick_benchmark) -> Path:
    """One output folder for every benchmark-runner command, holding a copy of the session's
    quick profile (the cells ``python train/benchmark.py --profile quick`` makes): a later
    command reuses the cells an earlier one finished, as a user's would."""
    out = tmp_path_factory.mktemp("docs-benchmark")
    shutil.copytree(quick_benchmark[0], out / "quick")
    return out


def local_paths(argv: list[str], tmp: Path, real: dict[str, Path]) -> list[str]:
    """``argv`` with a real download folder replaced by its twin's raw files, an output under
    ``/tmp`` moved into ``tmp`` and the checkout's ``examples/`` files by their full path."""

    def local(word: str) -> str:
        key, _, path = word.rpartition("=")
        if path.startswith("~/"):
            name = next(n for n in REAL_AS_TWIN if n.split("-")[-1] in path.lower())
            return f"{key}={real[name]}" if key else str(real[name])
        if word.startswith("examples/"):  # the checkout's example files, from any folder
            return str(ROOT / word)
        return str(tmp / Path(word).name) if word.startswith("/tmp/") else word

    return [local(word) for word in argv]


@pytest.mark.parametrize("page, command", RUNS, ids=[c[:70] for _, c in RUNS])
def test_every_shown_command_runs_at_tiny_size(
    page, command, tmp_path, monkeypatch, capsys, real_like, runner_out
) -> None:
    """Each command a page shows runs as written, from a fresh folder (relative outputs land
    there, not in the checkout), at tiny size, and ends well: a training command prints its test
    table, a benchmark runner command reports its cells, a data command its statistics. A
    checkpoint named under ``runs/rmtl_ddpg/`` is first made by ``python train/rmtl_ddpg.py``."""
    from rmtl_bench.smoke import TINY_FLAGS

    program, argv = argv_of(command)
    argv = local_paths(argv, tmp_path, real_like)
    monkeypatch.chdir(tmp_path)
    script = Path(program).stem
    if program == "rmtl_env.data":
        from rmtl_env.data.__main__ import main

        synthetic = argv[1].endswith("-synthetic")
        tiny = ["--scale", TINY_27K if "27k" in argv[1] else "tiny"] if synthetic else []
        assert main([*argv, *tiny]) == 0, command
        return
    if program.startswith("benchmarks/"):
        module = load_benchmark(program)
        work = [WORK_FLAG[script], str(tmp_path / "work")] if script in WORK_FLAG else []
        monkeypatch.setattr(sys, "argv", [program, *argv, "--smoke", *work])
        module.main()
        assert "Smoke run" in capsys.readouterr().out, command
        return
    if script == "benchmark":
        import benchmark

        block = argv[argv.index("--block") + 1] if "--block" in argv else None
        extra = ["--methods", "ple", "rmtl-ple"] if "--data-dir" in argv else []
        tiny = [*RUNNER_TINY, *BLOCK_TINY.get(block, []), *extra, "--out", str(runner_out)]
        assert benchmark.main([*argv, *tiny]) == 0, command
        out = capsys.readouterr().out
        assert "cells run" in out or "exported" in out or "# Reference scores" in out, out[-2000:]
        return
    if script == "export_minari":
        pytest.importorskip("minari", reason="Minari is in the clients extra")
        monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "minari"))
        assert __import__(script).main([*argv, "--scale", "tiny", "--max-sessions", "20"]) == 0
        return
    if "--backbone-checkpoint" in argv:
        checkpoint = Path(argv[argv.index("--backbone-checkpoint") + 1])
        assert checkpoint.parts[:2] == ("runs", "rmtl_ddpg"), checkpoint
        producer = __import__("rmtl_ddpg")
        run_dir = ["--run-dir", str(checkpoint.parents[1])]
        assert producer.main([*TINY_FLAGS["rmtl_ddpg"], *run_dir]) == 0
        capsys.readouterr()
    tiny = TINY_FLAGS[script]
    if "kuairand-27k-synthetic" in argv:  # its smallest twin is a fraction of the 27K log
        tiny = [*tiny, "--scale", TINY_27K]
    assert __import__(script).main([*argv, *tiny]) == 0
    out = capsys.readouterr().out
    assert "Test split of" in out and "oracle" in out, f"{page}: {command}\n{out[-2000:]}"
