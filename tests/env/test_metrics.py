"""AUC, Logloss and s-Logloss against hand-computed values and scikit-learn."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import log_loss, roc_auc_score

from rmtl_env.metrics import auc, logloss, oracle_metrics, session_logloss, task_metrics


def test_hand_computed_example() -> None:
    labels = np.array([1, 0, 1, 0])
    probs = np.array([0.8, 0.4, 0.3, 0.2])
    sessions = np.array([7, 7, 7, 9])
    # Positive/negative pairs: (0.8>0.4) (0.8>0.2) (0.3<0.4) (0.3>0.2) -> 3 of 4 ordered.
    assert auc(labels, probs) == pytest.approx(0.75)
    bce = [-math.log(0.8), -math.log(0.6), -math.log(0.3), -math.log(0.8)]
    assert logloss(labels, probs) == pytest.approx(sum(bce) / 4)
    # Session 7 has three rows, session 9 one: each session counts once.
    assert session_logloss(labels, probs, sessions) == pytest.approx(
        (sum(bce[:3]) / 3 + bce[3]) / 2
    )


def test_agrees_with_scikit_learn_on_random_data() -> None:
    rng = np.random.default_rng(0)
    labels = (rng.random((500, 3)) < 0.3).astype(np.float32)
    probs = rng.random((500, 3)).astype(np.float32)
    sessions = rng.integers(0, 60, 500)
    metrics = task_metrics(labels, probs, sessions, ["a", "b", "c"])
    for k, task in enumerate("abc"):
        assert metrics[task]["auc"] == pytest.approx(roc_auc_score(labels[:, k], probs[:, k]))
        assert metrics[task]["logloss"] == pytest.approx(
            log_loss(labels[:, k], probs[:, k]), rel=1e-6
        )


def test_single_class_auc_is_nan_and_shapes_are_checked() -> None:
    with pytest.warns(RuntimeWarning, match="AUC is undefined"):
        assert math.isnan(auc(np.zeros(5), np.linspace(0, 1, 5)))
    with pytest.raises(ValueError, match=r"must both be \[n, 2\]"):
        task_metrics(np.zeros((4, 2)), np.zeros((4, 3)), np.arange(4), ["a", "b"])


def test_oracle_metrics_score_the_true_probabilities(rr_small) -> None:
    test = rr_small.split("test")
    oracle = oracle_metrics(test)
    expected = roc_auc_score(test.labels[:, 0], test.true_probs[:, 0])
    assert oracle["ctr"]["auc"] == pytest.approx(expected)
    assert 0.7 < oracle["ctr"]["auc"] < 0.9
