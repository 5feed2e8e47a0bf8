"""KuaiRand-27K: the loader reads the 27K file names (four standard-log parts), and the 27K
twin writes them at a fraction of full size."""

from __future__ import annotations

import pandas as pd
import pytest

from rmtl_env.data import load_dataset
from rmtl_env.data.errors import MissingRawFilesError
from rmtl_env.data.kuairand import VERSIONS, KuaiRandFiles
from rmtl_env.data.synthetic import twin_fraction
from rmtl_env.data.synthetic.kuairand import size_27k, write_kuairand_27k_twin


def test_27k_twin_writes_the_27k_files_and_the_loader_reads_all_parts(tmp_path) -> None:
    out = write_kuairand_27k_twin(tmp_path / "raw", fraction=0.0005, seed=1)
    names = VERSIONS["27k"]
    files = KuaiRandFiles.in_folder(out, include_random_log=True, version="27k")
    assert [p.name for p in files.logs] == [*names.standard_logs, names.random_log]
    rows = {p.name: len(pd.read_csv(p, usecols=["user_id"])) for p in files.logs}
    assert all(count > 0 for count in rows.values())  # both halves of both periods
    users = pd.concat(pd.read_csv(out / n, usecols=["user_id"]) for n in names.standard_logs[:2])
    assert users["user_id"].nunique() == size_27k(0.0005).users
    with pytest.raises(MissingRawFilesError, match="log_standard_4_08_to_4_21_27k_part1.csv"):
        KuaiRandFiles.in_folder(tmp_path, version="27k")


def test_27k_twin_through_the_catalog() -> None:
    data = load_dataset("kuairand-27k-synthetic", scale="1/2000")
    assert data.meta["source"] == "kuairand-27k"
    assert data.meta["params"]["synthetic"]["scale"] == "0.0005"
    assert data.has_true_probs and len(data.frame) > 50_000
    assert data.meta["row_counts"]["log_rows_read"] == len(data.frame)


@pytest.mark.parametrize("bad", ["0", "2", "1/0", "half", -0.1])
def test_27k_twin_fraction_must_be_in_0_1(bad) -> None:
    with pytest.raises(ValueError, match="fraction in \\(0, 1\\]"):
        twin_fraction(bad)
    assert twin_fraction("1/20") == 0.05 and twin_fraction(0.1) == 0.1
