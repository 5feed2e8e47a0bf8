"""``SessionRecEnv``: logged recommendation sessions replayed as episodes."""

from __future__ import annotations

import math
import weakref
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from rmtl_env.data import SessionDataset, SplitData, load_dataset
from rmtl_env.rewards import DEFAULT_PROB_CLIP, reward_weight_vector
from rmtl_env.transitions import ACTION_TOLERANCE

OBSERVATION_MODES = ("dict", "flat")
REWARD_MODES = ("scalar", "vector")


_LOADED: weakref.WeakValueDictionary[str, SessionDataset] = weakref.WeakValueDictionary()
"""Datasets loaded by name in this process, while an env still holds them: every env made with
the same name and options (N ``gym.make`` calls, a ``SyncVectorEnv``) shares one read-only copy."""


def resolve_dataset(
    dataset: str | SessionDataset, data_dir: str | None = None, **params
) -> SessionDataset:
    """A loaded dataset as is, or a catalog name / path loaded through the cache (``params``:
    ``load_dataset``'s, e.g. ``scale``, ``seed``, ``session_key``); the same name and options
    give the same object while any env holds it (``refresh=True`` loads afresh)."""
    if isinstance(dataset, SessionDataset):
        if params or data_dir is not None:
            raise TypeError(
                f"dataset parameters {sorted(params)} need a dataset name, not a loaded dataset"
            )
        return dataset
    key = repr((str(dataset), data_dir, sorted(params.items())))
    loaded = None if params.get("refresh") else _LOADED.get(key)
    if loaded is None:
        loaded = load_dataset(dataset, data_dir=data_dir, **params)
        _LOADED[key] = loaded
    return loaded


def _shared(data: SplitData, name: str, build):
    """A per-split value built once and kept on the split (which the dataset shares between
    envs), so that one more env costs no copy of it."""
    cache = data.__dict__.setdefault("_env_cache", {})
    if name not in cache:
        cache[name] = build()
    return cache[name]


def flat_observation_space(dataset: SessionDataset) -> spaces.Box:
    """``Box(float32, (F + N,))``: the F categorical ids (as floats, exact below 2**24) then the
    N numerical features, in ``meta.json`` field order; what ``FlattenObservation`` makes of the
    Dict space, cast to float32."""
    parts = observation_space(dataset)
    low = np.concatenate([parts["categorical"].low, parts["numerical"].low]).astype(np.float32)
    high = np.concatenate([parts["categorical"].high, parts["numerical"].high]).astype(np.float32)
    return spaces.Box(low=low, high=high, dtype=np.float32)


class SessionObservationSpace(spaces.Dict):
    """The env's Dict observation space. A client that reads ``.n`` (the size of a Discrete
    space) from whatever space it is given, as Tianshou does with a Dict, gets an error that
    names flat mode instead of ``'Dict' object has no attribute 'n'``."""

    def __getattr__(self, name: str):
        if name == "n":
            raise AttributeError(
                "SessionRecEnv's observation space is a Dict (categorical ids and numerical "
                "features) and has no 'n': a client that takes only Box or Discrete "
                "observations needs the flat mode, gym.make('rmtl_env:SessionRecEnvFlat-v0') "
                "or observation_mode='flat'"
            )
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")


def observation_space(dataset: SessionDataset) -> spaces.Dict:
    """``Dict(categorical=Box(0, vocab - 1, (F,), int64), numerical=Box(low, high, (N,), float32))``.

    Numerical bounds are the processed data's minimum and maximum over all splits (finite), so the
    box holds every observation the replay can produce.
    """
    dims = np.asarray(dataset.field_dims, dtype=np.int64)
    stats = dataset.meta.get("numerical_stats", {})
    low = [stats.get(f, {}).get("min", -np.inf) for f in dataset.numerical_fields]
    high = [stats.get(f, {}).get("max", np.inf) for f in dataset.numerical_fields]
    return SessionObservationSpace(
        {
            "categorical": spaces.Box(low=np.zeros_like(dims), high=dims - 1, dtype=np.int64),
            "numerical": spaces.Box(
                low=np.asarray(low, dtype=np.float32),
                high=np.asarray(high, dtype=np.float32),
                shape=(len(low),),
                dtype=np.float32,
            ),  # fmt: skip
        }
    )


class SessionRecEnv(gym.Env):
    """Replay of logged sessions for session-wise multi-task recommendation (RMTL's MDP).

    ## Description
    Each logged session of a processed dataset is one episode. At step ``t`` the agent sees the
    user-item features of the session's ``t``-th impression and predicts, for each of the K tasks
    (CTR and CTCVR by default), the probability that the user gives that feedback. The logged
    labels score the prediction. Transitions are deterministic: the next state is the session's
    next impression whatever the action (Liu et al., "Multi-Task Recommendations with
    Reinforcement Learning", WWW 2023, section 3).

    ```python
    import gymnasium as gym
    import rmtl_env  # registers SessionRecEnv-v0

    env = gym.make("SessionRecEnv-v0", dataset="retailrocket-synthetic", scale="tiny")
    obs, info = env.reset(seed=0)
    obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
    ```

    ## Observation Space
    A ``Dict`` of integer ids and floats (ids are never one-hot encoded; embed them):

    | key           | space                                        | content                            |
    |---------------|----------------------------------------------|------------------------------------|
    | `categorical` | `Box(0, vocab_f - 1, (F,), int64)`           | id of each categorical field (0 = unknown) |
    | `numerical`   | `Box(min_n, max_n, (N,), float32)`           | standardised numerical features    |

    F, N, the field names and vocabulary sizes come from the dataset's ``meta.json``
    (``env.unwrapped.dataset``). The numerical bounds are the data's finite minimum and maximum.
    ``observation_mode="flat"`` gives one ``Box(float32, (F + N,))`` instead: the F ids (exact as
    floats below 2**24), then the N numerical features, in ``meta.json`` field order; it equals
    ``FlattenObservation`` of the Dict, cast to float32, for clients that take only a Box.

    ## Action Space
    ``Box(0, 1, (K,), float32)``: one probability per task, in ``env.unwrapped.tasks`` order.
    An action with the wrong shape, a NaN, or a value outside ``[0, 1]`` (beyond 1e-6) raises
    ``ValueError`` instead of being clipped silently, because a silent clip would hide a policy
    that emits logits. stable-baselines3's checker warns that this box is not symmetric
    (``[-1, 1]``); its algorithms rescale their ``[-1, 1]`` outputs to the box themselves, so the
    warning is informational.

    ## Rewards
    ``sum_k w_k * (y_k log a_k + (1 - y_k) log(1 - a_k))``, the weighted negative binary
    cross-entropy, with ``a_k`` clipped to ``[prob_clip, 1 - prob_clip]``. Every reward is <= 0.
    ``info["task_rewards"]`` holds the K unweighted per-task rewards.
    ``reward_mode="vector"`` returns the K weighted per-task rewards as an ndarray instead (their
    sum is the scalar reward), with ``env.unwrapped.reward_space`` of shape (K,), as MO-Gymnasium
    expects; in the scalar mode ``reward_space`` has shape (1,) (TorchRL reads it).

    ## Starting State
    ``session_order="random"``: a session drawn uniformly with ``self.np_random``.
    ``session_order="sequential"``: each session of the split once per pass, in start-time order
    (for evaluation). ``reset(options={"session_id": s})`` replays session ``s``.

    ## Episode End
    ``terminated`` is True after the session's last impression; the observation returned with it is
    that last impression again (the official code's convention; TD targets mask it with
    ``1 - terminated``). Episodes are never truncated. Stepping a finished episode raises
    ``RuntimeError``.

    ## Info
    The same keys at ``reset`` and at every step (recorders such as Minari need that):
    ``session_id``, ``session_length``, ``step`` (index of the impression just scored; 0 at
    reset), ``task_rewards`` (K,) and ``labels`` (K,), both zeros at reset, where nothing has
    been scored yet.

    ## Rendering
    ``render_mode="ansi"``: ``render()`` returns the current impression as a line of text. Any
    other mode (SB3's ``make_vec_env`` asks for ``"rgb_array"``) gets a warning and ``render()``
    returns None.

    ## Vectorised loops
    Sessions are short (1.6 impressions on average on RetailRocket), so autoreset matters:
    Gymnasium 1.x vector envs reset on the step *after* the one that returned ``terminated``
    (``AutoresetMode.NEXT_STEP``). That step's transition is not part of any episode; a loop
    written for gymnasium 0.29 that stores it stores a bogus transition per episode. Skip the
    transitions of the envs that were done on the previous step, or ask the native vector env
    (``vectorization_mode="vector_entry_point"``) for ``autoreset_mode="same_step"`` or
    ``"disabled"`` (``rmtl_env.vector``). Envs made with the same dataset name and options in one
    process share one read-only copy of the data.

    ## Arguments
    - ``dataset``: catalog name (``retailrocket``, ``kuairand-1k``, ``retailrocket-synthetic``,
      ``kuairand-synthetic``), a processed dataset folder, or a loaded ``SessionDataset``.
    - ``split``: ``train``, ``val`` or ``test``.
    - ``data_dir``: folder of the real raw files.
    - ``tasks``: subset and order of the dataset's tasks (default: all).
    - ``reward_weights``: K weights of the scalar reward (default: all 1).
    - ``session_order``: ``random`` or ``sequential``.
    - ``prob_clip``: the probability clip inside the log (default 1e-7; the official code 1e-4).
    - ``scale``, ``data_seed``: a synthetic twin's size and seed; ``dataset_kwargs``: any other
      ``load_dataset`` option (``session_key``, ``min_count``, ...). An unknown keyword raises
      Python's standard ``TypeError: ... got an unexpected keyword argument``.
    - ``observation_mode``: ``dict`` (default) or ``flat``; ``reward_mode``: ``scalar``
      (default) or ``vector``; ``render_mode``: None or ``ansi``.

    ## Version History
    - v0: first version; observation and reward modes, rendering and uniform info keys added
      without changing the defaults; ``get_state``/``set_state`` (an interrupted training run
      continues with the same sessions) added.
    """

    metadata = {"render_modes": ["ansi"], "render_fps": 4}  # fps: Gymnasium's checker asks

    def __init__(
        self,
        dataset: str | SessionDataset = "retailrocket-synthetic",
        split: str = "train",
        data_dir: str | None = None,
        tasks: list[str] | None = None,
        reward_weights: list[float] | None = None,
        session_order: str = "random",
        prob_clip: float = DEFAULT_PROB_CLIP,
        scale: str | None = None,
        data_seed: int | None = None,
        dataset_kwargs: dict[str, Any] | None = None,
        observation_mode: str = "dict",
        reward_mode: str = "scalar",
        render_mode: str | None = None,
    ) -> None:
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            # Warn, as gym.make does, rather than raise: clients such as SB3's make_vec_env ask
            # every env for "rgb_array" and never render it.
            gym.logger.warn(
                f"render_mode {render_mode!r} is not one of {self.metadata['render_modes']}: "
                "render() will return None"
            )
        if observation_mode not in OBSERVATION_MODES:
            raise ValueError(
                f"observation_mode must be one of {OBSERVATION_MODES}, got {observation_mode!r}"
            )
        if reward_mode not in REWARD_MODES:
            raise ValueError(f"reward_mode must be one of {REWARD_MODES}, got {reward_mode!r}")
        self.render_mode, self.observation_mode, self.reward_mode = (
            render_mode,
            observation_mode,
            reward_mode,
        )
        if session_order not in ("random", "sequential"):
            raise ValueError(
                f"session_order must be 'random' or 'sequential', got {session_order!r}"
            )
        if isinstance(prob_clip, bool) or not isinstance(prob_clip, int | float):
            raise TypeError(f"prob_clip must be a number in (0, 0.5), got {prob_clip!r}")
        if not 0.0 < prob_clip < 0.5:
            raise ValueError(f"prob_clip must be in (0, 0.5), got {prob_clip}")
        params = dict(dataset_kwargs or {})
        if scale is not None:
            params["scale"] = scale
        if data_seed is not None:
            params["seed"] = data_seed
        self.dataset = resolve_dataset(dataset, data_dir, **params)
        self.data: SplitData = self.dataset.split(split, tasks)
        if self.data.num_sessions == 0:
            raise ValueError(f"split {split!r} of dataset {self.dataset.name!r} has no sessions")
        self.tasks = list(self.data.tasks)
        k = len(self.tasks)
        self.reward_weights = reward_weight_vector(reward_weights, self.tasks)
        self.session_order = session_order
        self.prob_clip = float(prob_clip)
        self.observation_space = (
            observation_space(self.dataset)
            if observation_mode == "dict"
            else flat_observation_space(self.dataset)
        )
        self.action_space = spaces.Box(0.0, 1.0, shape=(k,), dtype=np.float32)
        worst = self.reward_weights * math.log(self.prob_clip)  # the most a task reward can cost
        low, high = np.minimum(worst, 0.0), np.maximum(worst, 0.0)
        if reward_mode == "scalar":  # clients such as TorchRL read the reward's shape from here
            low, high = low.sum(keepdims=True), high.sum(keepdims=True)
        self.reward_space = spaces.Box(
            low=low.astype(np.float32), high=high.astype(np.float32), dtype=np.float32
        )
        data = self.data
        self._session_ids = _shared(
            data, "session_ids", lambda: data.session_id[data.session_starts[:-1]]
        )
        # Python ints: several times faster per step than indexing a NumPy array
        self._labels = _shared(data, "label_rows", lambda: data.labels.astype(np.int8).tolist())
        self._weights = self.reward_weights.tolist()
        self._next_sequential = 0
        self._row = -1
        self._end = -1
        self._start = -1
        self._current_session_id = -1

    # --- Gymnasium API -------------------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        unknown = sorted(set(options or {}) - {"session_id"})
        if unknown:
            raise ValueError(
                f"reset options: unknown key(s) {unknown}; the one option is 'session_id'"
            )
        if options and "session_id" in options:
            session = options["session_id"]
            if isinstance(session, bool) or not isinstance(session, int | np.integer):
                raise TypeError(f"reset options: session_id must be an integer id, got {session!r}")
            index = int(np.searchsorted(self._session_ids, session))
            if index >= len(self._session_ids) or self._session_ids[index] != options["session_id"]:
                raise ValueError(
                    f"session_id {options['session_id']!r} is not in split {self.data.name!r}"
                )
        elif self.session_order == "random":
            index = int(self.np_random.integers(self.data.num_sessions))
        else:
            index = self._next_sequential
            self._next_sequential = (index + 1) % self.data.num_sessions
        self._row = self._start = int(self.data.session_starts[index])
        self._end = int(self.data.session_starts[index + 1])
        self._current_session_id = int(self._session_ids[index])
        k = len(self.tasks)
        info = {  # the same keys as every step's info; nothing has been scored yet
            "session_id": int(self._session_ids[index]),
            "session_length": self._end - self._row,
            "step": 0,
            "task_rewards": np.zeros(k),
            "labels": np.zeros(k, dtype=np.float32),
        }
        return self._observation(self._row), info

    def step(self, action):
        if self._row < 0 or self._row >= self._end:
            raise RuntimeError("the episode has ended (or never started): call reset() first")
        probs = self._check_action(action)
        row = self._row
        labels = self._labels[row]
        # Per-task negative BCE in Python floats: for K of 2-3 this is several times faster than
        # numpy calls on tiny arrays, and equals rmtl_env.rewards.task_rewards.
        low, high = self.prob_clip, 1.0 - self.prob_clip
        rewards = []
        for y, a in zip(labels, probs, strict=True):
            a = low if a < low else high if a > high else a
            rewards.append(math.log(a) if y else math.log1p(-a))
        info = {
            "session_id": self._current_session_id,
            "session_length": self._end - self._start,
            "step": row - self._start,
            "task_rewards": np.array(rewards),
            "labels": np.array(labels, dtype=np.float32),
        }
        terminated = row + 1 >= self._end
        self._row = row + 1
        if self.reward_mode == "vector":
            reward = np.array([w * r for w, r in zip(self._weights, rewards, strict=True)])
        else:
            reward = sum(w * r for w, r in zip(self._weights, rewards, strict=True))
        return self._observation(row if terminated else row + 1), reward, terminated, False, info

    def render(self) -> str | None:
        """``render_mode="ansi"``: the current impression as one line of text."""
        if self.render_mode != "ansi":
            return None
        if self._row < 0:
            return "SessionRecEnv: call reset() first"
        row = min(self._row, self._end - 1)
        fields = dict(zip(self.dataset.categorical_fields, self.data.categorical[row], strict=True))
        return (
            f"session {self._current_session_id} impression {row - self._start + 1}/"
            f"{self._end - self._start}: " + ", ".join(f"{k}={int(v)}" for k, v in fields.items())
        )

    # --- checkpointing ---------------------------------------------------------------------------
    def get_state(self) -> dict[str, Any]:
        """Where the env stands, as plain values: the episode's rows, the sequential cursor and
        the state of ``np_random``. ``set_state`` on an env made with the same arguments resumes
        it exactly (a training run continued after an interruption draws the same sessions)."""
        return {
            "split": self.data.name,
            "cursor": [self._next_sequential, self._row, self._start, self._end,
                       self._current_session_id],
            "np_random": self.np_random.bit_generator.state,
        }  # fmt: skip

    def set_state(self, state: dict[str, Any]) -> None:
        """Restore what ``get_state`` returned (from an env made with the same arguments)."""
        if not isinstance(state, dict) or set(state) != {"split", "cursor", "np_random"}:
            raise ValueError("set_state: expected the dict get_state returns (keys split, "
                             f"cursor, np_random), got {type(state).__name__}")  # fmt: skip
        if state["split"] != self.data.name:
            raise ValueError(f"set_state: the state is of split {state['split']!r}, this env "
                             f"plays {self.data.name!r}")  # fmt: skip
        cursor = [int(v) for v in state["cursor"]]
        if len(cursor) != 5 or cursor[3] > len(self._labels) or cursor[0] >= self.data.num_sessions:
            raise ValueError(f"set_state: cursor {cursor} does not fit split {self.data.name!r} "
                             f"({self.data.num_sessions} sessions, {len(self._labels)} rows)")  # fmt: skip
        generator = self.np_random  # created (and seeded from entropy) if it was not yet
        generator.bit_generator.state = state["np_random"]
        (self._next_sequential, self._row, self._start, self._end,
         self._current_session_id) = cursor  # fmt: skip

    # --- helpers -------------------------------------------------------------------------------
    def _observation(self, row: int) -> dict[str, np.ndarray] | np.ndarray:
        if self.observation_mode == "flat":
            return np.concatenate(
                [self.data.categorical[row], self.data.numerical[row]], dtype=np.float32
            )
        return {
            "categorical": self.data.categorical[row].copy(),
            "numerical": self.data.numerical[row].copy(),
        }

    def _check_action(self, action) -> list[float]:
        k = len(self.tasks)
        try:
            values = np.asarray(action, dtype=np.float64)
        except (TypeError, ValueError):
            raise ValueError(
                f"action must be {k} numbers (one probability per task {self.tasks}), got "
                f"{type(action).__name__} {str(action)[:80]}"
            ) from None
        if values.shape != (k,):  # never squeezed: a (1, K) batch is a caller's mistake
            raise ValueError(
                f"action must have shape ({k},) (one probability per task {self.tasks}), got "
                f"{values.shape}" + (" (a batch of one: pass action[0], or use the vector env)"
                                     if values.size == k else "")
            )  # fmt: skip
        probs = values.tolist()
        for a in probs:
            if not -ACTION_TOLERANCE <= a <= 1 + ACTION_TOLERANCE:  # also False for NaN
                if math.isfinite(a):
                    raise ValueError(f"action values must be probabilities in [0, 1], got {values}")
                raise ValueError(f"action must be finite probabilities, got {values}")
        return [0.0 if a < 0.0 else 1.0 if a > 1.0 else a for a in probs]
