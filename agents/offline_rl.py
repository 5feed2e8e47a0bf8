"""Standard offline RL algorithms on the logged sessions: stock d3rlpy BC, TD3+BC, IQL and CQL
trained on the training split's transitions and scored with ``rmtl_env.evaluate_policy``.

The offline rows of ``python train/benchmark.py --block rl``. d3rlpy pins gymnasium==1.0.0, so
this module runs in d3rlpy's own virtual environment (``python -m rmtl_bench.offline_d3rlpy``,
which the block calls through ``RMTL_D3RLPY_PYTHON``); d3rlpy is imported only when an algorithm
is built.

The logs hold feedback, not actions, so the dataset needs a behaviour policy
(``rmtl_env.offline.behaviour_actions``):

- ``uniform``: U(0, 1) actions, the official RMTL replay's behaviour (``bc``, ``td3+bc``, ``iql``,
  ``cql``). Cloning it can only give a policy near 0.5: the rows show what the reward signal adds.
- ``labels``: the logged feedback itself as the action (``bc-labels``, ``td3+bc-labels``). BC's
  squared error to 0/1 labels is minimised by the click probability, so BC on this behaviour is
  least-squares supervised learning run through an offline-RL pipeline: the row says whether that
  pipeline (flat ids as floats, d3rlpy's MLP) can reach the supervised models.

Observations are the env's flat form (ids as floats) scaled by d3rlpy's ``MinMaxObservationScaler``
and actions by ``MinMaxActionScaler(0, 1)`` (d3rlpy's policies act in [-1, 1]). A column that is
constant in the training split (a feature with one value, frequent on the KuaiRand twin) would
divide by zero in that scaler and train on NaN; such a column gets the range [min, min + 1]
(``observation_scaler``).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from agents.domains import at_least, check_domains, within
from rmtl_env.data import SessionDataset
from rmtl_env.evaluation import PolicyScore, evaluate_policy
from rmtl_env.offline import behaviour_actions, flat_observations, to_d3rlpy
from rmtl_env.transitions import build_transitions

OFFLINE_METHODS = ("bc", "td3+bc", "iql", "cql", "bc-labels", "td3+bc-labels")


@dataclass(frozen=True)
class OfflineConfig:
    """The settings every offline algorithm shares (the rest are d3rlpy's defaults).

    Attributes:
        gradient_steps: the budget of gradient steps, the same for every algorithm.
        eval_every: gradient steps between two points of the learning curve (d3rlpy's epoch).
        eval_split: the split the learning curve is scored on.
        batch_size: minibatch of every step.
        gamma: discount (RMTL's).
    """

    gradient_steps: int = field(default=10_000, metadata=at_least())
    eval_every: int = field(default=1_000, metadata=at_least())
    eval_split: str = "val"
    batch_size: int = field(default=256, metadata=at_least())
    gamma: float = field(default=0.95, metadata=within(0, 1, high_open=True))

    def __post_init__(self) -> None:
        check_domains(self)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class OfflineRun:
    """One trained algorithm: its curve (``steps``, ``score``, ``mean_return``, ``seconds``),
    the test split's score and its wall time."""

    curve: list[dict[str, float]]
    test: PolicyScore
    seconds: float


def split_method(method: str) -> tuple[str, str]:
    """``(algorithm, behaviour)`` of an offline method name."""
    if method not in OFFLINE_METHODS:
        raise ValueError(f"unknown offline method {method!r}; valid: {', '.join(OFFLINE_METHODS)}")
    algorithm, _, behaviour = method.partition("-")
    return algorithm, behaviour or "uniform"


def observation_scaler(observations: np.ndarray | None = None) -> Any:
    """d3rlpy's ``MinMaxObservationScaler`` for the training ``observations`` (``[n, D]``, flat):
    fitted by d3rlpy when every column varies (or no observations are given), else the columns'
    range with ``[min, min + 1]`` for a constant column, whose fitted range would be empty."""
    from d3rlpy.preprocessing import MinMaxObservationScaler

    if observations is None or len(observations) == 0:
        return MinMaxObservationScaler()
    low, high = observations.min(axis=0), observations.max(axis=0)
    if (high > low).all():
        return MinMaxObservationScaler()
    return MinMaxObservationScaler(minimum=low, maximum=np.where(high > low, high, low + 1))


def make_offline(
    method: str,
    config: OfflineConfig,
    device: str = "cpu:0",
    observations: np.ndarray | None = None,
) -> Any:
    """The d3rlpy algorithm of ``method`` (not yet fitted); ``observations``: the training
    observations (flat), for ``observation_scaler``."""
    import d3rlpy

    algorithm, _ = split_method(method)
    common = {
        "batch_size": config.batch_size,
        "observation_scaler": observation_scaler(observations),
        "action_scaler": d3rlpy.preprocessing.MinMaxActionScaler(minimum=0.0, maximum=1.0),
    }
    if algorithm == "bc":
        return d3rlpy.algos.BCConfig(**common).create(device=device)
    configs = {"td3+bc": d3rlpy.algos.TD3PlusBCConfig, "iql": d3rlpy.algos.IQLConfig,
               "cql": d3rlpy.algos.CQLConfig}  # fmt: skip
    return configs[algorithm](gamma=config.gamma, **common).create(device=device)


def train_offline(
    method: str,
    dataset: SessionDataset,
    config: OfflineConfig,
    seed: int,
    device: str = "cpu:0",
    progress: bool = True,
) -> OfflineRun:
    """Fit ``method`` for ``config.gradient_steps`` steps on the training split's transitions
    under its behaviour policy, with its learning curve, and score it on the test split."""
    import d3rlpy

    _, behaviour = split_method(method)
    d3rlpy.seed(seed)
    train = dataset.split("train")
    transitions = build_transitions(train, actions=behaviour_actions(train, behaviour, seed))
    algo = make_offline(method, config, device, flat_observations(transitions))
    curve: list[dict[str, float]] = []
    started = time.perf_counter()

    def record(steps: int) -> None:
        score = evaluate_policy(algo, dataset, config.eval_split)
        curve.append({"steps": steps, "score": score.score, "mean_return": score.mean_return,
                      "seconds": time.perf_counter() - started})  # fmt: skip

    fitter = algo.fitter(
        to_d3rlpy(transitions), n_steps=config.gradient_steps,
        n_steps_per_epoch=config.eval_every, show_progress=progress,
        logger_adapter=d3rlpy.logging.NoopAdapterFactory(), save_interval=10**9,
    )  # fmt: skip
    for epoch, _ in fitter:
        record(epoch * config.eval_every)
    seconds = time.perf_counter() - started
    return OfflineRun(curve=curve, test=evaluate_policy(algo, dataset, "test"), seconds=seconds)
