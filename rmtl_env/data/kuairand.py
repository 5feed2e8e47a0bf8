"""KuaiRand-1K and KuaiRand-27K (Zenodo record 10439422) raw files prepared with DuckDB.

The two versions share one schema; they differ in file names (27K splits each standard log into
``_part1``/``_part2``) and size (27K: 27,285 users, 32,038,725 videos, 322,278,385 standard log
rows, about 23 GB of logs: DuckDB prepares it out of core, under ``memory_limit``).

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

The steps in SQL (``rmtl_env.data.engine`` runs the ones every source shares): the CSV scans
with their checks, the removal of duplicate rows, sessionising with window functions, the joins
of the user and video features and of the twin's true probabilities, and the nesting fix.

Bad input: rows identical in every column the loader reads are removed and counted (a duplicate
counts at its first occurrence); rows with equal (user, time) keep their file order; a missing
column, a bad value, a label outside {0, 1} or an empty file raises :class:`DataFormatError`
naming the file and column.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from rmtl_env.data.dataset import label_column, true_prob_column
from rmtl_env.data.engine import (
    Fields,
    _check_truth,
    _quote,
    fetch_one,
    nest_labels,
    preparation,
    read_checked,
    read_table,
    require_content,
    require_rows,
    session_impressions,
    sessionised,
    sorted_in_file_order,
)
from rmtl_env.data.errors import DataFormatError, MissingRawFilesError, name_list
from rmtl_env.data.io import (
    find_raw_file,
    require_header,
)
from rmtl_env.data.processing import ProcessingConfig

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


def read_user_features(con, path: Path) -> None:
    """``user_features_*.csv`` into the table ``users`` of the DuckDB connection ``con``:
    categorical fields as text (missing = unknown) and the raw counts of the numerical
    features, checked."""
    types = {"user_id": "BIGINT", **{c: "VARCHAR" for c in USER_CATEGORICAL},
             **{c: "DOUBLE" for c in USER_NUMERICAL}}  # fmt: skip
    read_table(con, "users", path, types, "user features", nullable=USER_NULLABLE)
    # onehot_feat columns with an empty cell are floats in the file ("1.0"); the same value
    # written "1" must be the same category: a whole number's text is the integer's.
    canonical = ", ".join(
        f"{_quote(c)} = CASE WHEN TRY_CAST({_quote(c)} AS DOUBLE) = "
        f"round(TRY_CAST({_quote(c)} AS DOUBLE)) THEN "
        f"CAST(CAST(TRY_CAST({_quote(c)} AS DOUBLE) AS BIGINT) AS VARCHAR) ELSE {_quote(c)} END"
        for c in USER_CATEGORICAL
    )
    con.execute(f"UPDATE users SET {canonical}")


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


def _require_columns(path: Path, columns: tuple[str, ...]) -> None:
    label = f"interaction log file {path}"
    header = require_header(path, [], label)
    missing = [c for c in columns if c not in header]
    if missing:
        raise DataFormatError(
            f"{label}: missing column(s) {missing}; expected the KuaiRand header {list(columns)}"
        )


VIDEO_TYPES = {
    "video_id": "BIGINT", "author_id": "BIGINT", "video_type": "VARCHAR", "upload_dt": "VARCHAR",
    "upload_type": "VARCHAR", "visible_status": "DOUBLE", "video_duration": "DOUBLE",
    "server_width": "DOUBLE", "server_height": "DOUBLE", "music_id": "BIGINT",
    "music_type": "DOUBLE", "tag": "VARCHAR",
}  # fmt: skip


def _read_logs(con, files: KuaiRandFiles, used: list[str]) -> None:
    """Every log file into ``raw_log`` with its file number and line, checked."""
    columns = ", ".join(f"{_quote(c)} BIGINT" for c in used)
    con.execute(f"CREATE TABLE raw_log ({columns})")  # rowid: the (file, line) order
    types = "{" + ", ".join(f"'{c}': 'BIGINT'" for c in used) + "}"
    select = ", ".join(_quote(c) for c in used)
    outside = ", ".join(f"count(*) FILTER (WHERE {_quote(c)} NOT IN (0, 1))"
                        for c in used if c in FEEDBACK_COLUMNS)  # fmt: skip
    start = 0
    for path in files.logs:
        require_content(path, "interaction log file")  # before pyarrow reads the header
        _require_columns(path, LOG_COLUMNS)
        read_checked(
            con,
            f"INSERT INTO raw_log SELECT {select} FROM read_csv(?, header = true, types = {types})",
            path,
            "interaction log file",
        )
        label, this_file = f"interaction log file {path}", f"rowid >= {start}"
        rows = require_rows(con, "raw_log", used, label, this_file)
        bad = con.execute(f"SELECT {outside} FROM raw_log WHERE {this_file}").fetchall()[0]
        for column, count in zip([c for c in used if c in FEEDBACK_COLUMNS], bad, strict=True):
            if count:
                raise DataFormatError(
                    f"{label}: label column '{column}' has {count} value(s) outside {{0, 1}}; "
                    "expected 0 or 1"
                )
        start += rows


def read_video_features(con, path: Path) -> None:
    """``video_features_basic_*.csv`` into the table ``videos`` of the DuckDB connection
    ``con``: the feature columns, the first ``tag`` as ``tag`` and ``upload_day`` (days since
    1970), checked."""
    read_table(con, "raw_videos", path, VIDEO_TYPES, "video features", nullable=VIDEO_NULLABLE)
    con.execute(
        "CREATE TABLE videos AS SELECT video_id, author_id, video_type, upload_type, "
        "visible_status, video_duration, server_width, server_height, music_type, "
        "nullif(split_part(tag, ',', 1), '') AS tag, upload_dt, "
        "date_diff('day', DATE '1970-01-01', try_strptime(upload_dt, '%Y-%m-%d')::DATE) "
        "AS upload_day FROM raw_videos"
    )
    con.execute("DROP TABLE raw_videos")
    bad = fetch_one(
        con,
        "SELECT upload_dt FROM videos WHERE upload_day IS NULL AND upload_dt IS NOT NULL LIMIT 1",
    )
    if bad:
        raise DataFormatError(
            f"video features file {path}: column 'upload_dt' has value {bad[0]!r}; expected "
            "YYYY-MM-DD"
        )


def _impressions(con, files: KuaiRandFiles, config: KuaiRandConfig) -> dict:
    """The ``log`` table: one row per distinct log row (``ord``: its first file and line),
    sessionised per user, labels nested; returns the row counts."""
    used = used_log_columns(config.tasks)
    _read_logs(con, files, used)
    counts = {"log_rows_read": fetch_one(con, "SELECT count(*) FROM raw_log")[0]}
    keys = ", ".join(_quote(c) for c in used)
    gap = int(config.session_gap_minutes * 60_000)
    # One row per distinct log row, keeping the first occurrence: ``ord`` is its (file, line).
    con.execute(
        f"CREATE TABLE kept AS SELECT {keys}, min(rowid) AS ord FROM raw_log GROUP BY {keys}"
    )
    con.execute("DROP TABLE raw_log")
    con.execute(f"CREATE TABLE log AS {sessionised('kept', gap)}")
    con.execute("DROP TABLE kept")
    kept = fetch_one(con, "SELECT count(*) FROM log")[0]
    counts["duplicate_log_rows_removed"] = counts["log_rows_read"] - kept
    counts["log_rows_were_sorted"] = sorted_in_file_order(con, "log")
    counts["nesting_violations_changed"] = _nest(con, config, [p.name for p in files.logs])
    return counts


def _nest(con, config: KuaiRandConfig, names: list[str]) -> int:
    """``processing.enforce_nesting`` on the ``log`` table."""
    what = f"interaction logs {names}"
    return nest_labels(con, list(config.nested_tasks), config.nesting, what, first_row=False)


def _features(
    con, files: KuaiRandFiles, config: KuaiRandConfig, ratios: tuple[float, float, float]
) -> tuple[list[str], list[str], bool]:
    """The ``imp`` table: every kept row with its session id, split and raw features
    (``session_impressions``); returns the categorical and numerical fields and whether the
    twin's true probabilities were joined."""
    read_user_features(con, files.user_features)
    read_video_features(con, files.video_features)
    categorical = categorical_fields(config)
    day = f"(l.time_ms + {BEIJING_OFFSET_MS}) // 86400000"

    def clipped(x: str) -> str:  # log1p's argument (``_write`` takes it); NULL stays NULL
        return f"CASE WHEN {x} IS NULL THEN NULL ELSE greatest({x}, 0)::DOUBLE END"

    sql = {
        "log_duration_s": clipped("v.video_duration / 1000"),
        "log_video_age_days": clipped(f"{day} - v.upload_day"),
        **{f"log_{c}": clipped(f"u.{c}") for c in USER_NUMERICAL},
    }
    numerical = {name: sql[name] for name in NUMERICAL_FIELDS}  # the in-memory loader's order
    columns = [
        "l.user_id AS user_id", *(["l.video_id AS video_id"] if config.include_video_id else []),
        *(f"u.{_quote(c)}" for c in USER_CATEGORICAL),
        *(f"v.{_quote(c)}" for c in VIDEO_CATEGORICAL),
        "l.tab", f"((l.time_ms + {BEIJING_OFFSET_MS}) // 3600000) % 24 AS hour",
        *(f"{sql} AS {_quote(n)}" for n, sql in numerical.items()),
        *(f"l.{_quote(t)} AS {_quote(label_column(t))}" for t in config.tasks),
        "u.user_id IS NULL AS no_user", "v.video_id IS NULL AS no_video",
    ]  # fmt: skip
    joins = ["LEFT JOIN users u ON u.user_id = l.user_id",
             "LEFT JOIN videos v ON v.video_id = l.video_id"]  # fmt: skip
    truth_join, truth_cols = _truth_join(con, files.truth, config.tasks)
    session_impressions(con, ratios, "l.video_id", columns + truth_cols, joins + truth_join)
    con.execute("DROP TABLE log")
    return categorical, list(numerical), bool(truth_join)


def _truth_join(con, path: Path | None, tasks: tuple[str, ...]) -> tuple[list[str], list[str]]:
    """The join and columns of the synthetic twin's true probabilities
    (``kuairand._attach_truth``), or nothing."""
    if path is None:
        return [], []
    header = require_header(
        path, ["user_id", "video_id", "time_ms"], f"synthetic truth file {path}"
    )
    if not all(f"p_{t}" in header for t in tasks):
        return [], []
    con.execute(
        "CREATE TABLE truth AS SELECT * FROM read_csv(?, header = true) QUALIFY row_number() "
        "OVER (PARTITION BY user_id, video_id, time_ms) = 1",
        [str(path)],
    )
    join = (
        "LEFT JOIN truth t ON t.user_id = l.user_id AND t.video_id = l.video_id "
        "AND t.time_ms = l.time_ms"
    )
    return [join], [f"t.{_quote('p_' + t)} AS {_quote(true_prob_column(t))}" for t in tasks]


def prepare_kuairand(
    files: KuaiRandFiles,
    config: KuaiRandConfig,
    processing: ProcessingConfig,
    out: Path,
    name: str = "kuairand-1k",
    memory_limit: str = "4GB",
    threads: int = 2,
    progress: bool = True,
) -> dict:
    """Write the processed dataset of ``files`` into the (new, empty) folder ``out`` with DuckDB
    and return its ``meta``. ``memory_limit`` is DuckDB's (``"4GB"``, ``"500MB"``)."""
    paths = [p for p in (*files.logs, files.user_features, files.video_features, files.truth) if p]
    with preparation(name, out, paths, memory_limit, threads, progress, steps=2) as prep:
        prep.step("read, deduplicate, sessionise")
        counts = _impressions(prep.con, files, config)
        prep.step("join features, split")
        categorical, numerical, has_truth = _features(
            prep.con, files, config, processing.split_ratios
        )
        counts["rows_without_user_features"], counts["rows_without_video_features"] = fetch_one(
            prep.con,
            "SELECT count(*) FILTER (WHERE no_user), count(*) FILTER (WHERE no_video) FROM imp",
        )
        if has_truth:
            _check_truth(prep.con, files.truth, config.tasks)
        fields = Fields(categorical, numerical, list(config.tasks), has_truth, frozenset(numerical))
        params = {"kuairand": asdict(config), "processing": asdict(processing)}
        used = len(paths) - (files.truth is not None and not has_truth)  # the truth file if used
        return prep.finish(processing, fields, counts, params, source=f"kuairand-{files.version}",
                           raw_used=used)  # fmt: skip
