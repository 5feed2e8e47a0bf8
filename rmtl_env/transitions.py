"""Every transition of a split in one vectorised pass (the replay buffer of RMTL's critics).

Because the session MDP's transitions are deterministic, the whole replay of a split is known in
advance: row ``i``'s next state is row ``i + 1`` unless ``i`` ends its session (then it is row
``i`` itself, as ``SessionRecEnv`` returns). Only the actions depend on a policy, and a policy
can score all rows in large batches instead of one call per step.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from gymnasium import spaces

from rmtl_env.data import SplitData
from rmtl_env.rewards import DEFAULT_PROB_CLIP, task_rewards

ACTION_TOLERANCE = 1e-6  # how far outside [0, 1] an action may stray (rounding) before refusal
Observation = dict[str, np.ndarray] | np.ndarray
Policy = Callable[[Observation], np.ndarray]


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


def observations(data: SplitData, mode: str = "dict", rows: slice = slice(None)) -> Observation:
    """The env's observations of ``data``'s ``rows``, batched: a Dict of ``categorical`` and
    ``numerical`` arrays, or the flat float32 ``[n, F + N]`` array."""
    categorical, numerical = data.categorical[rows], data.numerical[rows]
    if mode == "flat":
        return np.concatenate([categorical, numerical], axis=1, dtype=np.float32)
    return {"categorical": np.ascontiguousarray(categorical),
            "numerical": np.ascontiguousarray(numerical)}  # fmt: skip


def as_batch_policy(policy: Any, observation_mode: str | None = None) -> tuple[Policy, str]:
    """``(callable on batched observations -> [n, K] actions, its observation mode)`` for a
    callable, a stable-baselines3 model, a d3rlpy algorithm, or anything with ``as_policy()``
    (``agents.models.MultiTaskModel``: its probabilities, in eval mode)."""
    if hasattr(policy, "as_policy"):
        return policy.as_policy(), "dict"
    module = type(policy).__module__
    if module.startswith("stable_baselines3") or module.startswith("sb3_contrib"):
        mode = "dict" if isinstance(policy.observation_space, spaces.Dict) else "flat"
        return (lambda obs: policy.predict(obs, deterministic=True)[0]), mode
    if module.startswith("d3rlpy"):
        return policy.predict, "flat"
    if callable(policy):
        return policy, observation_mode or "dict"
    raise TypeError(
        f"policy must be a callable on batched observations, a stable-baselines3 model, a d3rlpy "
        f"algorithm or have as_policy(); got {type(policy).__name__}"
    )


def policy_actions(
    data: SplitData,
    policy: Any,
    batch_size: int = 16384,
    observation_mode: str | None = None,
) -> np.ndarray:
    """``[n, K]`` float64 actions of ``policy`` on every row of ``data``, checked: the right
    shape, finite, in [0, 1] (values within 1e-6 of it, as the env, are clipped)."""
    call, mode = as_batch_policy(policy, observation_mode)
    k, parts = len(data.tasks), []
    for start in range(0, len(data), batch_size):
        rows = slice(start, start + batch_size)
        batch = observations(data, mode, rows)
        got = np.asarray(_numpy(call(batch)), dtype=np.float64)
        expected = (min(batch_size, len(data) - start), k)
        if got.shape != expected:
            raise ValueError(
                f"the policy returned actions of shape {got.shape} for {expected[0]} "
                f"observations; expected {expected}: one probability per task {list(data.tasks)}"
            )
        inside = (got >= -ACTION_TOLERANCE) & (got <= 1 + ACTION_TOLERANCE)  # NaN: False
        if not inside.all():
            bad = got[~inside.all(axis=1)][0]
            raise ValueError(
                f"the policy's actions must be finite probabilities in [0, 1], got {bad} (a "
                "policy that emits logits needs a sigmoid; an SB3 model rescales to the env's "
                "action space itself)"
            )
        parts.append(np.clip(got, 0.0, 1.0))
    return np.concatenate(parts) if parts else np.zeros((0, k))


def _numpy(actions: Any) -> Any:
    """A torch tensor's values as a NumPy array (the env side imports no torch)."""
    if hasattr(actions, "detach"):
        return actions.detach().float().cpu().numpy()
    return actions


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
