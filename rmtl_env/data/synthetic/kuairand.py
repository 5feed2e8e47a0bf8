"""Synthetic twin of KuaiRand-1K: the official file formats from a known generative model.

Written files: ``log_standard_4_08_to_4_21_1k.csv``, ``log_standard_4_22_to_5_08_1k.csv``,
``log_random_4_22_to_5_08_1k.csv`` (19 log columns in the official order; ``hourmin`` as ``HH00``
in UTC+8; rows unsorted), ``user_features_1k.csv`` (31 columns; ``onehot_feat4`` and
``onehot_feat12..17`` float with NaN for about 3 % of users; quoted ``"[100,1k)"`` ranges),
``video_features_basic_1k.csv`` (12 columns; float-written numbers, NaN durations and music types,
quoted comma-separated ``tag`` lists, some empty) and ``synthetic_truth.csv`` (``user_id,
video_id,time_ms,p_is_click,p_long_view,p_is_like``).

Generative model (one ``numpy`` generator seeded by ``seed``):

- click logit = intercept + user effect (partly explained by ``user_active_degree`` and
  ``onehot_feat`` fields, partly only by ``user_id``) + author, upload type, video type and tag
  effects + a duration effect + ``tab`` and hour effects + a video effect no feature reveals +
  the session intent (start N(0, 0.7^2), then ``0.85 z - 0.03 + 0.3 clicked + N(0, 0.3^2)``
  per impression: fatigue along the session, lifted by clicks).
- long view given click: its own logistic model, short videos much likelier; half the intent.
  ``long_view`` implies ``is_click`` except for 0.2 % of rows, as in the real log (the loader's
  ``nesting="fix"`` turns those into 0, so the truth of the second task is
  P(click) P(long view | click)).
- like given a long view: a small logistic model; ``p_is_like`` = P(click, long view, like).
- Users have sessions of heavy-tailed length (mean about 15) separated by 40 minutes to a day;
  impressions within a session are 3 seconds to 10 minutes apart.

Rates are near the real ones (about 38 % click, 26 % long view, 1.5 % like), and the oracle AUC
is about 0.8.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from rmtl_env.data.kuairand import (
    LOG_COLUMNS,
    RANDOM_LOG,
    STANDARD_LOGS,
    TRUTH_FILE,
    USER_FEATURES,
    VERSIONS,
    VIDEO_FEATURES,
)
from rmtl_env.data.synthetic.common import (
    check_scale,
    intercept_for_rate,
    session_lengths,
    sigmoid,
    simulate_intent,
    write_csv,
    zipf_choice,
)

START_MS = 1649347200000  # 2022-04-08 00:00 UTC+8
SECOND_LOG_MS = 1650556800000  # 2022-04-22 00:00 UTC+8
END_MS = 1652025600000  # 2022-05-09 00:00 UTC+8
BEIJING_MS = 8 * 3600_000
ACTIVE_DEGREES = ("full_active", "high_active", "middle_active", "2_14_day_new", "low_active",
                  "single_low_active", "UNKNOWN")  # fmt: skip
UPLOAD_TYPES = ("ShortImport", "LongImport", "Web", "Kmovie", "LongCamera", "ShortCamera",
                "LipsSync", "PhotoCopy", "FollowShoot", "Karaoke", "LongPicture",
                "ShareFromOtherApp", "Solitaire", "PictureSet")  # fmt: skip
RANGES = {
    "follow_user_num": ("0", "(0,10]", "(10,50]", "(50,100]", "(100,150]", "(150,250]", "(250,500]", "500+"),
    "fans_user_num": ("0", "[1,10)", "[10,100)", "[100,1k)", "[1k,5k)", "[5k,1w)", "[1w,10w)"),
    "friend_user_num": ("0", "[1,5)", "[5,30)", "[30,60)", "[60,120)", "[120,250)", "250+"),
    "register_days": ("8-14", "15-30", "31-60", "61-90", "91-180", "181-365", "366-730", "730+"),
}  # fmt: skip
TAB_SHARES = {1: 0.659, 0: 0.206, 4: 0.076, 2: 0.034, 6: 0.016, 3: 0.003, 5: 0.003, 7: 0.003}


@dataclass(frozen=True)
class _Scale:
    users: int
    videos: int
    sessions_per_user: float
    random_rows: int


SCALE_SIZES = {
    "tiny": _Scale(40, 3_000, 9, 300),
    "small": _Scale(300, 40_000, 27, 2_000),
    "full": _Scale(1_000, 4_371_868, 780, 43_028),
}


# KuaiRand-27K at full size: 27,285 users, 32,038,725 videos, 787 sessions per user and
# 1,186,059 random-policy rows. The twin's users get about 9,900 rows each (267,166 rows at
# 1/1000), so about 270M at full size; the real 27K has 322M standard log rows.
FULL_27K = _Scale(27_285, 32_038_725, 787, 1_186_059)
ROWS_PER_CHUNK = 2_000_000  # the 27K twin is generated and written a block of users at a time


def size_27k(fraction: float) -> _Scale:
    """The 27K twin's size at ``fraction`` (0, 1] of the real one (users and videos scale, the
    rows per user do not)."""
    fraction = float(fraction)
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"the 27K twin's fraction must be in (0, 1], got {fraction}")
    return _Scale(
        max(2, round(FULL_27K.users * fraction)), max(100, round(FULL_27K.videos * fraction)),
        FULL_27K.sessions_per_user, round(FULL_27K.random_rows * fraction),
    )  # fmt: skip


def write_kuairand_27k_twin(out_dir: str | Path, fraction: float = 0.05, seed: int = 0) -> Path:
    """Write a KuaiRand-27K twin at ``fraction`` of the real size into ``out_dir``: the 27K file
    names (each standard log in ``_part1``/``_part2``: the first and second half of the users),
    the 1K twin's generative model, generated and appended ``ROWS_PER_CHUNK`` rows at a time so
    that memory stays bounded at any fraction."""
    size = size_27k(fraction)
    names = VERSIONS["27k"]
    rng = np.random.default_rng([seed, 2027])
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    users = _users(rng, size.users)
    videos = _videos(rng, size.videos)
    _write_frame(users["table"], out / names.user_features)
    _write_frame(videos["table"], out / names.video_features)
    per_user = size.sessions_per_user * 15  # rows per user, rounded up (measured: 9,900)
    chunk = max(1, ROWS_PER_CHUNK // per_user)
    writers: dict[str, pacsv.CSVWriter] = {}
    options = pacsv.WriteOptions(quoting_style="none", quoting_header="none")

    def append(name: str, table: pa.Table) -> None:
        if name not in writers:
            writers[name] = pacsv.CSVWriter(
                out / f".{name}.tmp", table.schema, write_options=options
            )
        writers[name].write_table(table)

    for first in range(0, size.users, chunk):
        count = min(chunk, size.users - first)
        log = _log(rng, size, users, videos, first_user=first, n_users=count)
        later_half = log["user_id"] >= size.users // 2
        table, second, random_policy, truth = _log_tables(log)
        standard = ~random_policy
        for name, mask in (
            (names.standard_logs[0], ~second & standard & ~later_half),
            (names.standard_logs[1], ~second & standard & later_half),
            (names.standard_logs[2], second & standard & ~later_half),
            (names.standard_logs[3], second & standard & later_half),
            (names.random_log, random_policy),
        ):
            rows = np.flatnonzero(mask)
            if len(rows):
                append(name, table.take(pa.array(rng.permutation(rows))))
        append(TRUTH_FILE, truth)
    for name, writer in writers.items():
        writer.close()
        (out / f".{name}.tmp").replace(out / name)
    return out


def write_kuairand_twin(out_dir: str | Path, scale: str = "small", seed: int = 0) -> Path:
    """Write the twin's raw files into ``out_dir`` and return it."""
    size = SCALE_SIZES[check_scale(scale)]
    rng = np.random.default_rng([seed, 2022])
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    users = _users(rng, size.users)
    videos = _videos(rng, size.videos)
    _write_frame(users["table"], out / USER_FEATURES)
    _write_frame(videos["table"], out / VIDEO_FEATURES)
    table, second, random_policy, truth = _log_tables(_log(rng, size, users, videos))
    for path, mask in (
        (STANDARD_LOGS[0], ~second & ~random_policy),
        (STANDARD_LOGS[1], second & ~random_policy),
        (RANDOM_LOG, random_policy),
    ):
        rows = np.flatnonzero(mask)
        write_csv(table.take(pa.array(rng.permutation(rows))), out / path)
    write_csv(truth, out / TRUTH_FILE)
    return out


def _log_tables(log: dict) -> tuple[pa.Table, np.ndarray, np.ndarray, pa.Table]:
    """``_log``'s columns as ``(log table, second-period mask, random-policy mask, truth
    table)``: the log columns in the official order, the true probabilities rounded to 6 digits
    beside their (user, video, time) key."""
    second = log["time_ms"] >= SECOND_LOG_MS
    random_policy = log.pop("is_random")
    probs = {k: log.pop(k) for k in ("p_is_click", "p_long_view", "p_is_like")}
    truth = pa.table(
        {
            "user_id": log["user_id"],
            "video_id": log["video_id"],
            "time_ms": log["time_ms"],
            **{k: pc.round(pa.array(v), 6) for k, v in probs.items()},
        }
    )
    return pa.table(log), second, random_policy, truth


def _write_frame(frame: pd.DataFrame, path: Path) -> None:
    """pandas writes floats as ``87433.0`` and quotes only fields with commas, as the real files."""
    tmp = path.with_name(f".{path.name}.tmp")
    frame.to_csv(tmp, index=False)
    tmp.replace(path)


def _users(rng: np.random.Generator, n: int) -> dict:
    degree = rng.choice(len(ACTIVE_DEGREES), n, p=[0.62, 0.22, 0.08, 0.03, 0.025, 0.01, 0.015])
    table = {
        "user_id": np.arange(n),
        "user_active_degree": np.array(ACTIVE_DEGREES)[degree],
        "is_lowactive_period": np.zeros(n, dtype=np.int64),
        "is_live_streamer": np.where(rng.random(n) < 0.2, 1, -124),
        "is_video_author": (rng.random(n) < 0.45).astype(np.int64),
    }
    for name, buckets in RANGES.items():
        bucket = rng.integers(0, len(buckets), n)
        table[name] = np.round(np.exp(bucket + rng.random(n))).astype(np.int64) * (
            3 if name == "register_days" else 1
        )
        table[f"{name}_range"] = np.array(buckets)[bucket]
    onehot = {}
    for i in range(18):
        cardinality = [8, 2, 60, 1200, 5, 2, 2, 45, 300, 7, 5, 4, 2, 2, 2, 2, 2, 2][i]
        values = zipf_choice(rng, cardinality, n, 0.8).astype(np.float64)
        onehot[f"onehot_feat{i}"] = values
    missing = rng.random(n) < 0.033
    columns = list(table)
    frame = pd.DataFrame(table)
    frame = frame[[*columns[:5], "follow_user_num", "follow_user_num_range", "fans_user_num",
                   "fans_user_num_range", "friend_user_num", "friend_user_num_range",
                   "register_days", "register_days_range"]]  # fmt: skip
    for name, values in onehot.items():
        index = int(name.removeprefix("onehot_feat"))
        if index == 4 or index >= 12:
            frame[name] = np.where(missing, np.nan, values)
        else:
            frame[name] = values.astype(np.int64)
    effect = (
        rng.normal(0, 0.35, len(ACTIVE_DEGREES))[degree]
        + rng.normal(0, 0.25, 8)[onehot["onehot_feat0"].astype(int)]
        + rng.normal(0, 0.3, 60)[onehot["onehot_feat2"].astype(int)]
        + rng.normal(0, 0.45, n)  # only user_id reveals this
    )
    return {
        "table": frame,
        "click": effect,
        "long": rng.normal(0, 0.4, n),
        "like": rng.normal(0, 0.6, n),
    }


def _videos(rng: np.random.Generator, n: int) -> dict:
    authors = max(10, n // 6)
    author = zipf_choice(rng, authors, n, 0.9)
    author_ids = rng.choice(9_000_000, size=authors, replace=False)
    upload_type = zipf_choice(rng, len(UPLOAD_TYPES), n, 1.2)
    video_type = rng.choice(3, n, p=[0.96, 0.035, 0.005])
    duration = np.round(np.exp(rng.normal(np.log(25_000), 0.9, n)))
    duration_missing = rng.random(n) < 0.131
    n_tags = 80
    first_tag = zipf_choice(rng, n_tags, n, 0.9)
    second = rng.integers(0, n_tags, n)
    tag = np.where(
        rng.random(n) < 0.3,
        np.char.add(np.char.add(first_tag.astype(str), ","), second.astype(str)),
        first_tag.astype(str),
    )
    tag = np.where(rng.random(n) < 0.03, "", tag)
    upload_day = START_MS // 86_400_000 + 14 - rng.exponential(25, n).astype(np.int64)
    width = np.where(rng.random(n) < 0.85, 720.0, rng.choice([1080.0, 576.0, 1280.0], n))
    height = np.where(width == 720.0, 1280.0, rng.choice([1920.0, 1024.0, 720.0], n))
    music_type = rng.choice([9.0, 4.0, 8.0, 7.0, 11.0], n, p=[0.55, 0.25, 0.1, 0.05, 0.05])
    frame = pd.DataFrame(
        {
            "video_id": np.arange(n),
            "author_id": author_ids[author],
            "video_type": np.array(["NORMAL", "AD", "UNKNOWN"])[video_type],
            "upload_dt": pd.to_datetime(upload_day, unit="D").strftime("%Y-%m-%d"),
            "upload_type": np.array(UPLOAD_TYPES)[upload_type],
            "visible_status": np.where(rng.random(n) < 0.98, 0.0, 1.0),
            "video_duration": np.where(duration_missing, np.nan, duration),
            "server_width": width,
            "server_height": height,
            "music_id": rng.integers(10**9, 9_300_000_000, n),
            "music_type": np.where(rng.random(n) < 0.014, np.nan, music_type),
            "tag": pd.Series(tag).replace("", np.nan),
        }
    )
    log_duration = np.log(duration / 25_000)
    click = (
        rng.normal(0, 0.35, authors)[author]
        + rng.normal(0, 0.25, len(UPLOAD_TYPES))[upload_type]
        + np.array([0.0, -0.8, -0.3])[video_type]
        + rng.normal(0, 0.3, n_tags)[first_tag]
        - 0.15 * log_duration
        + rng.normal(0, 0.4, n)  # revealed by no feature
    )
    long = rng.normal(0, 0.3, authors)[author] - 1.1 * log_duration + rng.normal(0, 0.3, n)
    return {"table": frame, "click": click, "long": long, "duration": duration}


def _timeline(rng: np.random.Generator, size: _Scale, n_users: int) -> tuple:
    """``(lengths, session_user, time)``: the sessions of ``n_users`` users (local index), their
    lengths, and every row's time in ms, each user's sessions one after another in the month."""
    activity = rng.lognormal(0, 0.6, n_users)
    sessions = np.maximum(1, rng.poisson(size.sessions_per_user * activity / activity.mean()))
    session_user = np.repeat(np.arange(n_users), sessions)  # local user index
    lengths = session_lengths(rng, len(session_user), mean_extra=11.0, tail=0.05)
    total = int(lengths.sum())
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    gap = np.minimum(rng.lognormal(np.log(25_000), 0.9, total), 10 * 60_000)
    elapsed = np.cumsum(gap)
    within = elapsed - np.repeat(elapsed[starts], lengths)
    duration = within[starts + lengths - 1] + 60_000
    # Sessions of a user are laid out one after another, each 40 minutes to a day after the last.
    pause = 40 * 60_000 + rng.exponential(8 * 3600_000, len(lengths))
    first = np.r_[True, session_user[1:] != session_user[:-1]]
    step = np.where(first, 0.0, np.r_[0.0, duration[:-1]] + pause)
    cumulative = np.cumsum(step)
    group_start = np.maximum.accumulate(np.where(first, np.arange(len(lengths)), 0))
    offset = cumulative - cumulative[group_start]
    last = np.r_[np.flatnonzero(first)[1:] - 1, len(lengths) - 1]
    span = np.maximum(offset[last] + duration[last], 1)
    squeeze = np.minimum(1.0, (END_MS - START_MS - 86_400_000) / span)  # fit busy users in
    user_begin = START_MS + rng.random(n_users) * np.maximum(
        END_MS - START_MS - span * squeeze - 3600_000, 0
    )
    session_start = user_begin[session_user] + offset * squeeze[session_user]
    time = (np.repeat(session_start, lengths) + within).astype(np.int64)
    return lengths, session_user, time


def _labels(rng: np.random.Generator, lengths, users: dict, videos: dict, user, video, tab,
            hour) -> dict:  # fmt: skip
    """Click, long view and like of every row, with their true probabilities."""
    total = int(lengths.sum())
    tab_effect = dict(zip(TAB_SHARES, rng.normal(0, 0.4, len(TAB_SHARES)), strict=True))
    static = (
        users["click"][user]
        + videos["click"][video]
        + np.vectorize(tab_effect.get)(tab)
        + 0.25 * np.cos(2 * np.pi * (hour - 21) / 24)
    )
    static += intercept_for_rate(static, 0.31)
    intent, p_click, click = simulate_intent(
        rng, lengths, static, start_sd=0.7, persistence=0.85, step_sd=0.3, drift=-0.03, click_jump=0.3,
    )  # fmt: skip
    long_logit = users["long"][user] + videos["long"][video] + 0.5 * intent
    long_logit += intercept_for_rate(long_logit, 0.69)
    p_long_given_click = sigmoid(long_logit)
    long_view = click & (rng.random(total) < p_long_given_click)
    stray = ~click & (rng.random(total) < 0.003)  # the real log's long views without a click
    like_logit = users["like"][user] - 3.2 + 0.5 * intent
    p_like_given_long = sigmoid(like_logit)
    like = long_view & (rng.random(total) < p_like_given_long)
    return {"click": click, "long_view": long_view, "stray": stray, "like": like,
            "p_is_click": p_click, "p_long_view": p_click * p_long_given_click,
            "p_is_like": p_click * p_long_given_click * p_like_given_long}  # fmt: skip


def _random_policy_rows(rng: np.random.Generator, size: _Scale, n_users: int, time) -> np.ndarray:
    """Which rows are the random-policy log's (in the second log's weeks)."""
    is_random = np.zeros(len(time), dtype=bool)
    random_rows = round(size.random_rows * n_users / size.users)
    if random_rows:
        later = np.flatnonzero(time >= SECOND_LOG_MS)
        is_random[rng.choice(later, size=min(random_rows, len(later)), replace=False)] = True
    return is_random


def _log(
    rng: np.random.Generator, size: _Scale, users: dict, videos: dict, first_user: int = 0,
    n_users: int | None = None,
) -> dict:  # fmt: skip
    """The log rows of users ``first_user .. first_user + n_users - 1`` (default: all)."""
    n_users = size.users if n_users is None else n_users
    lengths, session_user, time = _timeline(rng, size, n_users)
    total = len(time)
    user = first_user + np.repeat(session_user, lengths)
    video = zipf_choice(rng, len(videos["click"]), total, 0.75)
    tab = rng.choice(
        list(TAB_SHARES), total, p=np.array(list(TAB_SHARES.values())) / sum(TAB_SHARES.values())
    )
    hour = ((time + BEIJING_MS) // 3_600_000) % 24
    labels = _labels(rng, lengths, users, videos, user, video, tab, hour)
    click, long_view, stray = labels["click"], labels["long_view"], labels["stray"]
    d = videos["duration"][video]
    threshold = np.minimum(d, 18_000)
    play = np.where(long_view | stray, threshold + rng.random(total) * d * 0.5,
                    rng.random(total) * np.minimum(threshold, 7_000) * click + rng.random(total) * 2_000)  # fmt: skip
    local = pd.to_datetime(time + BEIJING_MS, unit="ms")
    rare = lambda p: (rng.random(total) < p).astype(np.int64)  # noqa: E731
    is_random = _random_policy_rows(rng, size, n_users, time)
    columns = {
        "user_id": user,
        "video_id": video,
        "date": local.strftime("%Y%m%d").astype(np.int64).to_numpy(),
        "hourmin": (hour * 100).astype(np.int64),
        "time_ms": time,
        "is_click": click.astype(np.int64),
        "is_like": labels["like"].astype(np.int64),
        "is_follow": (click & (rng.random(total) < 0.003)).astype(np.int64),
        "is_comment": (click & (rng.random(total) < 0.007)).astype(np.int64),
        "is_forward": (click & (rng.random(total) < 0.0025)).astype(np.int64),
        "is_hate": rare(0.0005),
        "long_view": (long_view | stray).astype(np.int64),
        "play_time_ms": play.astype(np.int64),
        "duration_ms": np.where(rng.random(total) < 0.08, 0, d).astype(np.int64),
        "profile_stay_time": np.where(
            rng.random(total) < 0.02, rng.integers(1000, 60_000, total), 0
        ),
        "comment_stay_time": np.where(
            rng.random(total) < 0.03, rng.integers(1000, 90_000, total), 0
        ),
        "is_profile_enter": rare(0.018),
        "is_rand": is_random.astype(np.int64),
        "tab": np.where(is_random, 1, tab).astype(np.int64),
    }
    assert list(columns) == list(LOG_COLUMNS)
    probabilities = {k: labels[k] for k in ("p_is_click", "p_long_view", "p_is_like")}
    return {**columns, "is_random": is_random, **probabilities}


__all__ = ["FULL_27K", "SCALE_SIZES", "size_27k", "write_kuairand_27k_twin", "write_kuairand_twin"]
