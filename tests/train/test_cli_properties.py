"""Property-based test (hypothesis) of the training scripts' command-line parsers: any flag with
any value is parsed, or refused as a user error (one ``error:`` line and exit status 2, or
argparse's usage error); never a traceback from inside a config, torch or NumPy."""

from __future__ import annotations

import contextlib
import io
import re

import dple_sb3
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import mtl_baselines
import rmtl_ddpg
from rmtl_env.data.errors import run_command

SCRIPTS = {"rmtl_ddpg": rmtl_ddpg, "mtl_baselines": mtl_baselines, "dple_sb3": dple_sb3}


def flags_of(module) -> list[str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit):
        module.parse_args(["--help"])
    found = set(re.findall(r"(--[a-z][a-z0-9-]+)", out.getvalue())) - {"--help", "--debug"}
    return sorted(found)


FLAGS = {name: flags_of(module) for name, module in SCRIPTS.items()}
VALUES = st.one_of(
    st.sampled_from(["nan", "inf", "-inf", "-1", "0", "1e309", "", "abc", "1/0", "0.5", "ple"]),
    st.integers(-(10**12), 10**12).map(str),
    st.floats(allow_nan=True, allow_infinity=True, allow_subnormal=False).map(repr),
    st.text("abcxyz-_./0123456789", max_size=6),
)


@st.composite
def command_lines(draw):
    script = draw(st.sampled_from(sorted(SCRIPTS)))
    argv = []
    for _ in range(draw(st.integers(1, 3))):
        argv += [draw(st.sampled_from(FLAGS[script])), draw(VALUES)]
    return script, argv


@settings(max_examples=150, deadline=None, derandomize=True)
@given(case=command_lines())
def test_any_flag_with_any_value_parses_or_is_a_one_line_user_error(case) -> None:
    script, argv = case
    parse = lambda args: (SCRIPTS[script].parse_args(args), 0)[1]  # noqa: E731 (parse only)
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            code = run_command(parse, argv)
    except SystemExit as stop:  # argparse's own usage error
        assert stop.code == 2 and "error:" in err.getvalue(), (argv, stop.code)
        return
    assert code in (0, 2), (argv, code)
    if code == 2:
        lines = [line for line in err.getvalue().splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("error: "), (argv, err.getvalue())
    assert "Traceback" not in err.getvalue()
