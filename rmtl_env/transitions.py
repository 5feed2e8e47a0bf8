"""Every transition of a split in one vectorised pass (the replay buffer of RMTL's critics).

Because the session MDP's transitions are deterministic, the whole replay of a split is known in
advance: row ``i``'s next state is row ``i + 1`` unless ``i`` ends its session (then it is row
``i`` itself, as ``SessionRecEnv`` returns). Only the actions depend on a policy, and a policy
can score all rows in large batches instead of one call per step.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from rmtl_env.data import SplitData
from rmtl_env.rewards import DEFAULT_PROB_CLIP, task_rewards

Policy = Callable[[dict[str, np.ndarray]], np.ndarray]


@dataclass(frozen=True)
class Transitions:
    """``n`` transitions as arrays (row ``i`` of every field belongs to transition ``i``).

    Attributes:
        categorical, numerical: observation parts ``[n, F]`` int64 and ``[n, N]`` float32.
        action: ``[n, K]`` float32, the action the reward was computed at.
        rewards: ``[n, K]`` float32 per-task rewards (unweighted).
        next_categorical, next_numerical: next observation parts.
        terminated: ``[n]`` bool, True at each session's last impression.
        labels: ``[n, K]`` float32.
        session_id: ``[n]`` int64.
        next_index: ``[n]`` int64 row of the next observation (``i + 1``, or ``i`` at the end).
    """

    categorical: np.ndarray
    numerical: np.ndarray
    action: np.ndarray
    rewards: np.ndarray
    next_categorical: np.ndarray
    next_numerical: np.ndarray
    terminated: np.ndarray
    labels: np.ndarray
    session_id: np.ndarray
    next_index: np.ndarray

    def __len__(self) -> int:
        return len(self.session_id)


def next_rows(data: SplitData) -> tuple[np.ndarray, np.ndarray]:
    """``(next_index, terminated)`` of every row of a split."""
    n = len(data)
    terminated = np.zeros(n, dtype=bool)
    terminated[data.session_starts[1:] - 1] = True
    next_index = np.arange(n, dtype=np.int64) + ~terminated
    return next_index, terminated


def policy_actions(data: SplitData, policy: Policy, batch_size: int = 65_536) -> np.ndarray:
    """Call ``policy`` on observation batches of the split; returns ``[n, K]`` float32."""
    k = len(data.tasks)
    out = np.empty((len(data), k), dtype=np.float32)
    for start in range(0, len(data), batch_size):
        stop = min(start + batch_size, len(data))
        batch = {
            "categorical": data.categorical[start:stop],
            "numerical": data.numerical[start:stop],
        }
        actions = np.asarray(policy(batch), dtype=np.float32)
        if actions.shape != (stop - start, k):
            raise ValueError(
                f"policy must return [{stop - start}, {k}] probabilities, got {actions.shape}"
            )
        out[start:stop] = actions
    return out


def build_transitions(
    data: SplitData,
    policy: Policy | None = None,
    actions: np.ndarray | None = None,
    prob_clip: float = DEFAULT_PROB_CLIP,
    batch_size: int = 65_536,
) -> Transitions:
    """All transitions of ``data`` with actions from ``policy`` (batched) or given ``actions``.

    Equals stepping ``SessionRecEnv`` through every session of the split with the same actions.
    """
    if (policy is None) == (actions is None):
        raise ValueError("pass exactly one of policy= or actions=")
    if actions is None:
        actions = policy_actions(data, policy, batch_size)
    actions = np.asarray(actions, dtype=np.float32)
    k = len(data.tasks)
    if actions.shape != (len(data), k):
        raise ValueError(f"actions must be [{len(data)}, {k}], got {actions.shape}")
    if not np.isfinite(actions).all() or actions.min(initial=0) < 0 or actions.max(initial=0) > 1:
        raise ValueError("actions must be finite probabilities in [0, 1]")
    next_index, terminated = next_rows(data)
    return Transitions(
        categorical=data.categorical,
        numerical=data.numerical,
        action=actions,
        rewards=task_rewards(data.labels, actions, prob_clip).astype(np.float32),
        next_categorical=data.categorical[next_index],
        next_numerical=data.numerical[next_index],
        terminated=terminated,
        labels=data.labels,
        session_id=data.session_id,
        next_index=next_index,
    )
