"""The reward of the session MDP: per-task negative binary cross-entropy (RMTL paper, eq. 1)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from rmtl_env.metrics import PROB_EPS, binary_cross_entropy

DEFAULT_PROB_CLIP = PROB_EPS


def task_rewards(
    labels: np.ndarray, actions: np.ndarray, prob_clip: float = DEFAULT_PROB_CLIP
) -> np.ndarray:
    """``y log a + (1 - y) log(1 - a)`` per task with ``a`` clipped to ``[prob_clip, 1 - prob_clip]``:
    minus the evaluation's binary cross-entropy, so rewards and Logloss can never disagree.

    Works on one step (``[K]``) or a batch (``[n, K]``); returns float64 of the same shape.
    """
    return -binary_cross_entropy(labels, actions, prob_clip)


def reward_weight_vector(reward_weights, tasks: Sequence) -> np.ndarray:
    """The K float64 weights of the scalar reward (None: all 1), one per task of ``tasks``."""
    k = len(tasks)
    weights = np.ones(k) if reward_weights is None else np.asarray(reward_weights, dtype=np.float64)
    if weights.shape != (k,) or not np.isfinite(weights).all():
        raise ValueError(
            f"reward_weights must be {k} finite numbers (one per task {list(tasks)}), got "
            f"{reward_weights}"
        )
    return weights
