"""``evaluate_policy``: the one evaluation protocol of SessionRecEnv, with a normalised score.

A policy is rolled over every session of a split in one vectorised pass: the environment's
transitions do not depend on the actions, so an episode's return is the sum of the rewards of the
policy's actions on its rows, and the whole split is one batched call per ``batch_size`` rows.

The normalised score puts a return between two fixed policies of the same split::

    score = 100 * (R - R_const) / (R_ref - R_const)

``R_const`` is the return of the best policy that ignores the state: each task's base rate on the
training split, always. ``R_ref`` is the return of the twin's true probabilities (the oracle); on
data without them, a reference return you pass (``reference_return``), such as the default
supervised PLE's. The uniform random policy is not the zero point, as it is in D4RL's scores for
control: with BCE rewards its return is about -1 per task and step, so every sensible policy would
score 98-100; it scores far below 0 here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from rmtl_env.data import SessionDataset, SplitData
from rmtl_env.env import resolve_dataset
from rmtl_env.metrics import task_metrics
from rmtl_env.rewards import DEFAULT_PROB_CLIP, reward_weight_vector, task_rewards
from rmtl_env.transitions import Observation, Policy, policy_actions


@dataclass
class PolicyScore:
    """What ``evaluate_policy`` measured on one split.

    Attributes:
        metrics: ``{task: {"auc", "logloss", "s_logloss"}}`` of the policy's actions.
        mean_return: the mean over sessions of the episode return (the env's scalar reward
            summed over the session's steps).
        score: the normalised score (None when there is no reference return).
        const_return, reference_return: ``R_const`` and ``R_ref`` of the score.
        reference: what ``R_ref`` is (``oracle`` or ``given``).
        episodes, steps: sessions and impressions of the split.
    """

    metrics: dict[str, dict[str, float]]
    mean_return: float
    score: float | None
    const_return: float
    reference_return: float | None
    reference: str | None
    episodes: int
    steps: int
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def session_returns(
    data: SplitData,
    actions: np.ndarray,
    reward_weights: np.ndarray,
    prob_clip: float = DEFAULT_PROB_CLIP,
) -> np.ndarray:
    """``[S]``: each session's return under ``actions``, the env's scalar rewards summed."""
    rewards = task_rewards(data.labels, actions, prob_clip) @ reward_weights  # [n]
    return np.add.reduceat(rewards, data.session_starts[:-1]) if len(rewards) else rewards


def evaluate_policy(
    policy: Any,
    dataset: str | SessionDataset = "retailrocket-synthetic",
    split: str = "test",
    *,
    observation_mode: str | None = None,
    reward_weights: list[float] | None = None,
    prob_clip: float = DEFAULT_PROB_CLIP,
    reference_return: float | None = None,
    batch_size: int = 16384,
    **dataset_kwargs: Any,
) -> PolicyScore:
    """Score ``policy`` on every session of ``split`` of ``dataset`` (a catalog name with
    ``load_dataset`` options such as ``scale``, or a loaded dataset).

    ``policy``: a callable on a batch of observations (the env's Dict, or flat with
    ``observation_mode="flat"``) returning ``[n, K]`` probabilities; a stable-baselines3 model; a
    d3rlpy algorithm (flat observations); or a model with ``as_policy()``
    (``agents.models.MultiTaskModel``). ``reward_weights`` and ``prob_clip``: the env's.
    ``reference_return``: ``R_ref`` where the data has no true probabilities (ignored where it
    has them: the oracle is the reference)."""
    data_set = resolve_dataset(dataset, **dataset_kwargs)
    data = data_set.split(split)
    weights = reward_weight_vector(reward_weights, data.tasks)
    actions = policy_actions(data, policy, batch_size, observation_mode)
    mean_return = float(session_returns(data, actions, weights, prob_clip).mean())
    const_return, oracle_return = score_anchors(data_set, split, weights, prob_clip)
    reference: str | None = None
    if oracle_return is not None:
        reference_return, reference = oracle_return, "oracle"
    elif reference_return is not None:
        reference = "given"
    return PolicyScore(
        metrics=task_metrics(data.labels, actions, data.session_id, data.tasks),
        mean_return=mean_return, score=normalised(mean_return, const_return, reference_return),
        const_return=const_return,
        reference_return=reference_return, reference=reference,
        episodes=data.num_sessions, steps=len(data),
    )  # fmt: skip


def normalised(mean_return: float, const_return: float, reference: float | None) -> float | None:
    """``100 * (R - R_const) / (R_ref - R_const)``; None without a reference return."""
    if reference is None:
        return None
    return 100.0 * (mean_return - const_return) / (reference - const_return)


def score_anchors(
    dataset: SessionDataset,
    split: str = "test",
    reward_weights: np.ndarray | None = None,
    prob_clip: float = DEFAULT_PROB_CLIP,
) -> tuple[float, float | None]:
    """``(R_const, R_oracle)``: the mean session return on ``split`` of each task's base rate on
    the training split, and of the true probabilities (None without them)."""
    data = dataset.split(split)
    weights = reward_weight_vector(reward_weights, data.tasks)
    base_rates = dataset.split("train").labels.mean(axis=0, dtype=np.float64)
    constant = np.broadcast_to(base_rates, data.labels.shape)
    const_return = float(session_returns(data, constant, weights, prob_clip).mean())
    if data.true_probs is None:
        return const_return, None
    truth = data.true_probs.astype(np.float64)
    return const_return, float(session_returns(data, truth, weights, prob_clip).mean())


def normalised_scores(
    dataset: SessionDataset, predictions: Mapping[str, np.ndarray], split: str = "test"
) -> dict[str, dict[str, float | None]]:
    """``{name: {"mean_return", "score"}}`` of each model's ``[n, K]`` predictions on ``split``
    (what ``evaluate_policy`` reports, from predictions already made; the score is None on data
    without true probabilities)."""
    data = dataset.split(split)
    weights = reward_weight_vector(None, data.tasks)
    const_return, oracle_return = score_anchors(dataset, split, weights)
    out = {}
    for name, probs in predictions.items():
        mean = float(session_returns(data, np.asarray(probs, np.float64), weights).mean())
        out[name] = {"mean_return": mean, "score": normalised(mean, const_return, oracle_return)}
    return out


def constant_policy(rates: Mapping[str, float] | np.ndarray) -> Policy:
    """The policy that answers every observation with the same K probabilities (e.g. each
    task's base rate on the training split, the score's zero point)."""
    values = np.asarray(list(rates.values()) if isinstance(rates, Mapping) else rates, np.float64)

    def act(obs: Observation) -> np.ndarray:
        n = len(obs["categorical"]) if isinstance(obs, dict) else len(obs)
        return np.broadcast_to(values, (n, len(values))).copy()

    return act


def uniform_policy(num_tasks: int, seed: int = 0) -> Policy:
    """The uniform random policy: i.i.d. U(0, 1) actions (a row of the reference table, far
    below 0 in normalised score)."""
    rng = np.random.default_rng(seed)

    def act(obs: Observation) -> np.ndarray:
        n = len(obs["categorical"]) if isinstance(obs, dict) else len(obs)
        return rng.random((n, num_tasks))

    return act
