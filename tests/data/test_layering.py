"""The layers point one way. The data layer knows no model: no module under ``rmtl_env/data``
imports ``agents``, torch, the env or the metrics, at the top or deferred inside a function. The
scripts in ``train/`` share code only through the installed package ``rmtl_bench``."""

from __future__ import annotations

import ast
from pathlib import Path

DATA = Path(__file__).resolve().parents[2] / "rmtl_env" / "data"
ABOVE = ("agents", "torch", "rmtl_env.env", "rmtl_env.metrics", "rmtl_env.rewards",
         "rmtl_env.transitions", "rmtl_env.evaluation", "rmtl_env.offline", "rmtl_env.vector",
         "stable_baselines3", "gymnasium")  # fmt: skip


def imported_modules(path: Path) -> list[tuple[int, str]]:
    """Every module an ``import`` or ``from ... import`` in ``path`` names, with its line."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
            if node.module == "rmtl_env":  # from rmtl_env import env
                found += [(node.lineno, f"rmtl_env.{alias.name}") for alias in node.names]
    return found


def test_no_data_module_imports_a_layer_above() -> None:
    modules = sorted(DATA.rglob("*.py"))
    assert len(modules) > 15
    offending = [
        f"{path.relative_to(DATA.parent.parent)}:{line} imports {name}"
        for path in modules
        for line, name in imported_modules(path)
        if any(name == above or name.startswith(above + ".") for above in ABOVE)
    ]
    assert not offending, "\n".join(offending)


def test_the_checker_sees_deferred_imports(tmp_path) -> None:
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from agents.trainer import predict\n    import torch\n")
    assert imported_modules(module) == [(2, "agents.trainer"), (3, "torch")]


ROOT = DATA.parents[1]


def test_scripts_import_their_support_code_by_full_name_and_never_each_other() -> None:
    """``train/`` holds scripts only; what they share is the installed ``rmtl_bench``."""
    scripts = sorted((ROOT / "train").glob("*.py"))
    support = sorted(p.stem for p in (ROOT / "rmtl_bench").glob("*.py") if p.stem != "__init__")
    assert len(scripts) >= 6 and "cli" in support
    bare = {p.stem for p in scripts} | set(support)
    offending = [
        f"{path.relative_to(ROOT)}:{line} imports {name}"
        for path in [*scripts, *(ROOT / "rmtl_bench").glob("*.py")]
        for line, name in imported_modules(path)
        if name.split(".")[0] in bare
    ]
    assert not offending, "\n".join(offending)
