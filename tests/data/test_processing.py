"""The shared processing recipe, through the engine: sessions, temporal split, id mapping."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from rmtl_env.data import ColumnRoles, ProcessingConfig, load_dataset


def one_field_log(tmp_path, values: list, **processing):
    """A log of one impression per session, in time order, with one categorical field ``v``;
    returns the processed dataset and its ``v`` ids in the log's order."""
    frame = pd.DataFrame({"s": range(len(values)), "t": range(len(values)), "v": values,
                          "y": [i % 2 for i in range(len(values))]})  # fmt: skip
    path = tmp_path / "log.csv"
    frame.to_csv(path, index=False)
    roles = ColumnRoles(session="s", timestamp="t", labels=["y"], categorical=["v"])
    dataset = load_dataset(path, roles=roles, **processing)
    return dataset, dataset.frame["v"].tolist()


def test_sessions_split_at_the_inactivity_gap(tmp_path) -> None:
    frame = pd.DataFrame({"u": [1, 1, 1, 1, 2, 2], "t": [0, 10, 100, 105, 106, 500],
                          "y": [0, 1, 0, 1, 0, 1]})  # fmt: skip
    frame.to_csv(tmp_path / "log.csv", index=False)
    roles = ColumnRoles(user="u", timestamp="t", labels=["y"], session_gap_minutes=50 / 60_000)
    dataset = load_dataset(tmp_path / "log.csv", roles=roles)
    assert dataset.frame["session_id"].tolist() == [0, 0, 1, 1, 2, 3]


def test_value_in_force_never_looks_ahead():
    from rmtl_env.data.synthetic.retailrocket import value_in_force

    log_item = np.array([7, 7, 7, 9])
    log_time = np.array([100, 200, 300, 50])
    item = np.array([7, 7, 7, 7, 9, 9, 8])
    time = np.array([99, 100, 250, 1000, 49, 60, 500])
    assert value_in_force(item, time, log_item, log_time).tolist() == [-1, 0, 1, 2, -1, 3, -1]


def test_category_ids_fitted_on_train_only(tmp_path) -> None:
    # 9 one-row sessions: the first 6 are the training split (6:2:2).
    dataset, ids = one_field_log(tmp_path, ["a", "a", "b", "b", "b", "c", None, "d", "a"])
    # b (3 in train) -> 1, a (2) -> 2, c (1 < min_count) -> 0, missing -> 0, d (val only) -> 0.
    assert ids == [2, 2, 1, 1, 1, 0, 0, 0, 2]
    assert dataset.field_dims == [3]
    assert dataset.vocabulary.set_index("value")["id"].to_dict() == {"b": 1, "a": 2}


def test_share_threshold_matches_official_rule(tmp_path) -> None:
    # 18 rows: the first 11 are the training split, with shares .45 .27 .18 .09.
    values = list("aaaaabbbccd") + ["z"] * 7
    dataset, ids = one_field_log(tmp_path, values, share_threshold={"v": 0.75})
    # a (cum .45) and b (cum .73) keep own ids; c, the first past .75, and all rarer share one.
    assert dict(zip(values, ids, strict=True)) == {"a": 1, "b": 2, "c": 3, "d": 3, "z": 0}
    assert dataset.field_dims == [4]


def test_max_vocab_keeps_the_most_frequent_training_values(tmp_path) -> None:
    values = ["a"] * 5 + ["b"] * 4 + ["c"] * 3 + ["d"] * 2 + ["a"] * 10
    dataset, ids = one_field_log(tmp_path, values, max_vocab={"v": 2})
    assert dataset.field_dims == [3] and dataset.vocabulary["value"].tolist() == ["a", "b"]
    assert ids == [1] * 5 + [2] * 4 + [0] * 5 + [1] * 10


def test_temporal_split_keeps_sessions_whole_and_ordered():
    dataset = load_dataset("retailrocket-synthetic", scale="tiny")
    frame = dataset.frame
    assert frame.groupby("session_id")["split"].nunique().max() == 1
    assert (np.diff(frame["session_id"]) >= 0).all()
    within = frame.groupby("session_id")["timestamp"].apply(lambda t: t.is_monotonic_increasing)
    assert within.all()
    starts = frame.groupby("session_id")["timestamp"].min()
    assert starts.is_monotonic_increasing  # numbered by start time
    split = frame.groupby("session_id")["split"].first().cat.codes
    assert split.is_monotonic_increasing  # train, then val, then test
    position = frame.loc[frame["split"] == "train", "log_position"]
    assert abs(position.mean()) < 1e-5  # standardised on train


def test_split_arrays_and_session_offsets():
    dataset = load_dataset("kuairand-synthetic", scale="tiny")
    for name in ("train", "val", "test"):
        split = dataset.split(name)
        assert split.categorical.shape == (len(split), len(dataset.categorical_fields))
        assert split.numerical.dtype == np.float32 and split.labels.shape == (len(split), 2)
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
