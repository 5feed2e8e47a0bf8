"""Property-based test (hypothesis) of the own-log loader: random column roles over random cell
values either build a dataset or are refused with the package's own error (``DataFormatError``
or ``ValueError``) naming the file, a column or the role; never a crash from inside pandas or
numpy, never a dataset that silently lost rows it should have kept."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rmtl_env.data import ColumnRoles, DataFormatError, load_dataset

CELLS = {
    "ints": st.integers(-3, 50),
    "binary": st.sampled_from([0, 1]),
    "floats": st.one_of(st.floats(-1e6, 1e6, allow_nan=False), st.just(float("nan"))),
    "text": st.text("abcxyz", min_size=0, max_size=3),
    "times": st.integers(1_600_000_000_000, 1_600_100_000_000),
}


@st.composite
def own_logs(draw):
    """A log with a user, a time and a 0/1 label column plus random feature columns; roles
    that fit the columns, or (one case in three) roles drawn at random over all of them."""
    rows = draw(st.integers(1, 40))
    kinds = ["ints", "times", "binary"] + draw(
        st.lists(st.sampled_from(list(CELLS)), min_size=1, max_size=4)
    )
    frame = pd.DataFrame({
        f"c{i}_{kind}": draw(st.lists(CELLS[kind], min_size=rows, max_size=rows))
        for i, kind in enumerate(kinds)
    })  # fmt: skip
    columns = list(frame.columns)
    order = draw(st.permutations(columns)) if draw(st.integers(0, 2)) == 0 else columns
    features = order[3:]
    cut = draw(st.integers(0, len(features)))
    roles = {"user": order[0], "timestamp": order[1], "labels": [order[2]],
             "categorical": features[:cut], "numerical": features[cut:]}  # fmt: skip
    return frame, roles


@settings(max_examples=60, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])  # fmt: skip
@given(case=own_logs())
def test_any_roles_over_any_cells_build_or_are_refused_by_name(case, tmp_path_factory) -> None:
    frame, roles = case
    folder = tmp_path_factory.mktemp("log")
    path = folder / "log.csv"
    frame.to_csv(path, index=False)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # uninformative features are warned
            data = load_dataset(path, roles=ColumnRoles(**roles),
                                dataset_name=f"fuzz-{folder.name}")  # fmt: skip
    except (DataFormatError, ValueError) as error:
        text = str(error)
        named = [str(path), "log file", *frame.columns, "split", "session"]
        assert any(name in text for name in named), text
    else:
        kept = frame.drop_duplicates()
        assert len(data.frame) == len(kept)  # only exact duplicates go (counted in meta)
        assert data.meta["row_counts"]["duplicate_rows_removed"] == len(frame) - len(kept)
        assert np.isin(data.frame[f"label:{roles['labels'][0]}"], [0, 1]).all()
