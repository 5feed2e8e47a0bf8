"""Synthetic twins: real raw formats, determinism, label rates, oracle and learnable signal."""

from __future__ import annotations

import hashlib
import re

import numpy as np
import pandas as pd
import pytest
from scipy import sparse
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.preprocessing import OneHotEncoder

from rmtl_env.data import label_column, true_prob_column
from rmtl_env.data.kuairand import LOG_COLUMNS
from rmtl_env.data.synthetic import write_twin


@pytest.fixture(scope="module")
def rr_tiny_raw(tmp_path_factory):
    return write_twin("retailrocket-synthetic", tmp_path_factory.mktemp("rr"), scale="tiny", seed=3)


@pytest.fixture(scope="module")
def kr_tiny_raw(tmp_path_factory):
    return write_twin("kuairand-synthetic", tmp_path_factory.mktemp("kr"), scale="tiny", seed=3)


def _digest(folder):
    return {p.name: hashlib.md5(p.read_bytes()).hexdigest() for p in sorted(folder.glob("*.csv"))}


def test_retailrocket_twin_writes_the_kaggle_format(rr_tiny_raw):
    lines = (rr_tiny_raw / "events.csv").read_text().splitlines()
    assert lines[0] == "timestamp,visitorid,event,itemid,transactionid"
    events = pd.read_csv(rr_tiny_raw / "events.csv")
    assert set(events["event"]) == {"view", "addtocart", "transaction"}
    assert events["transactionid"].notna().eq(events["event"] == "transaction").all()
    assert not events["timestamp"].is_monotonic_increasing  # unsorted, as the real file
    assert events["timestamp"].between(1430622004384, 1442545187788).all()
    assert events.duplicated().any()  # a few exact duplicates, as the real file
    assert re.fullmatch(r"\d{13},\d+,view,\d+,", lines[1]) or "," in lines[1]
    for part in ("item_properties_part1.csv", "item_properties_part2.csv"):
        head = (rr_tiny_raw / part).read_text().splitlines()[0]
        assert head == "timestamp,itemid,property,value"
    props = pd.read_csv(
        rr_tiny_raw / "item_properties_part1.csv", dtype={"property": str, "value": str}
    )
    assert {"available", "categoryid", "776", "364", "785", "591", "814"} <= set(props["property"])
    assert props["value"].str.fullmatch(r"n-?\d+\.\d{3}").any()  # n552.000 style
    assert props["value"].str.contains(" ").any()  # multi-token values
    sundays = pd.to_datetime(props["timestamp"], unit="ms")
    assert (sundays.dt.day_of_week == 6).all() and (sundays.dt.hour == 3).all()
    tree = pd.read_csv(rr_tiny_raw / "category_tree.csv")
    assert list(tree.columns) == ["categoryid", "parentid"] and len(tree) == 1669
    assert tree["parentid"].isna().sum() == 25


def test_kuairand_twin_writes_the_zenodo_format(kr_tiny_raw):
    for name in ("log_standard_4_08_to_4_21_1k.csv", "log_standard_4_22_to_5_08_1k.csv"):
        assert (kr_tiny_raw / name).read_text().splitlines()[0] == ",".join(LOG_COLUMNS)
    log = pd.read_csv(kr_tiny_raw / "log_standard_4_08_to_4_21_1k.csv")
    assert (log["hourmin"] % 100 == 0).all() and not log["time_ms"].is_monotonic_increasing
    users_text = (kr_tiny_raw / "user_features_1k.csv").read_text()
    assert users_text.splitlines()[0].startswith("user_id,user_active_degree,is_lowactive_period")
    users = pd.read_csv(kr_tiny_raw / "user_features_1k.csv")
    assert users.shape[1] == 31 and users["onehot_feat4"].dtype == np.float64
    videos_text = (kr_tiny_raw / "video_features_basic_1k.csv").read_text()
    assert re.search(r',"\d+,\d+"\n', videos_text)  # quoted tag lists
    videos = pd.read_csv(kr_tiny_raw / "video_features_basic_1k.csv")
    assert videos["video_duration"].isna().any() and videos["tag"].isna().any()
    assert ",0.0," in videos_text  # numbers written as floats


def test_twins_are_deterministic_per_seed(tmp_path, rr_tiny_raw, kr_tiny_raw):
    assert _digest(write_twin("retailrocket-synthetic", tmp_path / "a", "tiny", 3)) == _digest(
        rr_tiny_raw
    )
    assert _digest(write_twin("kuairand-synthetic", tmp_path / "b", "tiny", 3)) == _digest(
        kr_tiny_raw
    )
    assert _digest(write_twin("kuairand-synthetic", tmp_path / "c", "tiny", 4)) != _digest(
        kr_tiny_raw
    )


@pytest.mark.parametrize(
    ("fixture", "rates"),
    [("rr_small", [(0.02, 0.05), (0.005, 0.015)]), ("kr_small", [(0.33, 0.45), (0.22, 0.33)])],
)
def test_label_rates_oracle_and_nesting(request, fixture, rates):
    dataset = request.getfixturevalue(fixture)
    assert dataset.has_true_probs
    frame = dataset.frame
    first, second = (frame[label_column(t)].to_numpy() for t in dataset.tasks[:2])
    assert (second <= first).all()  # the second task implies the first
    for task, (low, high) in zip(dataset.tasks, rates, strict=True):
        assert low <= frame[label_column(task)].mean() <= high
        p = frame[true_prob_column(task)]
        assert p.between(0, 1).all()
        # The true probabilities are calibrated: their mean matches the label rate.
        assert abs(p.mean() - frame[label_column(task)].mean()) < 0.15 * p.mean()
        assert 0.74 <= dataset.meta["splits"]["test"]["oracle"][task]["auc"] <= 0.9


@pytest.mark.parametrize("fixture", ["rr_small", "kr_small"])
def test_logistic_regression_learns_but_stays_below_oracle(request, fixture):
    dataset = request.getfixturevalue(fixture)
    train, test = dataset.split("train"), dataset.split("test")
    encoder = OneHotEncoder(handle_unknown="ignore").fit(train.categorical)

    def features(split):
        return sparse.hstack([encoder.transform(split.categorical), split.numerical]).tocsr()

    for k, task in enumerate(dataset.tasks):
        model = LogisticRegression(C=0.3, max_iter=300).fit(features(train), train.labels[:, k])
        auc = roc_auc_score(test.labels[:, k], model.predict_proba(features(test))[:, 1])
        oracle = roc_auc_score(test.labels[:, k], test.true_probs[:, k])
        assert auc > 0.6, f"{task}: logistic regression AUC {auc:.3f} shows no signal"
        assert auc < oracle - 0.01, f"{task}: AUC {auc:.3f} not below oracle {oracle:.3f}"


# The tiny RetailRocket twin (seed 3) as written before the generator had knobs: at their
# defaults the knobs must leave every committed result's data byte for byte as it was.
RR_TINY_SEED3 = {
    "category_tree.csv": "69083b076446ca99797b4e86022feba5",
    "events.csv": "17090961ec5e80e3ccaba5aaa6dbdd68",
    "item_properties_part1.csv": "944c91f91f610b548bb83b17bbfe2565",
    "item_properties_part2.csv": "f67387264b82110a2d36e553e4869478",
    "synthetic_truth.csv": "88e1d667ab38f5baeb3890eff156bca8",
}


def _truth(folder) -> pd.DataFrame:
    return pd.read_csv(folder / "synthetic_truth.csv")


def test_knobs_at_their_defaults_write_the_same_bytes(tmp_path, rr_tiny_raw):
    assert _digest(rr_tiny_raw) == RR_TINY_SEED3
    knobs = write_twin("retailrocket-synthetic", tmp_path, "tiny", 3, conflict=0.0, noise=0.0)
    assert _digest(knobs) == RR_TINY_SEED3


def test_conflict_turns_the_click_and_purchase_drivers_against_each_other(tmp_path, rr_tiny_raw):
    def driver_correlation(folder) -> float:
        truth = _truth(folder)
        logit = lambda p: np.log(p / (1 - p))  # noqa: E731
        cvr = (truth["p_ctcvr"] / truth["p_ctr"]).clip(1e-6, 1 - 1e-6)
        return float(np.corrcoef(logit(truth["p_ctr"].clip(1e-6, 1 - 1e-6)), logit(cvr))[0, 1])

    conflicting = write_twin("retailrocket-synthetic", tmp_path, "tiny", 3, conflict=0.9)
    assert _truth(conflicting)[["visitorid", "itemid", "timestamp"]].equals(
        _truth(rr_tiny_raw)[["visitorid", "itemid", "timestamp"]]
    )  # the same views; only the purchase model changed
    before, after = driver_correlation(rr_tiny_raw), driver_correlation(conflicting)
    assert after < before - 0.3 and after < 0, (before, after)


def test_noise_mixes_one_segment_towards_the_base_rates(tmp_path, rr_tiny_raw):
    noisy = write_twin("retailrocket-synthetic", tmp_path, "tiny", 3, noise=0.9)
    p, q = _truth(rr_tiny_raw)["p_ctr"].to_numpy(), _truth(noisy)["p_ctr"].to_numpy()
    changed = np.abs(p - q) > 1e-5
    assert 0.15 < changed.mean() < 0.5  # the segment: a third of the categories' views
    base = (q[changed] - 0.1 * p[changed]) / 0.9  # q = 0.1 p + 0.9 r for one base rate r
    assert base.std() < 1e-4 and 0.01 < base.mean() < 0.06


def test_knobs_are_checked(tmp_path):
    with pytest.raises(ValueError, match="unknown twin knob 'conflit'"):
        write_twin("retailrocket-synthetic", tmp_path, "tiny", 0, conflit=0.5)
    with pytest.raises(ValueError, match=r"conflict must be in \[0.0, 0.99\]"):
        write_twin("retailrocket-synthetic", tmp_path, "tiny", 0, conflict=1.5)
    with pytest.raises(ValueError, match="retailrocket-synthetic only"):
        write_twin("kuairand-synthetic", tmp_path, "tiny", 0, noise=0.5)


def test_a_twin_with_knobs_is_its_own_cached_dataset():
    from agents.pipeline import DataConfig, load_splits

    plain = load_splits(DataConfig("retailrocket-synthetic", "tiny"))
    noisy = load_splits(DataConfig("retailrocket-synthetic", "tiny", twin_noise=0.5))
    assert noisy.dataset.meta["params"]["synthetic"]["knobs"] == {"noise": 0.5}
    assert "knobs" not in plain.dataset.meta["params"]["synthetic"]
    assert len(noisy.train) == len(plain.train)  # the same views, other labels
    assert not np.array_equal(noisy.train.labels, plain.train.labels)
    with pytest.raises(ValueError, match="retailrocket-synthetic only"):
        DataConfig("kuairand-synthetic", twin_conflict=0.5)
