"""``SessionRecVectorEnv``: N logged sessions replayed at once with NumPy, one call per step.

    envs = gym.make_vec("SessionRecEnv-v0", num_envs=4096, vectorization_mode="vector_entry_point",
                        dataset="retailrocket-synthetic")

The same MDP as ``SessionRecEnv`` (spaces, rewards, info keys), stepped for all N sub-envs with
array operations instead of N Python env objects. Sessions are drawn uniformly with
``self.np_random``. ``autoreset_mode`` is Gymnasium 1.x's (``gymnasium.vector.AutoresetMode``),
and each mode behaves as ``SyncVectorEnv`` does with N ``SessionRecEnv``:

- ``next_step`` (the default): the step after a sub-env returned ``terminated`` resets it; that
  step returns the new session's first observation, reward 0, ``terminated`` False, the reset's
  info, and ignores its action.
- ``same_step``: a sub-env that terminates is reset within the same step: the step returns the
  new session's first observation and the reset's info, with the finished episode's last
  observation and info in ``info["final_obs"]`` and ``info["final_info"]`` (and the masks
  ``info["_final_obs"]``, ``info["_final_info"]``).
- ``disabled``: no autoreset; reset the finished sub-envs with
  ``reset(options={"reset_mask": mask})``. Stepping a finished sub-env raises ``RuntimeError``.
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
    ``num_envs`` and ``autoreset_mode`` (an ``AutoresetMode``, its value or its name:
    ``next_step``, ``same_step``, ``disabled``). Observations, rewards and infos are batched along a first axis of
    size N; the info arrays are ``session_id``, ``session_length``, ``step`` [N] and
    ``task_rewards``, ``labels`` [N, K]. ``reward_space`` is the single env's (shape (K,) with
    ``reward_mode="vector"``, as MO-Gymnasium's vector wrappers read it).
    """

    metadata = {
        "render_modes": [],
        "autoreset_mode": AutoresetMode.NEXT_STEP,
        "autoreset_modes": tuple(AutoresetMode),
    }

    def __init__(
        self,
        num_envs: int,
        prob_clip: float = DEFAULT_PROB_CLIP,
        autoreset_mode: AutoresetMode | str = AutoresetMode.NEXT_STEP,
        **env_kwargs: Any,
    ) -> None:
        if int(num_envs) < 1:
            raise ValueError(f"num_envs must be >= 1, got {num_envs}")
        try:  # the enum, its value ("SameStep") or its name in any case ("same_step")
            mode = (
                AutoresetMode[autoreset_mode.upper()]
                if isinstance(autoreset_mode, str)
                and autoreset_mode.upper() in AutoresetMode.__members__
                else AutoresetMode(autoreset_mode)
            )
        except ValueError:
            raise ValueError(
                f"autoreset_mode must be one of {[m.value for m in AutoresetMode]}, got "
                f"{autoreset_mode!r}"
            ) from None
        self.metadata = {**self.metadata, "autoreset_mode": mode}
        single = SessionRecEnv(prob_clip=prob_clip, **env_kwargs)  # validates every argument
        self.single, self.render_mode = single, None
        self.num_envs = int(num_envs)
        self.single_observation_space = single.observation_space
        self.single_action_space = single.action_space
        self.observation_space = batch_space(single.observation_space, self.num_envs)
        self.action_space = batch_space(single.action_space, self.num_envs)
        self.reward_space = single.reward_space
        data = single.data
        self._starts = data.session_starts[:-1].astype(np.int64)
        self._lasts = data.session_starts[1:].astype(np.int64) - 1
        self._lengths = np.diff(data.session_starts).astype(np.int64)
        self._session_ids = data.session_id[self._starts]
        # Labels task-major, [K, rows]: every per-task operation of a step then runs along the N
        # sub-envs (a [N, K] layout runs numpy's inner loops K = 2 elements at a time, ~10x
        # slower for a broadcast mask).
        self._labels = np.ascontiguousarray(data.labels.T, dtype=np.float32)
        # Row-major copies: the split's arrays are column slices of one block, and gathering
        # 4096 rows of those is about 17x slower than of a C-contiguous array.
        self._categorical = np.ascontiguousarray(data.categorical)
        self._numerical = np.ascontiguousarray(data.numerical)
        self._weights = single.reward_weights
        self._unit_weights = bool((self._weights == 1.0).all())  # vector rewards: no multiply
        self._low, self._high = prob_clip, 1.0 - prob_clip
        # Per sub-env state: its session (an index into the split's sessions) and current row.
        self._session = np.zeros(self.num_envs, dtype=np.int64)
        self._row = np.full(self.num_envs, -1, dtype=np.int64)
        # Its session's first and last rows, kept rather than gathered at every step.
        self._first = np.zeros(self.num_envs, dtype=np.int64)
        self._last = np.zeros(self.num_envs, dtype=np.int64)
        self._needs_reset = np.zeros(self.num_envs, dtype=bool)
        self._restarting = False  # self._needs_reset.any(), kept

    @property
    def autoreset_mode(self) -> AutoresetMode:
        return self.metadata["autoreset_mode"]

    def _draw(self, envs: np.ndarray) -> np.ndarray:
        """The sessions (indices into the split's sessions) that sub-envs ``envs`` start next."""
        return self.np_random.integers(len(self._starts), size=len(envs))

    def _start_sessions(self, envs: np.ndarray) -> None:
        """Draw new sessions for the sub-envs ``envs`` and put them at their first row."""
        session = self._draw(envs)
        self._session[envs] = session
        first = np.take(self._starts, session)
        self._row[envs] = first
        self._first[envs] = first
        self._last[envs] = np.take(self._lasts, session)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        options = dict(options or {})
        mask = options.pop("reset_mask", None)
        if options:
            raise ValueError(
                f"reset options: unknown key(s) {sorted(options)}; the vector env takes only "
                "'reset_mask'"
            )
        if mask is None:
            envs = np.arange(self.num_envs)
        else:
            mask = np.asarray(mask)
            if mask.shape != (self.num_envs,) or mask.dtype != np.bool_ or not mask.any():
                raise ValueError(
                    f"options['reset_mask'] must be a bool array of shape ({self.num_envs},) with "
                    f"at least one True, got {mask.dtype} {mask.shape}"
                )
            envs = np.flatnonzero(mask)
        self._start_sessions(envs)
        self._needs_reset[envs] = False
        self._restarting = bool(self._needs_reset.any())
        k = len(self._weights)
        zeros = np.zeros((self.num_envs, k))
        info = self._info(self._row - self._first, zeros, np.zeros((self.num_envs, k), np.float32))
        if mask is not None:  # as SyncVectorEnv: the info of the sub-envs that were reset
            info = _masked(info, mask)
        return self._observation(self._row), info

    def step(self, actions):
        if self._row[0] < 0:  # every sub-env starts at the first reset()
            raise RuntimeError("call reset() before step()")
        probs = np.asarray(actions)
        if probs.dtype.kind != "f":
            probs = probs.astype(np.float64)
        if probs.shape != (self.num_envs, len(self._weights)):
            raise ValueError(
                f"actions must have shape ({self.num_envs}, {len(self._weights)}) (one "
                f"probability per sub-env and task), got {np.shape(actions)}"
            )
        mode = self.autoreset_mode
        restart = self._needs_reset  # next-step autoreset: these sub-envs start anew now
        restarting = self._restarting
        if restarting and mode == AutoresetMode.DISABLED:
            raise RuntimeError(
                f"sub-env(s) {np.flatnonzero(restart).tolist()[:8]} have terminated and "
                "autoreset_mode is 'disabled': call reset(options={'reset_mask': ...}) first"
            )
        # Two reductions instead of two [N, K] comparisons; NaN fails both.
        if not (probs.min() >= -ACTION_TOLERANCE and probs.max() <= 1 + ACTION_TOLERANCE):
            inside = (probs >= -ACTION_TOLERANCE) & (probs <= 1 + ACTION_TOLERANCE)
            if not (inside.all(axis=1) | restart).all():  # a restarting sub-env's is ignored
                raise ValueError("actions must be finite probabilities in [0, 1]")
        row = self._row
        labels = np.take(self._labels, row, axis=1)  # [K, N], also the info's copy
        # Clipped in float64, as SessionRecEnv does (a float32 clip would move 1 - 1e-7 to
        # 1 - 1.19e-7). fmax/fmin clip as np.clip does, but turn NaN (a restarting sub-env's
        # ignored action) into a number.
        a = np.array(probs.T, dtype=np.float64, order="C")  # [K, N]
        np.fmin(np.fmax(a, self._low, out=a), self._high, out=a)
        terminated = row >= self._last
        step = row - self._first
        if restarting:  # next-step autoreset steps score nothing: label 0 and action 0 give
            keep = ~restart  # log(1 - 0) = 0 exactly. Products: masked copies are ~8x slower.
            labels *= keep
            a *= keep
            terminated &= keep
            step *= keep  # its info is the new session's (step 0), as after reset()
        # log(a) where the label is 1, log(1 - a) where it is 0: one log per entry, in place.
        task_rewards = np.subtract(1.0, a)
        np.copyto(task_rewards, a, where=labels > 0)
        np.log(task_rewards, out=task_rewards)
        if self.single.reward_mode == "vector":
            reward = task_rewards.T if self._unit_weights else task_rewards.T * self._weights
        else:
            reward = self._weights @ task_rewards
        task_rewards, labels = task_rewards.T, labels.T  # [N, K] views for the info
        # Advance; a terminated sub-env keeps its last row (the env returns that observation).
        self._row = row + ~terminated
        if restarting:
            self._start_sessions(np.flatnonzero(restart))
        info = self._info(step, task_rewards, labels)
        observation = self._observation(self._row)
        if mode == AutoresetMode.SAME_STEP and terminated.any():
            ended = np.flatnonzero(terminated)
            final_obs = np.full(self.num_envs, None, dtype=object)
            for i in ended:
                final_obs[i] = _row_of(observation, i)
            final_info = _masked(info, terminated)
            self._start_sessions(ended)  # reset in this step: the new sessions' first rows
            observation = self._observation(self._row)
            step = step.copy()
            step[ended] = 0
            info = self._info(step, task_rewards.copy(), labels.copy())
            info["task_rewards"][ended] = 0.0
            info["labels"][ended] = 0.0
            info["final_obs"], info["_final_obs"] = final_obs, terminated.copy()
            info["final_info"], info["_final_info"] = final_info, terminated.copy()
        elif mode != AutoresetMode.SAME_STEP:
            self._needs_reset = terminated.copy()  # the caller owns the returned array
            self._restarting = bool(self._needs_reset.any())
        truncated = np.zeros(self.num_envs, dtype=bool)
        return observation, reward, terminated, truncated, info

    def _observation(self, rows: np.ndarray) -> dict[str, np.ndarray] | np.ndarray:
        # np.take gathers rows several times faster than fancy indexing
        categorical = np.take(self._categorical, rows, axis=0)
        numerical = np.take(self._numerical, rows, axis=0)
        if self.single.observation_mode == "flat":
            return np.concatenate([categorical, numerical], axis=1, dtype=np.float32)
        return {"categorical": categorical, "numerical": numerical}

    def _info(self, step: np.ndarray, task_rewards: np.ndarray, labels: np.ndarray) -> dict:
        return {
            "session_id": np.take(self._session_ids, self._session),
            "session_length": np.take(self._lengths, self._session),
            "step": step,
            "task_rewards": task_rewards,
            "labels": labels,
        }


def _row_of(observation: dict[str, np.ndarray] | np.ndarray, i: int):
    """Sub-env ``i``'s observation out of a batched one."""
    if isinstance(observation, dict):
        return {key: value[i].copy() for key, value in observation.items()}
    return observation[i].copy()


def _masked(info: dict, mask: np.ndarray) -> dict:
    """``info`` with Gymnasium's ``_key`` masks: the entries of the sub-envs in ``mask``."""
    out = {}
    for key, value in info.items():
        out[key] = value
        out[f"_{key}"] = mask.copy()
    return out
