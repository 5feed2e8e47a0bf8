"""KuaiRand-1K and KuaiRand-27K (Zenodo record 10439422) raw files to an impression table.

The two versions share one schema; they differ in file names (27K splits each standard log into
``_part1``/``_part2``) and size (27K: 27,285 users, 32,038,725 videos, 322,278,385 standard log
rows, about 23 GB of logs: prepare it out of core with ``rmtl_env.data.outofcore``).

Impressions are the rows of the standard logs (optionally also the random-policy log). Tasks are
0/1 feedback columns of the log: ``is_click`` (CTR) and ``long_view`` (the second task) by default;
any of ``is_like, is_follow, is_comment, is_forward, is_hate, is_profile_enter`` can be appended,
so K > 2 works. ``nested_tasks`` (default ``is_click -> long_view``) is a chain in which each
label must imply the previous one; the real log has about 0.2 % long views without a click, and
``nesting="fix"`` (default) sets them to ``long_view AND is_click`` (CTCVR semantics), counting
them in ``meta.json``; ``"error"`` raises instead and ``"ignore"`` keeps them.

Sessions: a user's rows (sorted by ``time_ms``, the authoritative timestamp) split where the
inactivity gap exceeds ``session_gap_minutes`` (default 30). Features: the user categorical fields
of ``user_features_1k.csv`` (activity degree, streamer/author flags, the ``*_range`` buckets and
``onehot_feat0..17``; NaN is unknown), ``user_id``, the basic video fields (``author_id``,
``video_type``, ``upload_type``, ``visible_status``, ``music_type``, first ``tag``,
``server_width``/``server_height``), ``tab`` and the hour of day (UTC+8), plus numerical
``log_duration_s`` (video duration), ``log_video_age_days`` (days since upload at the impression)
and the log of the user's follow/fans/friend counts and register days. The statistic file is
never read: its values average over the whole month, the future included.

Bad input: rows identical in every column the loader reads are removed and counted; rows are
sorted by (user, time); a missing column, a bad value, a label outside {0, 1} or an empty file
raises :class:`DataFormatError` naming the file and column.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from rmtl_env.data.dataset import label_column, true_prob_column
from rmtl_env.data.errors import DataFormatError, MissingRawFilesError, name_list
from rmtl_env.data.io import (
    FLOAT,
    INTEGER,
    STRING,
    check_binary,
    file_digest,
    find_raw_file,
    plain,
    read_csv_checked,
)
from rmtl_env.data.processing import ImpressionTable, enforce_nesting, sessionize_by_gap

URL = "https://zenodo.org/records/10439422 (KuaiRand-1K.tar.gz)"
STANDARD_LOGS = ("log_standard_4_08_to_4_21_1k.csv", "log_standard_4_22_to_5_08_1k.csv")
RANDOM_LOG = "log_random_4_22_to_5_08_1k.csv"
USER_FEATURES = "user_features_1k.csv"
VIDEO_FEATURES = "video_features_basic_1k.csv"


@dataclass(frozen=True)
class FileNames:
    """The raw file names of one KuaiRand version."""

    standard_logs: tuple[str, ...]
    random_log: str
    user_features: str
    video_features: str
    url: str


VERSIONS = {
    "1k": FileNames(STANDARD_LOGS, RANDOM_LOG, USER_FEATURES, VIDEO_FEATURES, URL),
    "27k": FileNames(
        tuple(
            f"log_standard_{period}_27k_part{part}.csv"
            for period in ("4_08_to_4_21", "4_22_to_5_08")
            for part in (1, 2)
        ),
        "log_random_4_22_to_5_08_27k.csv",
        "user_features_27k.csv",
        "video_features_basic_27k.csv",
        "https://zenodo.org/records/10439422 (KuaiRand-27K.tar.gz, 46 GB)",
    ),
}
TRUTH_FILE = "synthetic_truth.csv"  # written only by the synthetic twin

LOG_COLUMNS = (
    "user_id", "video_id", "date", "hourmin", "time_ms", "is_click", "is_like", "is_follow",
    "is_comment", "is_forward", "is_hate", "long_view", "play_time_ms", "duration_ms",
    "profile_stay_time", "comment_stay_time", "is_profile_enter", "is_rand", "tab",
)  # fmt: skip
FEEDBACK_COLUMNS = (
    "is_click", "long_view", "is_like", "is_follow", "is_comment", "is_forward", "is_hate",
    "is_profile_enter",
)  # fmt: skip
USER_CATEGORICAL = (
    "user_active_degree", "is_lowactive_period", "is_live_streamer", "is_video_author",
    "follow_user_num_range", "fans_user_num_range", "friend_user_num_range", "register_days_range",
    *(f"onehot_feat{i}" for i in range(18)),
)  # fmt: skip
USER_NUMERICAL = ("follow_user_num", "fans_user_num", "friend_user_num", "register_days")
USER_NULLABLE = ("onehot_feat4", *(f"onehot_feat{i}" for i in range(12, 18)))
USER_SCHEMA = {
    "user_id": INTEGER,
    **{c: STRING for c in USER_CATEGORICAL},
    **{c: FLOAT for c in USER_NUMERICAL},
}
VIDEO_SCHEMA = {
    "video_id": INTEGER,
    "author_id": INTEGER,
    "video_type": STRING,
    "upload_dt": STRING,
    "upload_type": STRING,
    "visible_status": FLOAT,
    "video_duration": FLOAT,
    "server_width": FLOAT,
    "server_height": FLOAT,
    "music_id": INTEGER,
    "music_type": FLOAT,
    "tag": STRING,
}
VIDEO_NULLABLE = ("video_type", "upload_dt", "upload_type", "visible_status", "video_duration",
                  "server_width", "server_height", "music_type", "tag", "author_id", "music_id")  # fmt: skip
VIDEO_CATEGORICAL = (
    "author_id", "video_type", "upload_type", "visible_status", "music_type", "tag",
    "server_width", "server_height",
)  # fmt: skip
BEIJING_OFFSET_MS = 8 * 3600 * 1000


@dataclass
class KuaiRandConfig:
    """How KuaiRand-1K logs become sessions, tasks and features.

    Attributes:
        tasks: feedback columns used as tasks, in order (first two: CTR-like and CTCVR-like).
        nested_tasks: chain of tasks in which each label must imply the previous one.
        nesting: ``"fix"``, ``"error"`` or ``"ignore"`` for rows that break ``nested_tasks``.
        session_gap_minutes: inactivity gap that ends a session.
        include_random_log: also read ``log_random_4_22_to_5_08_1k.csv``.
        include_user_id: ``user_id`` as a categorical field.
        include_video_id: ``video_id`` as a categorical field (millions of mostly rare ids).
    """

    tasks: tuple[str, ...] = ("is_click", "long_view")
    nested_tasks: tuple[str, ...] = ("is_click", "long_view")
    nesting: str = "fix"
    session_gap_minutes: float = 30.0
    include_random_log: bool = False
    include_user_id: bool = True
    include_video_id: bool = False

    def __post_init__(self) -> None:
        self.tasks = tuple(name_list(self.tasks, "tasks"))
        self.nested_tasks = tuple(name_list(self.nested_tasks, "nested_tasks"))
        bad = [t for t in self.tasks if t not in FEEDBACK_COLUMNS]
        if bad or len(self.tasks) < 1 or len(set(self.tasks)) != len(self.tasks):
            raise ValueError(
                f"tasks must be distinct feedback columns from {list(FEEDBACK_COLUMNS)}, got {list(self.tasks)}"
            )
        if not set(self.nested_tasks) <= set(self.tasks):
            self.nested_tasks = tuple(t for t in self.nested_tasks if t in self.tasks)
        if self.nesting not in ("fix", "error", "ignore"):
            raise ValueError(f"nesting must be 'fix', 'error' or 'ignore', got {self.nesting!r}")
        if not self.session_gap_minutes > 0:
            raise ValueError(f"session_gap_minutes must be > 0, got {self.session_gap_minutes}")


@dataclass
class KuaiRandFiles:
    logs: tuple[Path, ...]
    user_features: Path
    video_features: Path
    truth: Path | None = None
    version: str = "1k"

    @classmethod
    def in_folder(
        cls, folder: str | Path, include_random_log: bool = False,
        synthetic_name: str = "kuairand-synthetic", version: str = "1k",
    ) -> KuaiRandFiles:  # fmt: skip
        """The official file names of KuaiRand ``version`` (``1k`` or ``27k``) in ``folder``
        (or its ``data/`` subfolder)."""
        if version not in VERSIONS:
            raise ValueError(f"KuaiRand version must be one of {list(VERSIONS)}, got {version!r}")
        names_of = VERSIONS[version]
        folder = Path(folder).expanduser()
        if not find_raw_file(folder, names_of.standard_logs[0]) and (folder / "data").is_dir():
            folder = folder / "data"
        names = [*names_of.standard_logs, names_of.user_features, names_of.video_features]
        if include_random_log:
            names.insert(len(names_of.standard_logs), names_of.random_log)
        found = {name: find_raw_file(folder, name) for name in names}
        missing = [name for name, path in found.items() if path is None]
        if missing:
            raise MissingRawFilesError(
                f"kuairand-{version}", str(folder), missing, names_of.url, synthetic_name
            )
        logs = [found[n] for n in names if n.startswith("log_")]
        return cls(
            tuple(logs),
            found[names_of.user_features],
            found[names_of.video_features],
            find_raw_file(folder, TRUTH_FILE),
            version,
        )


def read_user_features(path: Path) -> pd.DataFrame:
    """``user_features_*.csv`` indexed by ``user_id``: categorical fields as text (NaN = unknown)
    and the raw counts used for the numerical features."""
    users = read_csv_checked(path, USER_SCHEMA, nullable=USER_NULLABLE, what="user features")
    if users["user_id"].duplicated().any():
        raise DataFormatError(f"user features file {path}: column 'user_id' must be unique")
    # onehot_feat columns with NaN are floats in the file ("1.0"); the same value written "1"
    # must map to the same category.
    for column in USER_CATEGORICAL:
        users[column] = _canonical_text(users[column])
    return users.set_index("user_id")


def read_video_features(path: Path) -> pd.DataFrame:
    """``video_features_basic_*.csv`` indexed by ``video_id`` with the first ``tag`` as ``tag``."""
    videos = read_csv_checked(path, VIDEO_SCHEMA, nullable=VIDEO_NULLABLE, what="video features")
    if videos["video_id"].duplicated().any():
        raise DataFormatError(f"video features file {path}: column 'video_id' must be unique")
    videos["tag"] = videos["tag"].str.split(",").str[0]
    upload = pd.to_datetime(videos["upload_dt"], format="%Y-%m-%d", errors="coerce")
    bad = upload.isna() & videos["upload_dt"].notna()
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise DataFormatError(
            f"video features file {path}: column 'upload_dt' has value "
            f"{plain(videos['upload_dt'].iloc[row])!r} at data row {row + 1}; expected YYYY-MM-DD"
        )
    videos["upload_day"] = (upload - pd.Timestamp("1970-01-01")).dt.days.astype("float64")
    return videos.set_index("video_id")


def _canonical_text(values: pd.Series) -> pd.Series:
    numeric = pd.to_numeric(values, errors="coerce")
    whole = numeric.notna() & (numeric == np.round(numeric))
    out = values.astype(object)
    out[whole] = numeric[whole].astype(np.int64).astype(str)
    return out


def used_log_columns(tasks: tuple[str, ...]) -> list[str]:
    """The log columns the loader reads (and over which duplicate rows are detected)."""
    return ["user_id", "video_id", "time_ms", "tab", *dict.fromkeys([*tasks, "is_click", "long_view"])]  # fmt: skip


def categorical_fields(config: KuaiRandConfig) -> list[str]:
    """The categorical fields of the processed dataset, in order."""
    return [
        *(["user_id"] if config.include_user_id else []),
        *USER_CATEGORICAL,
        *(["video_id"] if config.include_video_id else []),
        *VIDEO_CATEGORICAL,
        "tab",
        "hour",
    ]


NUMERICAL_FIELDS = ("log_duration_s", "log_video_age_days", *(f"log_{c}" for c in USER_NUMERICAL))


def loader_params(config: KuaiRandConfig) -> dict:
    """``meta.json``'s ``params["kuairand"]``."""
    return {
        "tasks": list(config.tasks),
        "nested_tasks": list(config.nested_tasks),
        "nesting": config.nesting,
        "session_gap_minutes": config.session_gap_minutes,
        "include_random_log": config.include_random_log,
        "include_user_id": config.include_user_id,
        "include_video_id": config.include_video_id,
    }


def read_logs(paths: tuple[Path, ...], tasks: tuple[str, ...]) -> tuple[pd.DataFrame, dict]:
    """Read, check, deduplicate and sort the interaction logs."""
    used = used_log_columns(tasks)
    frames = []
    for path in paths:
        header_check = {c: INTEGER for c in LOG_COLUMNS}
        log = read_csv_checked(path, {c: header_check[c] for c in used}, what="interaction log")
        _require_columns(path, LOG_COLUMNS)
        check_binary(
            log, [c for c in used if c in FEEDBACK_COLUMNS], f"interaction log file {path}"
        )
        frames.append(log)
    log = pd.concat(frames, ignore_index=True)
    counts = {"log_rows_read": len(log)}
    duplicated = log.duplicated()
    counts["duplicate_log_rows_removed"] = int(duplicated.sum())
    log = log[~duplicated.to_numpy()]
    order = np.lexsort((log["time_ms"].to_numpy(), log["user_id"].to_numpy()))
    counts["log_rows_were_sorted"] = bool((order == np.arange(len(order))).all())
    return log.iloc[order].reset_index(drop=True), counts


def _require_columns(path: Path, columns: tuple[str, ...]) -> None:
    import pyarrow.csv as pacsv

    header = pacsv.open_csv(str(path)).schema.names
    missing = [c for c in columns if c not in header]
    if missing:
        raise DataFormatError(
            f"interaction log file {path}: missing column(s) {missing}; expected the KuaiRand "
            f"header {list(columns)}"
        )


def build_impressions(
    files: KuaiRandFiles, config: KuaiRandConfig, name: str = "kuairand-1k"
) -> ImpressionTable:
    """Sessions, labels and user/video/context features of every logged impression."""
    log, counts = read_logs(files.logs, config.tasks)
    users = read_user_features(files.user_features)
    videos = read_video_features(files.video_features)
    user, time = log["user_id"].to_numpy(), log["time_ms"].to_numpy()
    frame = pd.DataFrame(
        {
            "session": sessionize_by_gap(user, time, int(config.session_gap_minutes * 60_000)),
            "timestamp": time,
            "raw_user_id": user,
            "raw_item_id": log["video_id"].to_numpy(),
        }
    )
    for task in config.tasks:
        frame[label_column(task)] = log[task].to_numpy().astype(np.int8)
    counts["nesting_violations_changed"] = enforce_nesting(
        frame, list(config.nested_tasks), "ignore" if config.nesting == "ignore" else config.nesting,
        f"interaction logs {[p.name for p in files.logs]}",
    )  # fmt: skip

    user_rows = users.index.get_indexer(user)
    video_rows = videos.index.get_indexer(log["video_id"].to_numpy())
    counts["rows_without_user_features"] = int((user_rows < 0).sum())
    counts["rows_without_video_features"] = int((video_rows < 0).sum())

    def gather(table: pd.DataFrame, column: str, rows: np.ndarray) -> np.ndarray:
        values = table[column].to_numpy(dtype=object if table[column].dtype != "float64" else None)
        taken = values[np.maximum(rows, 0)] if len(values) else np.full(len(rows), np.nan)
        return np.where(rows >= 0, taken, np.nan)

    if config.include_user_id:
        frame["user_id"] = user
    for column in USER_CATEGORICAL:
        frame[column] = gather(users, column, user_rows)
    if config.include_video_id:
        frame["video_id"] = log["video_id"].to_numpy()
    for column in VIDEO_CATEGORICAL:
        frame[column] = gather(videos, column, video_rows)
    frame["tab"] = log["tab"].to_numpy()
    frame["hour"] = ((time + BEIJING_OFFSET_MS) // 3_600_000) % 24

    frame["log_duration_s"] = np.log1p(
        np.clip(gather(videos, "video_duration", video_rows).astype(float), 0, None) / 1000
    )
    impression_day = (time + BEIJING_OFFSET_MS) // 86_400_000
    age = impression_day - gather(videos, "upload_day", video_rows).astype(float)
    frame["log_video_age_days"] = np.log1p(np.clip(age, 0, None))
    for column in USER_NUMERICAL:
        frame[f"log_{column}"] = np.log1p(
            np.clip(gather(users, column, user_rows).astype(float), 0, None)
        )

    raw_files = [file_digest(p) for p in (*files.logs, files.user_features, files.video_features)]
    if files.truth is not None:
        _attach_truth(frame, files.truth, config.tasks)
        raw_files.append(file_digest(files.truth))
    return ImpressionTable(
        name=name,
        source=f"kuairand-{files.version}",
        frame=frame,
        categorical=categorical_fields(config),
        numerical=list(NUMERICAL_FIELDS),
        tasks=list(config.tasks),
        params={"kuairand": loader_params(config)},
        raw_files=raw_files,
        row_counts=counts,
    )


def _attach_truth(frame: pd.DataFrame, path: Path, tasks: tuple[str, ...]) -> None:
    """Join the synthetic twin's true probabilities on (user, video, time); tasks without a
    column in the file get none, and then the dataset carries no oracle."""
    import pyarrow.csv as pacsv

    header = pacsv.open_csv(str(path)).schema.names
    available = [t for t in tasks if f"p_{t}" in header]
    if len(available) != len(tasks):
        return
    schema = {"user_id": INTEGER, "video_id": INTEGER, "time_ms": INTEGER}
    schema.update({f"p_{t}": FLOAT for t in tasks})
    truth = read_csv_checked(path, schema, what="synthetic truth")
    keys = ["raw_user_id", "raw_item_id", "timestamp"]
    truth = truth.rename(columns={"user_id": keys[0], "video_id": keys[1], "time_ms": keys[2]})
    merged = frame[keys].merge(truth.drop_duplicates(keys), on=keys, how="left")
    if merged[f"p_{tasks[0]}"].isna().any():
        raise DataFormatError(f"synthetic truth file {path} lacks rows for some impressions")
    for task in tasks:
        frame[true_prob_column(task)] = merged[f"p_{task}"].to_numpy(np.float32)


__all__ = ["KuaiRandConfig", "KuaiRandFiles", "build_impressions", "read_user_features",
           "read_video_features", "STRING"]  # fmt: skip
