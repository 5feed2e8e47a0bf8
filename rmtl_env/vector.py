"""``SessionRecVectorEnv``: N logged sessions replayed at once with NumPy, one call per step.

    envs = gym.make_vec("SessionRecEnv-v0", num_envs=4096, vectorization_mode="vector_entry_point",
                        dataset="retailrocket-synthetic")

The same MDP as ``SessionRecEnv`` (spaces, rewards, info keys), stepped for all N sub-envs with
array operations instead of N Python env objects. Autoreset follows Gymnasium 1.x's default
(``AutoresetMode.NEXT_STEP``): the step after a sub-env returned ``terminated`` resets it: that
step returns the new session's first observation, reward 0, ``terminated`` False, and ignores its
action. Sessions are drawn uniformly with ``self.np_random``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from rmtl_env.env import ACTION_TOLERANCE, SessionRecEnv
from rmtl_env.rewards import DEFAULT_PROB_CLIP


class SessionRecVectorEnv(VectorEnv):
    """N sub-environments of ``SessionRecEnv`` advanced together (see the module docstring).

    Arguments are ``SessionRecEnv``'s (but ``session_order``, always random here), plus
    ``num_envs``. Observations, rewards and infos are batched along a first axis of size N; the
    info arrays are ``session_id``, ``session_length``, ``step`` [N] and ``task_rewards``,
    ``labels`` [N, K].
    """

    metadata = {"render_modes": [], "autoreset_mode": AutoresetMode.NEXT_STEP}

    def __init__(
        self, num_envs: int, prob_clip: float = DEFAULT_PROB_CLIP, **env_kwargs: Any
    ) -> None:
        if int(num_envs) < 1:
            raise ValueError(f"num_envs must be >= 1, got {num_envs}")
        single = SessionRecEnv(prob_clip=prob_clip, **env_kwargs)  # validates every argument
        self.single, self.render_mode = single, None
        self.num_envs = int(num_envs)
        self.single_observation_space = single.observation_space
        self.single_action_space = single.action_space
        self.observation_space = batch_space(single.observation_space, self.num_envs)
        self.action_space = batch_space(single.action_space, self.num_envs)
        data = single.data
        self._starts = data.session_starts[:-1].astype(np.int64)
        self._ends = data.session_starts[1:].astype(np.int64)
        self._session_ids = data.session_id[self._starts]
        self._labels = np.ascontiguousarray(data.labels, dtype=np.float64)
        # Row-major copies: the split's arrays are column slices of one block, and gathering
        # 4096 rows of those is about 17x slower than of a C-contiguous array.
        self._categorical = np.ascontiguousarray(data.categorical)
        self._numerical = np.ascontiguousarray(data.numerical)
        self._weights = single.reward_weights
        self._low, self._high = prob_clip, 1.0 - prob_clip
        self._row = np.full(self.num_envs, -1, dtype=np.int64)
        self._session = np.zeros(self.num_envs, dtype=np.int64)
        self._start = np.zeros(self.num_envs, dtype=np.int64)
        self._end = np.zeros(self.num_envs, dtype=np.int64)
        self._needs_reset = np.zeros(self.num_envs, dtype=bool)

    def _draw(self, count: int) -> np.ndarray:
        return self.np_random.integers(len(self._starts), size=count)

    def _start_sessions(self, which: np.ndarray | slice) -> None:
        """Draw new sessions for the sub-envs ``which`` (indices, or a slice) and put them at
        their first row."""
        count = self.num_envs if isinstance(which, slice) else len(which)
        session = self._draw(count)
        start = self._starts[session]
        self._session[which] = session
        self._start[which] = start
        self._end[which] = self._ends[session]
        self._row[which] = start

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        if options:
            raise ValueError(f"reset options are not supported by the vector env, got {options}")
        self._start_sessions(slice(None))
        self._needs_reset[:] = False
        zeros = np.zeros((self.num_envs, len(self._weights)))
        return self._observation(self._row), self._info(self._row - self._start, zeros, zeros)

    def step(self, actions):
        if (self._row < 0).any():
            raise RuntimeError("call reset() before step()")
        probs = np.asarray(actions, dtype=np.float64).reshape(self.num_envs, -1)
        if probs.shape[1] != len(self._weights):
            raise ValueError(
                f"actions must be [{self.num_envs}, {len(self._weights)}], got {np.shape(actions)}"
            )
        restart = self._needs_reset
        restarting = np.flatnonzero(restart)  # autoreset steps: their actions are ignored
        inside = (probs >= -ACTION_TOLERANCE) & (probs <= 1 + ACTION_TOLERANCE)  # NaN: False
        if not inside.all() and not (inside.all(axis=1) | restart).all():
            raise ValueError("actions must be finite probabilities in [0, 1]")
        row = self._row
        labels = np.take(self._labels, row, axis=0)
        a = np.clip(probs, self._low, self._high)
        # log(a) where the label is 1, log(1 - a) where it is 0: one log per entry.
        task_rewards = np.log(np.where(labels > 0, a, 1.0 - a))
        if len(restarting):  # autoreset steps score nothing
            task_rewards[restarting] = 0.0
            labels[restarting] = 0.0
        weighted = task_rewards * self._weights
        reward = weighted if self.single.reward_mode == "vector" else weighted.sum(1)
        terminated = row + 1 >= self._end
        terminated[restarting] = False
        step = row - self._start
        # Advance; a sub-env that ended on the previous step starts a new session (autoreset).
        self._row = row + ~terminated
        if len(restarting):
            self._start_sessions(restarting)
            step[restarting] = 0  # its info is the new session's, as after reset()
        info = self._info(step, task_rewards, labels)
        self._needs_reset = terminated
        truncated = np.zeros(self.num_envs, dtype=bool)
        return self._observation(self._row), reward, terminated, truncated, info

    def _observation(self, rows: np.ndarray) -> dict[str, np.ndarray] | np.ndarray:
        # np.take gathers rows several times faster than fancy indexing
        categorical = np.take(self._categorical, rows, axis=0)
        numerical = np.take(self._numerical, rows, axis=0)
        if self.single.observation_mode == "flat":
            return np.concatenate([categorical, numerical], axis=1, dtype=np.float32)
        return {"categorical": categorical, "numerical": numerical}

    def _info(self, step: np.ndarray, task_rewards: np.ndarray, labels: np.ndarray) -> dict:
        return {
            "session_id": self._session_ids[self._session],
            "session_length": self._end - self._start,
            "step": step,
            "task_rewards": task_rewards,
            "labels": labels.astype(np.float32),
        }
