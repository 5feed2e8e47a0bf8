"""The KuaiRand feature parsers on the real KuaiRand-Pure feature files."""

from __future__ import annotations

import numpy as np

from rmtl_env.data.kuairand import USER_CATEGORICAL, read_user_features, read_video_features


def test_user_features_pure(shared_raw):
    import duckdb

    con = duckdb.connect()
    read_user_features(con, shared_raw / "kuairand/user_features_pure.csv.gz")
    users = con.execute("SELECT * FROM users").df().set_index("user_id")
    assert len(users) == 27_285 and users.index.is_unique
    assert set(USER_CATEGORICAL) <= set(users.columns)
    # NaN cells of the float-written onehot columns stay unknown (datasets.md: 874 and 714).
    assert users["onehot_feat4"].isna().sum() == 874
    assert users["onehot_feat12"].isna().sum() == 714
    # "1.0" in a float column and "1" in an int column are the same category text.
    assert set(users["onehot_feat12"].dropna().unique()) <= {"0", "1"}
    assert "[100,1k)" in set(users["fans_user_num_range"])  # quoted comma survives
    assert users["user_active_degree"].nunique() == 9
    assert set(users["is_live_streamer"].unique()) == {"-124", "1"}


def test_video_features_pure(shared_raw):
    import duckdb

    con = duckdb.connect()
    read_video_features(con, shared_raw / "kuairand/video_features_basic_pure.csv.gz")
    videos = con.execute("SELECT * FROM videos").df().set_index("video_id")
    assert len(videos) == 7_583 and videos.index.is_unique
    assert videos["video_duration"].isna().sum() == 239
    assert videos["music_type"].isna().sum() == 203
    assert videos["tag"].isna().sum() == 96
    assert not videos["tag"].dropna().str.contains(",").any()  # first tag of "20,43"
    assert np.isfinite(videos["upload_day"]).all()
    assert videos["author_id"].dtype == np.int64
