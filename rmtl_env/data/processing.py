"""From a loader's impression table to the processed session dataset (see ``docs`` in README).

Every loader (RetailRocket, KuaiRand-1K, own logs, synthetic twins) produces an
:class:`ImpressionTable`; :func:`build_processed` turns it into a :class:`SessionDataset` with one
fixed recipe, so every source gets the same session order, split and id mapping:

1. sessions are numbered in the order of their first impression, rows sorted by (session, time);
2. temporal split: sessions ordered by start time are cut where the cumulative share of
   impressions reaches the split ratios (6:2:2 by default), so each session lies whole in the
   split of its first impression;
3. categorical values get integer ids fitted on the training split only: values seen at least
   ``min_count`` times get ids 1, 2, ... by descending training frequency; 0 is unknown, rare,
   missing and padding. Fields listed in ``share_threshold`` use the official RMTL rule instead
   (values kept while their cumulative training share stays within the threshold, the rest share
   one tail id);
4. numerical features are standardised with training mean and standard deviation; a missing value
   becomes the training mean (0 after standardising) and is counted in ``meta.json``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd

from rmtl_env.data.dataset import (
    FORMAT_VERSION,
    SPLITS,
    SessionDataset,
    label_column,
    true_prob_column,
)
from rmtl_env.data.errors import DataFormatError


@dataclass
class ProcessingConfig:
    """Parameters of the shared processing recipe; all of them are recorded in ``meta.json``.

    Attributes:
        split_ratios: train/val/test shares of impressions for the temporal split.
        min_count: a categorical value needs this many training occurrences to get its own id.
        share_threshold: field -> cumulative-share threshold, the official RMTL ``Catemapper``
            rule (the official code uses 0.2 for RetailRocket fields ``776`` and ``364``).
        max_vocab: field -> the most own ids: only the field's ``max_vocab`` most frequent
            training values (of those seen ``min_count`` times) keep an id, the rest share 0.
        hash_buckets: field -> B: every value's id is ``1 + hash(value) mod B`` (a stable
            SipHash of its text, ``pandas.util.hash_array``), so the table has B + 1 rows
            whatever the number of values, unseen values included; such a field has no
            vocabulary rows (``meta["hashed_fields"]``). For id fields with millions of values
            (KuaiRand-27K's ``video_id``: 32M values, 16.4 GB per 128-d float32 table).
    """

    split_ratios: tuple[float, float, float] = (0.6, 0.2, 0.2)
    min_count: int = 2
    share_threshold: dict[str, float] = field(default_factory=dict)
    max_vocab: dict[str, int] = field(default_factory=dict)
    hash_buckets: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        ratios = tuple(float(r) for r in self.split_ratios)
        if len(ratios) != 3 or min(ratios) <= 0 or abs(sum(ratios) - 1.0) > 1e-6:
            raise ValueError(
                f"split_ratios must be three positive shares that sum to 1, got {self.split_ratios}"
            )
        self.split_ratios = ratios
        if isinstance(self.min_count, bool) or not isinstance(self.min_count, int | np.integer):
            raise TypeError(f"min_count must be an integer >= 1, got {self.min_count!r}")
        if self.min_count < 1:
            raise ValueError(f"min_count must be >= 1, got {self.min_count}")
        for name, value in self.share_threshold.items():
            if not 0.0 < float(value) <= 1.0:
                raise ValueError(f"share_threshold[{name!r}] must be in (0, 1], got {value}")
        for option in ("max_vocab", "hash_buckets"):
            for name, value in getattr(self, option).items():
                if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
                    raise ValueError(f"{option}[{name!r}] must be an integer >= 1, got {value!r}")
        rules = [set(self.share_threshold), set(self.max_vocab), set(self.hash_buckets)]
        both = (rules[0] & rules[1]) | (rules[0] & rules[2]) | (rules[1] & rules[2])
        if both:
            raise ValueError(
                f"field(s) {sorted(both)} have more than one of share_threshold, max_vocab and "
                "hash_buckets; give each field one rule"
            )


@dataclass
class ImpressionTable:
    """What a loader hands to :func:`build_processed`.

    ``frame`` has one row per impression with columns ``session`` (any int64 key, one value per
    session), ``timestamp`` (int64 ms), ``raw_user_id``, ``raw_item_id``, the raw categorical
    columns (any values; NaN = missing), the numerical columns (float; NaN = missing), one
    ``label:<task>`` column per task (0/1) and, for synthetic data, ``p_true:<task>`` columns.
    """

    name: str
    source: str
    frame: pd.DataFrame
    categorical: list[str]
    numerical: list[str]
    tasks: list[str]
    params: dict = field(default_factory=dict)
    raw_files: list[dict] = field(default_factory=list)
    row_counts: dict = field(default_factory=dict)


def sessionize_by_gap(user: np.ndarray, timestamp: np.ndarray, gap_ms: int) -> np.ndarray:
    """Session number per row: a user's rows split where the time since the previous row exceeds
    ``gap_ms``. Rows must be sorted by (user, timestamp). Returns int64 ids 0..S-1."""
    if len(user) == 0:
        return np.zeros(0, dtype=np.int64)
    new_session = np.ones(len(user), dtype=bool)
    new_session[1:] = (user[1:] != user[:-1]) | (np.diff(timestamp) > gap_ms)
    return np.cumsum(new_session) - 1


def enforce_nesting(frame: pd.DataFrame, tasks: list[str], policy: str, label: str) -> int:
    """Make each task's label imply the previous task's (pay implies click).

    ``policy`` is ``"error"`` (raise on any violation), ``"fix"`` (set the later label to the AND
    of itself and the earlier one, as CTCVR = click and conversion) or ``"ignore"``. Returns the
    number of rows changed.
    """
    if policy not in ("error", "fix", "ignore"):
        raise ValueError(f"nesting policy must be 'error', 'fix' or 'ignore', got {policy!r}")
    changed = 0
    if policy == "ignore":
        return changed
    for earlier, later in zip(tasks[:-1], tasks[1:], strict=True):
        a, b = label_column(earlier), label_column(later)
        violation = (frame[b] == 1) & (frame[a] == 0)
        count = int(violation.sum())
        if count and policy == "error":
            row = int(np.flatnonzero(violation.to_numpy())[0])
            raise DataFormatError(
                f"{label}: {count} row(s) have {later}=1 but {earlier}=0 (first at data row "
                f"{row + 1}); expected {later} to imply {earlier}. Pass nesting='fix' to set "
                f"{later} to {later} AND {earlier}, or nesting='ignore' to keep the labels."
            )
        if count:
            frame.loc[violation, b] = 0
            changed += count
    return changed


def hash_category_ids(values: pd.Series | np.ndarray, buckets: int) -> np.ndarray:
    """``1 + SipHash(text of value) mod buckets`` per value; 0 where the value is missing. The
    same value gives the same id in every process and on every machine."""
    series = pd.Series(values)
    if isinstance(series.dtype, pd.CategoricalDtype):  # RetailRocket's property columns
        series = series.astype(object)
    missing = series.isna().to_numpy()
    text = pd.Index(series.where(~missing, "")).astype(str).to_numpy(dtype=object)
    hashed = pd.util.hash_array(text, categorize=True)
    return np.where(missing, 0, 1 + (hashed % np.uint64(buckets)).astype(np.int64))


def fit_category_ids(
    values: pd.Series,
    train: np.ndarray,
    min_count: int,
    share_threshold: float | None = None,
    max_vocab: int | None = None,
) -> tuple[np.ndarray, int, pd.DataFrame]:
    """Map one categorical column to integer ids fitted on the training rows.

    Returns ``(ids, vocab_size, vocabulary)`` where ``vocabulary`` has columns ``value`` (the raw
    value as text), ``id`` and ``train_count`` for every value that got an id other than 0.
    """
    codes, uniques = pd.factorize(values, sort=False, use_na_sentinel=True)
    codes = np.asarray(codes, dtype=np.int64)
    counts = np.bincount(codes[train & (codes >= 0)], minlength=len(uniques))
    # Descending training count; ties broken by first appearance, which is deterministic.
    order = np.lexsort((np.arange(len(uniques)), -counts))
    sorted_counts = counts[order]
    code_to_id = np.zeros(len(uniques) + 1, dtype=np.int64)  # last slot: missing (-1)
    if share_threshold is None:
        kept = order[sorted_counts >= min_count][:max_vocab]
        code_to_id[kept] = np.arange(1, len(kept) + 1)
        vocab_size = len(kept) + 1
        ids_of_kept = np.arange(1, len(kept) + 1)
    else:
        seen = order[sorted_counts > 0]
        share = np.cumsum(counts[seen]) / max(counts.sum(), 1)
        n_own = int(np.searchsorted(share, share_threshold, side="right"))
        ids_of_kept = np.minimum(np.arange(1, len(seen) + 1), n_own + 1)
        code_to_id[seen] = ids_of_kept
        kept = seen
        vocab_size = int(ids_of_kept.max(initial=0)) + 1
    ids = code_to_id[codes]
    vocabulary = pd.DataFrame(
        {
            "value": pd.Index(uniques).astype(str)[kept] if len(kept) else pd.Index([], dtype=str),
            "id": ids_of_kept,
            "train_count": counts[kept],
        }
    )
    return ids, vocab_size, vocabulary


def scale_parameters(mean: float | None, std: float | None) -> tuple[float, float]:
    """The standardisation ``(mean, std)`` of a numerical field from its training mean and
    population std (None: no training value): 0 and 1 when there is nothing to learn from, and
    std 1 for a constant field."""
    mean = 0.0 if mean is None else float(mean)
    std = 1.0 if std is None else float(std)
    return mean, std if std > 1e-12 else 1.0


def fit_scaling(train_values: np.ndarray) -> tuple[float, float]:
    """``scale_parameters`` of a field's non-missing training values, given in the processed
    rows' order: NumPy's pairwise sums depend on the order in their last bits, and those bits
    decide the float32 rounding of features near the mean."""
    if len(train_values) == 0:
        return scale_parameters(None, None)
    return scale_parameters(train_values.mean(), train_values.std())


def standardise(values: np.ndarray, mean: float, std: float) -> np.ndarray:
    """float32 ``(values - mean) / std``, with a missing value (NaN) at 0, the training mean."""
    return np.where(np.isnan(values), 0.0, (values - mean) / std).astype(np.float32)


def processed_meta(
    *,
    name: str,
    source: str,
    tasks: list[str],
    categorical: list[str],
    field_dims: list[int],
    numerical: list[str],
    numerical_stats: dict,
    has_true_probs: bool,
    hashed_fields: dict[str, int],
    params: dict,
    raw_files: list[dict],
    row_counts: dict,
) -> dict:
    """A processed dataset's ``meta.json`` (``rmtl_env.data.dataset``) up to its per-split
    statistics (``splits``), as every preparation path writes it."""
    return {
        "format_version": FORMAT_VERSION,
        "dataset": name,
        "source": source,
        "tasks": list(tasks),
        "categorical_fields": list(categorical),
        "field_dims": field_dims,
        "numerical_fields": list(numerical),
        "numerical_stats": numerical_stats,
        "has_true_probs": has_true_probs,
        "hashed_fields": hashed_fields,
        "params": params,
        "raw_files": raw_files,
        "row_counts": row_counts,
    }


def build_processed(table: ImpressionTable, config: ProcessingConfig) -> SessionDataset:
    """Order, split, map and standardise an impression table into a :class:`SessionDataset`."""
    frame = table.frame
    if len(frame) == 0:
        raise DataFormatError(f"{table.name}: no impressions left to process")
    start = frame.groupby("session", sort=False)["timestamp"].transform("min").to_numpy()
    order = np.lexsort((frame["timestamp"].to_numpy(), frame["session"].to_numpy(), start))
    frame = frame.iloc[order].reset_index(drop=True)
    session_id, _ = pd.factorize(frame["session"], sort=False)
    session_id = np.asarray(session_id, dtype=np.int64)

    split = _temporal_split(session_id, config.split_ratios)
    train = split == 0
    if not train.any():
        raise DataFormatError(f"{table.name}: the training split is empty")

    out = {
        "session_id": session_id,
        "timestamp": frame["timestamp"].to_numpy(np.int64),
        "raw_user_id": frame["raw_user_id"].to_numpy(np.int64),
        "raw_item_id": frame["raw_item_id"].to_numpy(np.int64),
    }
    field_dims: list[int] = []
    vocabularies = []
    for name in table.categorical:
        if name in config.hash_buckets:
            out[name] = hash_category_ids(frame[name], config.hash_buckets[name])
            field_dims.append(config.hash_buckets[name] + 1)
            continue
        threshold, cap = config.share_threshold.get(name), config.max_vocab.get(name)
        ids, size, vocab = fit_category_ids(frame[name], train, config.min_count, threshold, cap)
        out[name] = ids
        field_dims.append(size)
        vocabularies.append(vocab.assign(field=name))
    numerical_stats = {}
    for name in table.numerical:
        values = pd.to_numeric(frame[name], errors="coerce").to_numpy(np.float64)
        missing = np.isnan(values)
        mean, std = fit_scaling(values[train & ~missing])
        scaled = standardise(values, mean, std)
        out[name] = scaled
        numerical_stats[name] = {
            "train_mean": mean,
            "train_std": std,
            "missing": int(missing.sum()),
            "min": float(scaled.min()),
            "max": float(scaled.max()),
        }
    for task in table.tasks:
        out[label_column(task)] = frame[label_column(task)].to_numpy().astype(np.int8)
        if true_prob_column(task) in frame:
            out[true_prob_column(task)] = frame[true_prob_column(task)].to_numpy(np.float32)
    out["split"] = pd.Categorical.from_codes(split, categories=list(SPLITS))
    processed = pd.DataFrame(out)

    meta = processed_meta(
        name=table.name, source=table.source, tasks=table.tasks, categorical=table.categorical,
        field_dims=field_dims, numerical=table.numerical, numerical_stats=numerical_stats,
        has_true_probs=all(true_prob_column(t) in processed for t in table.tasks),
        hashed_fields={f: b for f, b in config.hash_buckets.items() if f in table.categorical},
        params={**table.params, "processing": asdict(config)}, raw_files=table.raw_files,
        row_counts={**table.row_counts, "impressions": len(processed)},
    )  # fmt: skip
    vocabulary = (
        pd.concat(vocabularies, ignore_index=True)[["field", "value", "id", "train_count"]]
        if vocabularies
        else pd.DataFrame(columns=["field", "value", "id", "train_count"])
    )
    dataset = SessionDataset(processed, meta, vocabulary)
    from rmtl_env.data.stats import split_statistics

    dataset.meta["splits"] = split_statistics(dataset)
    return dataset


def _temporal_split(session_id: np.ndarray, ratios: tuple[float, float, float]) -> np.ndarray:
    """Split code (0 train, 1 val, 2 test) per row; sessions are already numbered by start time."""
    sizes = np.bincount(session_id)
    rows_before = np.concatenate([[0], np.cumsum(sizes)[:-1]]) / len(session_id)
    cuts = np.cumsum(ratios)[:2]
    session_split = np.searchsorted(cuts, rows_before, side="right").astype(np.int8)
    return session_split[session_id]
