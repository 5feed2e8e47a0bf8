"""The logged sessions as offline-RL datasets: Minari (``export_minari``) and d3rlpy
(``to_d3rlpy``).

Both are built from ``build_transitions`` in one vectorised pass, so they hold exactly the
episodes ``SessionRecEnv`` replays: one episode per session, the same observations, rewards,
``terminated`` flags and info keys. Minari and d3rlpy are optional extras
(``pip install -e ".[minari]"``, ``pip install d3rlpy``); this module imports them only
when a function needs them.

The logs hold feedback, not actions: an exported dataset needs a behaviour policy's actions.
``behaviour_actions`` gives the two that need no model (``uniform``: a random policy, the
official RMTL replay's; ``labels``: the logged feedback itself, an oracle). For a trained
model's (noisy) predictions, pass ``actions=`` (``agents.trainer.predict``) or use the command
line's ``--checkpoint``.
"""

from __future__ import annotations

import dataclasses
import itertools
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np

from rmtl_env.data import SplitData
from rmtl_env.env import SessionRecEnv
from rmtl_env.evaluation import score_anchors
from rmtl_env.rewards import DEFAULT_PROB_CLIP, reward_weight_vector, task_rewards
from rmtl_env.transitions import Policy, Transitions, build_transitions, policy_actions

BEHAVIOURS = ("uniform", "labels")


def behaviour_actions(data: SplitData, behaviour: str, seed: int = 0) -> np.ndarray:
    """``[n, K]`` float32 actions of a model-free behaviour policy (see ``BEHAVIOURS``)."""
    if behaviour == "uniform":
        rng = np.random.default_rng(seed)
        return rng.uniform(0.0, 1.0, size=(len(data), len(data.tasks))).astype(np.float32)
    if behaviour == "labels":
        return data.labels.astype(np.float32)
    raise ValueError(f"behaviour must be one of {BEHAVIOURS}, got {behaviour!r}")


def scalar_rewards(transitions: Transitions, reward_weights: Any = None) -> np.ndarray:
    """``[n]`` float64: the env's scalar reward ``sum_k w_k r_k`` of every transition."""
    weights = reward_weight_vector(reward_weights, range(transitions.rewards.shape[1]))
    return transitions.rewards.astype(np.float64) @ weights


def flat_observations(transitions: Transitions, next_state: bool = False) -> np.ndarray:
    """``[n, F + N]`` float32 observations in the env's ``observation_mode="flat"`` order."""
    cat, num = (
        (transitions.next_categorical, transitions.next_numerical)
        if next_state
        else (transitions.categorical, transitions.numerical)
    )
    return np.concatenate([cat, num], axis=1, dtype=np.float32)


# --- d3rlpy ------------------------------------------------------------------------------------
def d3rlpy_arrays(transitions: Transitions, reward_weights: Any = None) -> dict[str, np.ndarray]:
    """The arrays of d3rlpy's ``MDPDataset`` constructor: flat float32 ``observations``,
    ``actions``, ``rewards`` ``[n, 1]`` (the env's scalar reward), ``terminals`` and
    ``timeouts`` (all zero: sessions end, they are never cut)."""
    return {
        "observations": flat_observations(transitions),
        "actions": transitions.action.astype(np.float32),
        "rewards": scalar_rewards(transitions, reward_weights).astype(np.float32)[:, None],
        "terminals": transitions.terminated.astype(np.float32),
        "timeouts": np.zeros(len(transitions), dtype=np.float32),
    }


def to_d3rlpy(transitions: Transitions, reward_weights: Any = None):
    """A d3rlpy ``MDPDataset`` of the transitions (continuous actions in ``[0, 1]``: train with
    ``action_scaler=d3rlpy.preprocessing.MinMaxActionScaler(minimum=0, maximum=1)``)."""
    try:
        from d3rlpy.constants import ActionSpace
        from d3rlpy.dataset import MDPDataset
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "to_d3rlpy needs d3rlpy (pip install d3rlpy; it pins gymnasium==1.0.0, so give it "
            "its own virtual environment)"
        ) from exc
    arrays = d3rlpy_arrays(transitions, reward_weights)
    return MDPDataset(
        **arrays,
        action_space=ActionSpace.CONTINUOUS,
        action_size=transitions.action.shape[1],
    )


# --- Minari ------------------------------------------------------------------------------------
def _episode_infos(
    transitions: Transitions, rewards: np.ndarray, start: int, stop: int
) -> dict[str, Any]:
    """The env's infos of one session: reset's, then one per step (``stop - start + 1``).

    Scalars as Python lists: Minari's Arrow storage cannot read back a 1-D array info (its shape
    metadata is empty), and lists are what its ``DataCollector`` writes.
    """
    n, k = stop - start, transitions.rewards.shape[1]
    return {
        "session_id": [int(transitions.session_id[start])] * (n + 1),
        "session_length": [n] * (n + 1),
        "step": [0, *range(n)],
        "task_rewards": np.concatenate([np.zeros((1, k)), rewards[start:stop]]),
        "labels": np.concatenate(
            [np.zeros((1, k), dtype=np.float32), transitions.labels[start:stop]]
        ),
    }


def minari_buffers(
    data: SplitData,
    actions: np.ndarray,
    reward_weights: Any = None,
    prob_clip: float = DEFAULT_PROB_CLIP,
    observation_mode: str = "dict",
    max_sessions: int | None = None,
) -> list:
    """One ``minari.data_collector.EpisodeBuffer`` per session of ``data`` (the first
    ``max_sessions`` of them, if given), in session order, holding what ``SessionRecEnv``
    returns: ``length + 1`` observations (each impression, then the last one again, the env's
    observation at ``terminated``) and infos (reset's, then one per step)."""
    from minari.data_collector import EpisodeBuffer

    transitions = build_transitions(data, actions=actions, prob_clip=prob_clip)
    # float64, as the env computes them (Transitions keeps float32 for the critics)
    per_task = task_rewards(data.labels, transitions.action, prob_clip)
    rewards = per_task @ reward_weight_vector(reward_weights, data.tasks)
    flat = flat_observations(transitions) if observation_mode == "flat" else None
    starts = data.session_starts[: None if max_sessions is None else max_sessions + 1]
    buffers = []
    for episode, (start, stop) in enumerate(itertools.pairwise(starts.tolist())):
        rows = np.append(np.arange(start, stop), stop - 1)
        obs = (
            flat[rows]
            if flat is not None
            else {
                "categorical": transitions.categorical[rows],
                "numerical": transitions.numerical[rows],
            }
        )
        buffers.append(
            EpisodeBuffer(
                id=episode,
                observations=obs,
                actions=transitions.action[start:stop],
                rewards=rewards[start:stop],
                terminations=transitions.terminated[start:stop],
                truncations=np.zeros(stop - start, dtype=bool),
                infos=_episode_infos(transitions, per_task, start, stop),
            )
        )
    return buffers


def export_minari(
    dataset_id: str,
    actions: str | np.ndarray | Policy = "uniform",
    seed: int = 0,
    algorithm_name: str | None = None,
    description: str | None = None,
    data_format: str = "hdf5",
    max_sessions: int | None = None,
    eval_split: str = "test",
    author: str = "rmtl-env",
    author_email: str | None = None,
    code_permalink: str | None = None,
    **env_kwargs: Any,
):
    """Write the sessions of ``gym.make("SessionRecEnv-v0", **env_kwargs)`` as the Minari
    dataset ``dataset_id`` (under ``$MINARI_DATASETS_PATH``, default ``~/.minari/datasets``) and
    return it.

    ``actions``: a behaviour name (``BEHAVIOURS``, drawn with ``seed``), an ``[n, K]`` array of
    the behaviour policy's action at every row of the split, or a batched policy (observation
    dict -> ``[B, K]``). ``env_kwargs`` name the dataset by catalog name or processed folder (not
    a loaded ``SessionDataset``), so that the dataset's recorded environment spec is JSON and
    ``recover_environment()`` replays the same sessions. ``dataset_id`` must be new: Minari
    never overwrites. ``max_sessions``: only the split's first sessions (in start-time order).

    The dataset's metadata: ``eval_env`` is the same env spec on ``eval_split`` (the held-out
    sessions), and on a twin ``ref_min_score`` / ``ref_max_score`` are the returns of the base-rate
    constant and of the true probabilities there, so Minari's ``get_normalized_score`` is
    ``rmtl_env.evaluate_policy``'s score divided by 100. ``algorithm_name`` defaults to the
    behaviour's name (``"uniform"``, ...), a policy's qualified name, or ``"given actions"`` for
    an array. ``author``, ``author_email`` and ``code_permalink`` (default: this package's name
    and version) are recorded as given; Minari warns while ``author_email`` is missing.

    Cost: Minari stores every episode separately, and sessions are short, so a session costs
    about 30 KB and a few milliseconds in HDF5 (the small RetailRocket twin's 35,603 training
    sessions: about 1.1 GB). Minari's Arrow storage re-measures the whole dataset after each
    episode, so its export time grows with the square of the sessions: keep it for small
    exports.
    """
    import gymnasium as gym
    import minari

    if not isinstance(env_kwargs.get("dataset", ""), str | Path):
        raise TypeError(
            "export_minari: pass dataset= as a catalog name or processed folder, not a loaded "
            "dataset, so that Minari can record and recover the environment"
        )
    if "dataset" in env_kwargs:
        env_kwargs["dataset"] = str(env_kwargs["dataset"])
    path = minari.storage.get_dataset_path(dataset_id)
    if path.exists():
        raise FileExistsError(
            f"Minari dataset {dataset_id!r} already exists at {path}; pick a new id or delete it "
            f"(minari.delete_dataset({dataset_id!r}))"
        )
    if max_sessions is not None and max_sessions < 1:
        raise ValueError(f"max_sessions must be >= 1, got {max_sessions}")
    env = gym.make("SessionRecEnv-v0", **env_kwargs)
    core: SessionRecEnv = env.unwrapped
    data = core.data
    if isinstance(actions, str):
        default_name, actions = actions, behaviour_actions(data, actions, seed)
    elif callable(actions):
        default_name = getattr(actions, "__qualname__", type(actions).__qualname__)
        actions = policy_actions(data, actions)
    else:
        default_name = "given actions"
    if algorithm_name is None:
        algorithm_name = default_name
    buffers = minari_buffers(
        data, actions, core.reward_weights, core.prob_clip, core.observation_mode, max_sessions
    )
    eval_env = dataclasses.replace(env.spec, kwargs={**env.spec.kwargs, "split": eval_split})
    low, high = score_anchors(core.dataset, eval_split, core.reward_weights, core.prob_clip)
    return minari.create_dataset_from_buffers(
        dataset_id,
        buffers,
        env=env.spec,
        eval_env=eval_env,
        ref_min_score=low if high is not None else None,
        ref_max_score=high,
        author=author,
        author_email=author_email,
        code_permalink=code_permalink or f"rmtl-env {version('rmtl-env')}: rmtl_env.offline",
        algorithm_name=algorithm_name,
        description=description
        or (
            f"{core.dataset.name}, split {data.name!r}: {data.num_sessions:,} sessions (episodes), "
            f"{len(data):,} impressions (steps); tasks {core.tasks}"
        ),
        data_format=data_format,
    )


def default_dataset_id(dataset: str, split: str, behaviour: str) -> str:
    """``rmtl/<dataset>-<split>-<behaviour>-v0``, a valid Minari id for a catalog name or
    folder."""
    name = Path(str(dataset)).name.replace("_", "-") or "dataset"
    return f"rmtl/{name}-{split}-{behaviour}-v0"
