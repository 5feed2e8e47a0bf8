"""The shared processing recipe: sessions, temporal split, id mapping, as-of join."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from rmtl_env.data import ProcessingConfig, label_column
from rmtl_env.data.processing import (
    ImpressionTable,
    build_processed,
    fit_category_ids,
    sessionize_by_gap,
)
from rmtl_env.data.retailrocket import value_in_force


def test_sessionize_by_gap():
    user = np.array([1, 1, 1, 1, 2, 2])
    time = np.array([0, 10, 100, 105, 106, 500])
    assert sessionize_by_gap(user, time, 50).tolist() == [0, 0, 1, 1, 2, 3]


def test_value_in_force_never_looks_ahead():
    log_item = np.array([7, 7, 7, 9])
    log_time = np.array([100, 200, 300, 50])
    item = np.array([7, 7, 7, 7, 9, 9, 8])
    time = np.array([99, 100, 250, 1000, 49, 60, 500])
    assert value_in_force(item, time, log_item, log_time).tolist() == [-1, 0, 1, 2, -1, 3, -1]


def test_category_ids_fitted_on_train_only():
    values = pd.Series(["a", "a", "b", "b", "b", "c", None, "d", "a"])
    train = np.array([1, 1, 1, 1, 1, 1, 1, 0, 0], dtype=bool)
    ids, size, vocab = fit_category_ids(values, train, min_count=2)
    # b (3 in train) -> 1, a (2) -> 2, c (1 < min_count) -> 0, missing -> 0, d (test only) -> 0.
    assert ids.tolist() == [2, 2, 1, 1, 1, 0, 0, 0, 2]
    assert size == 3
    assert vocab.set_index("value")["id"].to_dict() == {"b": 1, "a": 2}


def test_share_threshold_matches_official_rule():
    values = pd.Series(list("aaaaabbbccd"))  # shares .45 .27 .18 .09
    ids, size, _ = fit_category_ids(values, np.ones(11, dtype=bool), 1, share_threshold=0.75)
    # a (cum .45) and b (cum .73) keep own ids; c, the first past .75, and all rarer share one.
    assert dict(zip(values, ids, strict=True)) == {"a": 1, "b": 2, "c": 3, "d": 3}
    assert size == 4


def _table(n_sessions=50, seed=0):
    rng = np.random.default_rng(seed)
    lengths = rng.integers(1, 6, n_sessions)
    session = np.repeat(rng.permutation(n_sessions) * 10, lengths)
    start = rng.permutation(n_sessions)[np.repeat(np.arange(n_sessions), lengths)] * 10_000
    frame = pd.DataFrame(
        {
            "session": session,
            "timestamp": start + np.concatenate([np.arange(n) for n in lengths]),
            "raw_user_id": session,
            "raw_item_id": rng.integers(0, 20, len(session)),
            "color": rng.choice(["red", "blue", None], len(session)),
            "price": np.where(
                rng.random(len(session)) < 0.1, np.nan, rng.normal(5, 2, len(session))
            ),
            label_column("click"): rng.integers(0, 2, len(session)),
        }
    )
    return ImpressionTable(
        "toy", "custom", frame.sample(frac=1, random_state=1), ["color"], ["price"], ["click"]
    )


def test_temporal_split_keeps_sessions_whole_and_ordered():
    dataset = build_processed(_table(), ProcessingConfig(split_ratios=(0.6, 0.2, 0.2)))
    frame = dataset.frame
    assert frame.groupby("session_id")["split"].nunique().max() == 1
    assert (np.diff(frame["session_id"]) >= 0).all()
    within = frame.groupby("session_id")["timestamp"].apply(lambda t: t.is_monotonic_increasing)
    assert within.all()
    starts = frame.groupby("session_id")["timestamp"].min()
    assert starts.is_monotonic_increasing  # numbered by start time
    split = frame.groupby("session_id")["split"].first().cat.codes
    assert split.is_monotonic_increasing  # train, then val, then test
    price = dataset.meta["numerical_stats"]["price"]
    assert price["missing"] > 0
    train_price = frame.loc[frame["split"] == "train", "price"]
    assert abs(train_price.mean()) < 1e-5  # standardised on train


def test_split_arrays_and_session_offsets():
    dataset = build_processed(_table(), ProcessingConfig())
    for name in ("train", "val", "test"):
        split = dataset.split(name)
        assert split.categorical.shape == (len(split), 1)
        assert split.numerical.dtype == np.float32 and split.labels.shape == (len(split), 1)
        assert split.session_starts[-1] == len(split)
        for j in range(split.num_sessions):
            rows = split.session_id[split.session_starts[j] : split.session_starts[j + 1]]
            assert len(set(rows)) == 1
    with pytest.raises(ValueError, match="tasks must be"):
        dataset.split("train", tasks=["nope"])
    with pytest.raises(ValueError, match="split must be"):
        dataset.split("validation")


def test_bad_processing_parameters():
    with pytest.raises(ValueError, match="split_ratios"):
        ProcessingConfig(split_ratios=(0.5, 0.5, 0.5))
    with pytest.raises(ValueError, match="min_count"):
        ProcessingConfig(min_count=0)


def test_max_vocab_keeps_the_most_frequent_training_values() -> None:
    from rmtl_env.data.processing import fit_category_ids

    values = pd.Series(["a"] * 5 + ["b"] * 4 + ["c"] * 3 + ["d"] * 2)
    train = np.ones(len(values), dtype=bool)
    ids, size, vocab = fit_category_ids(values, train, min_count=2, max_vocab=2)
    assert size == 3 and vocab["value"].tolist() == ["a", "b"]
    assert ids.tolist() == [1] * 5 + [2] * 4 + [0] * 5


def test_hashed_ids_are_stable_in_range_and_cover_unseen_values() -> None:
    from rmtl_env.data.processing import ProcessingConfig, hash_category_ids

    ids = hash_category_ids(pd.Series(["video-1", None, "video-2", "video-1"]), 1000)
    assert ids[1] == 0 and ids[0] == ids[3] and ids[[0, 2]].min() >= 1 and ids.max() <= 1000
    # SipHash with a fixed key: the same id in every process, on every machine.
    assert hash_category_ids(pd.Series([12345]), 1_000_000).tolist() == [
        int(1 + pd.util.hash_array(np.array(["12345"], dtype=object))[0] % 1_000_000)
    ]
    with pytest.raises(ValueError, match="more than one of share_threshold, max_vocab"):
        ProcessingConfig(max_vocab={"x": 5}, hash_buckets={"x": 7})
    with pytest.raises(ValueError, match=r"hash_buckets\['x'\] must be an integer >= 1"):
        ProcessingConfig(hash_buckets={"x": 0})
