"""The processing recipe of every processed dataset, and its settings (:class:`ProcessingConfig`).

Every source (RetailRocket, KuaiRand, own logs, synthetic twins) is prepared by the DuckDB engine
(``rmtl_env.data.engine``) with one fixed recipe, so every source gets the same session order,
split and id mapping:

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

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from rmtl_env.data.dataset import (
    FORMAT_VERSION,
)


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
