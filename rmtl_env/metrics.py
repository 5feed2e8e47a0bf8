"""The paper's evaluation metrics per task: AUC, Logloss and session-averaged Logloss.

s-Logloss is the mean over sessions of each session's mean binary cross-entropy, so long sessions
do not dominate it (RMTL paper, section 5; official ``train/run.py``).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from rmtl_env.data.dataset import PROB_EPS, SplitData


def binary_cross_entropy(
    labels: np.ndarray, probs: np.ndarray, eps: float = PROB_EPS
) -> np.ndarray:
    """Per-row BCE with probabilities clipped to ``[eps, 1 - eps]``."""
    p = np.clip(np.asarray(probs, dtype=np.float64), eps, 1.0 - eps)
    y = np.asarray(labels, dtype=np.float64)
    return -(y * np.log(p) + (1.0 - y) * np.log1p(-p))


def auc(labels: np.ndarray, probs: np.ndarray) -> float:
    """ROC AUC (scikit-learn); NaN, with a warning, when only one class is present."""
    labels = np.asarray(labels)
    if labels.min(initial=0) == labels.max(initial=0):
        warnings.warn(
            f"AUC is undefined (NaN): all {len(labels)} labels are {labels.max(initial=0):g}",
            RuntimeWarning,
            stacklevel=2,
        )
        return float("nan")
    return float(roc_auc_score(labels, probs))


def logloss(labels: np.ndarray, probs: np.ndarray) -> float:
    """Mean BCE over rows."""
    return float(binary_cross_entropy(labels, probs).mean())


def session_logloss(labels: np.ndarray, probs: np.ndarray, session_id: np.ndarray) -> float:
    """Mean over sessions of each session's mean BCE."""
    losses = pd.Series(binary_cross_entropy(labels, probs))
    return float(losses.groupby(np.asarray(session_id), sort=False).mean().mean())


def task_metrics(
    labels: np.ndarray, probs: np.ndarray, session_id: np.ndarray, tasks: Sequence[str]
) -> dict[str, dict[str, float]]:
    """``{task: {"auc", "logloss", "s_logloss"}}`` for ``[n, K]`` labels and probabilities."""
    labels, probs = np.asarray(labels), np.asarray(probs)
    if labels.shape != probs.shape or labels.ndim != 2 or labels.shape[1] != len(tasks):
        raise ValueError(
            f"labels and probs must both be [n, {len(tasks)}], got {labels.shape} and {probs.shape}"
        )
    return {
        task: {
            "auc": auc(labels[:, k], probs[:, k]),
            "logloss": logloss(labels[:, k], probs[:, k]),
            "s_logloss": session_logloss(labels[:, k], probs[:, k], session_id),
        }
        for k, task in enumerate(tasks)
    }


def oracle_metrics(data: SplitData) -> dict[str, dict[str, float]] | None:
    """The metrics of the dataset's true probabilities (synthetic twins), or ``None`` without them.

    This is the ceiling a model can reach on average: the oracle row of every results table.
    """
    if data.true_probs is None:
        return None
    return task_metrics(data.labels, data.true_probs, data.session_id, data.tasks)
