"""The reward of the session MDP: per-task negative binary cross-entropy (RMTL paper, eq. 1)."""

from __future__ import annotations

import numpy as np

DEFAULT_PROB_CLIP = 1e-7


def task_rewards(
    labels: np.ndarray, actions: np.ndarray, prob_clip: float = DEFAULT_PROB_CLIP
) -> np.ndarray:
    """``y log a + (1 - y) log(1 - a)`` per task with ``a`` clipped to ``[prob_clip, 1 - prob_clip]``.

    Works on one step (``[K]``) or a batch (``[n, K]``); returns float64 of the same shape.
    """
    a = np.clip(np.asarray(actions, dtype=np.float64), prob_clip, 1.0 - prob_clip)
    y = np.asarray(labels, dtype=np.float64)
    return y * np.log(a) + (1.0 - y) * np.log1p(-a)
