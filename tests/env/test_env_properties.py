"""Property-based tests (hypothesis) of the env's ``reset``/``step`` and of the command-line
parsers: any action (shape, dtype, values), any reset options and any argument list either work
as documented or are refused with the package's own error naming what was expected; never a
traceback from deep inside numpy, torch or argparse, and never a silent result."""

from __future__ import annotations

import contextlib
import io
import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from rmtl_env import SessionRecEnv
from rmtl_env.data import load_dataset

ROOT = Path(__file__).resolve().parents[2]
PROPS = settings(max_examples=60, deadline=None, derandomize=True,
                 suppress_health_check=[HealthCheck.function_scoped_fixture])  # fmt: skip


@pytest.fixture(scope="module")
def env():
    environment = SessionRecEnv(load_dataset("retailrocket-synthetic", scale="tiny"))
    environment.reset(seed=0)
    return environment


actions = st.one_of(
    hnp.arrays(
        dtype=st.sampled_from([np.float32, np.float64, np.float16, np.int64, np.bool_]),
        shape=hnp.array_shapes(min_dims=0, max_dims=3, max_side=3),
    ),
    st.lists(
        st.one_of(
            st.floats(allow_nan=True, allow_infinity=True),
            st.integers(-3, 3),
            st.text(max_size=2),
            st.none(),
        ),
        max_size=4,
    ),  # fmt: skip
    st.floats(allow_nan=True),
    st.text(max_size=3),
    st.none(),
)


@PROPS
@given(action=actions)
def test_step_takes_a_k_probability_action_or_says_what_it_expected(env, action) -> None:
    if env._row < 0 or env._row >= env._end:
        env.reset()
    try:
        values = np.asarray(action, dtype=np.float64)
        valid = values.shape == (2,) and bool(np.all((values >= -1e-6) & (values <= 1 + 1e-6)))
    except (TypeError, ValueError):
        valid = False
    if valid:
        _, reward, terminated, truncated, info = env.step(action)
        assert math.isfinite(reward) and reward <= 0 and not truncated
        assert info["task_rewards"].shape == (2,)
    else:
        with pytest.raises(ValueError, match="action"):
            env.step(action)


@PROPS
@given(
    seed=st.one_of(st.none(), st.integers(0, 2**31)),
    options=st.one_of(
        st.none(),
        st.dictionaries(
            st.sampled_from(["session_id", "session_index", "x"]),
            st.one_of(st.integers(-5, 10**7), st.text(max_size=3)),
            max_size=2,
        ),
    ),  # fmt: skip
)
def test_reset_starts_a_session_or_names_the_bad_option(env, seed, options) -> None:
    try:
        obs, info = env.reset(seed=seed, options=options)
    except (TypeError, ValueError) as error:  # a wrong type or a wrong value, each named
        assert any(word in str(error) for word in ("option", "session")), str(error)
    else:
        assert env.observation_space.contains(obs) and info["step"] == 0


@settings(max_examples=40, deadline=None, derandomize=True)
@given(argv=st.lists(st.sampled_from([
    "--lam", "--lr", "--epochs", "--batch-size", "--tau", "--gamma", "--dropout", "--scale",
    "--dataset", "--model", "--preset", "nan", "inf", "-1", "0", "0.5", "7", "abc", "tiny",
    "ple", "",
]), max_size=5))  # fmt: skip
def test_the_parsers_answer_any_argument_list_with_a_usage_error_or_a_config(argv) -> None:
    import mtl_baselines
    import rmtl_ddpg

    for module in (rmtl_ddpg, mtl_baselines):
        err = io.StringIO()
        try:
            with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
                args = module.parse_args(argv)
        except SystemExit as stop:  # argparse's usage error: one 'error:' line, status 2
            assert stop.code == 2 and "error:" in err.getvalue(), err.getvalue()
        else:
            assert args.train.lr > 0 and args.train.epochs >= 1  # a valid configuration
