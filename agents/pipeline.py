"""RMTL and D-PLE as typed stages: load data, pretrain, learn critics, polish, D-PLE, evaluate.

Each stage takes datasets and config dataclasses and returns models and result objects; nothing
here parses a command line or writes a file (``train/`` does both). RMTL on any dataset::

    splits = load_splits(DataConfig("retailrocket-synthetic"))
    backbone = pretrain("esmm", splits, seed=0).model
    critics = learn_critics(backbone, splits.train, PRESETS["paper"], seed=0)
    polished = polish(backbone, critics.critic, splits, PRESETS["paper"], seed=0).model
    print(evaluate({"esmm": backbone, "rmtl-esmm": polished}, splits.test))

A stage seeds torch, NumPy and Python with ``seed`` when it starts, so each stage gives the same
numbers whether the stages run in one process or resume from checkpoints in another.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

import gymnasium as gym
import numpy as np
from stable_baselines3 import TD3

import rmtl_env  # noqa: F401 -- registers SessionRecEnv-v0
from agents.checkpoint import model_name
from agents.critic import MultiCritic
from agents.domains import at_least, check_domains, within
from agents.dple import DPLEConfig, DPLEResult, actor_backbone, make_dple
from agents.dple import train_dple as run_dple_phases
from agents.models import ModelConfig, MultiTaskModel, build_model
from agents.replay import build_replay
from agents.rmtl import (
    PRESETS,
    CriticTrainingResult,
    RMTLAgent,
    RMTLConfig,
    loss_weights_on,
    polish_critics,
    polish_loss_weights,
)
from agents.runtime import NEVER_RECORDED, RECORDED_IF_SET, seed_everything
from agents.trainer import Split, TrainConfig, TrainResult, model_device, predict, train_model
from agents.weighting import check_model
from rmtl_env.data import SessionDataset, StreamedDataset, load_dataset
from rmtl_env.data.catalog import retire_engine
from rmtl_env.data.stream import BUFFER_ROWS
from rmtl_env.data.synthetic import twin_fraction, twin_knobs
from rmtl_env.data.synthetic.common import SCALES
from rmtl_env.metrics import oracle_metrics, task_metrics

Metrics = dict[str, dict[str, float]]
"""``{task: {"auc", "logloss", "s_logloss"}}``."""


@dataclass(frozen=True)
class DataConfig:
    """The dataset a run uses.

    Attributes:
        dataset: catalog name (retailrocket, kuairand-1k, *-synthetic), a processed folder or an
            own-log file.
        scale: synthetic twin size: tiny, small or full; for the 27K twin a fraction of the
            full size (``1/20``).
        data_seed: seed of the synthetic twin (the same data for every model seed).
        data_dir: folder of the raw files (real datasets).
        roles: the column-role JSON file of an own log (``rmtl_env.data.ColumnRoles``).
        engine: no longer needed (DuckDB prepares every source); accepted with a warning.
        stream: read the splits from the processed Parquet file block by block instead of into
            memory (``rmtl_env.data.stream``), for data larger than memory; training then
            shuffles blocks, pooled and permuted in buffers of ``buffer_rows`` rows.
        buffer_rows: the shuffle buffer of a streamed run (rows).
        rank_shards: a streamed run under torchrun: each rank reads only its share of the
            blocks (1/N of the I/O), in training and in prediction, instead of every block and
            its share of each batch; the global batches then mix rows differently than one
            process does.
        refresh: rebuild the processed dataset from the raw files even if it is cached (e.g.
            after a cache file was damaged); not part of a run's configuration.
        twin_conflict, twin_noise: knobs of the RetailRocket twin's generator
            (``rmtl_env.data.synthetic.TWIN_KNOBS``): how strongly the click and purchase
            drivers conflict, and the label noise of one segment of views; 0 is the standard
            twin.
    """

    dataset: str = "retailrocket-synthetic"
    scale: str = "small"
    data_seed: int = field(default=0, metadata=at_least(0))
    data_dir: str | None = None
    roles: str | None = None
    engine: Literal["pandas", "duckdb"] | None = field(default=None, metadata=NEVER_RECORDED)
    stream: bool = field(default=False, metadata=RECORDED_IF_SET)
    buffer_rows: int = field(default=BUFFER_ROWS, metadata=at_least(**RECORDED_IF_SET))
    rank_shards: bool = field(default=False, metadata=RECORDED_IF_SET)
    refresh: bool = field(default=False, metadata=NEVER_RECORDED)
    twin_conflict: float = field(default=0.0, metadata=within(0, 0.99, **RECORDED_IF_SET))
    twin_noise: float = field(default=0.0, metadata=within(0, 1, **RECORDED_IF_SET))

    def __post_init__(self) -> None:
        check_domains(self)
        if "27k" in self.dataset:
            twin_fraction(self.scale)  # a fraction of the full 27K size, "1/20" or 0.05
        elif self.scale not in SCALES:
            raise ValueError(f"scale must be one of {list(SCALES)}, got {self.scale!r}")
        retire_engine(self.engine)
        if self.rank_shards and not self.stream:
            raise ValueError("rank_shards reads a streamed split's blocks: it needs stream=True")
        twin_knobs(self.dataset, self.knobs)

    @property
    def knobs(self) -> dict[str, float]:
        """The twin's generator knobs, as ``load_dataset(twin=...)`` takes them."""
        return {"conflict": self.twin_conflict, "noise": self.twin_noise}


@dataclass(frozen=True)
class Splits:
    """A processed dataset and its three splits (in memory, or streamed)."""

    dataset: SessionDataset | StreamedDataset
    train: Split
    val: Split
    test: Split

    @property
    def streamed(self) -> bool:
        return isinstance(self.dataset, StreamedDataset)

    @classmethod
    def of(cls, dataset: SessionDataset | StreamedDataset) -> Splits:
        """The splits of a loaded dataset (e.g. an own log from ``load_dataset(path, roles=)``)."""
        return cls(dataset, *(dataset.split(name) for name in ("train", "val", "test")))

    @property
    def tasks(self) -> list[str]:
        return list(self.dataset.tasks)

    def describe(self) -> str:
        return (
            f"{self.dataset.name}: train {len(self.train):,} / val {len(self.val):,} / "
            f"test {len(self.test):,} rows, tasks {self.tasks}"
        )


def load_splits(config: DataConfig = DataConfig()) -> Splits:
    """Load (preparing and caching on first use) the dataset ``config`` names."""
    synthetic = config.dataset.endswith("synthetic")
    params = {"scale": config.scale, "seed": config.data_seed} if synthetic else {}
    if synthetic and twin_knobs(config.dataset, config.knobs):
        params["twin"] = config.knobs
    if config.roles is not None:
        params["roles"] = config.roles
    dataset = load_dataset(
        config.dataset, data_dir=config.data_dir, refresh=config.refresh, stream=config.stream,
        **params,
    )  # fmt: skip
    if config.stream:
        dataset.buffer_rows, dataset.rank_shards = config.buffer_rows, config.rank_shards
    return Splits.of(dataset)


@dataclass
class Fit:
    """A trained backbone and its training log (best epoch restored)."""

    model: MultiTaskModel
    result: TrainResult


def build_backbone(
    name: str, splits: Splits, model: ModelConfig = ModelConfig(), device: str = "cpu"
) -> MultiTaskModel:
    """An untrained backbone ``name`` sized for ``splits``' fields and tasks."""
    data = splits.dataset
    return build_model(
        name, data.field_dims, len(data.numerical_fields), len(data.tasks), **model.to_dict()
    ).to(device)


def pretrain(
    name: str,
    splits: Splits,
    model: ModelConfig = ModelConfig(),
    train: TrainConfig = TrainConfig(),
    seed: int = 0,
    device: str = "cpu",
    progress: bool = False,
) -> Fit:
    """Stage 1: train backbone ``name`` with equal-weight BCE and early stopping on ``val``."""
    seed_everything(seed)
    backbone = build_backbone(name, splits, model, device)
    result = train_model(
        backbone, splits.train, splits.val, replace(train, seed=seed),
        progress=progress, description=name,
    )  # fmt: skip
    return Fit(backbone, result)


@dataclass
class Critics:
    """RMTL's trained critics; ``result`` is None for critics passed in from elsewhere."""

    critic: MultiCritic
    result: CriticTrainingResult | None = None
    replay_seconds: float = 0.0


def learn_critics(
    backbone: MultiTaskModel,
    train: Split,
    config: RMTLConfig = PRESETS["paper"],
    seed: int = 0,
    progress: bool = False,
    actor_actions: np.ndarray | None = None,
    numerics: TrainConfig = TrainConfig(),
) -> Critics:
    """Stages 2-3: the replay of ``train`` with the frozen backbone's noisy actions, then K task
    critics by TD until the epoch TD loss converges (or ``config.critic_epochs``).
    ``actor_actions``: ``predict(backbone, train)`` when already computed; ``numerics``: the
    backbone's training settings, whose ``precision`` and ``mask_source`` the critic steps
    share."""
    seed_everything(seed)
    agent = RMTLAgent(
        backbone, replace(config, seed=seed),
        precision=numerics.precision, dropout_masks=numerics.mask_source,
    )  # fmt: skip
    started = time.perf_counter()
    replay = build_replay(
        backbone, train, config.exploration_noise, seed=seed, actor_actions=actor_actions
    )
    replay_seconds = time.perf_counter() - started
    result = agent.train_critics(replay, progress=progress)
    return Critics(agent.critic, result, replay_seconds)


@dataclass
class Polished:
    """The polished backbone, its training log and the loss weights at the pretrained model's
    predictions on ``train`` (``[n, K]``)."""

    model: MultiTaskModel
    result: TrainResult
    initial_weights: np.ndarray


def polish(
    backbone: MultiTaskModel,
    critic: MultiCritic | None,
    splits: Splits,
    config: RMTLConfig = PRESETS["paper"],
    train: TrainConfig = TrainConfig(),
    seed: int = 0,
    progress: bool = False,
    actor_actions: np.ndarray | None = None,
) -> Polished:
    """Stage 4: retrain a copy of ``backbone`` with per-sample loss weights
    ``w_k = 1 - lambda * Q_k(s, pi_k(s))`` (or ``config.weight_variant``; ``none`` leaves the
    critics out, and ``critic`` may then be None); ``backbone`` is left as it is.
    ``config.polish_lr``, ``config.polish_guard`` and ``config.polish_weighting`` adjust
    ``train``."""
    schedule = polish_schedule(config, train, seed)
    check_model(schedule.weighting, backbone)  # before the critics' pass over train
    if config.weight_variant == "none":
        initial_weights = np.ones((len(splits.train), backbone.num_tasks), np.float32)
        weights = None
    else:
        critic = polish_critics(critic, backbone)
        if actor_actions is None:
            probs = predict(backbone, splits.train, precision=train.precision)
        else:
            probs = actor_actions
        initial_weights = loss_weights_on(critic, config, splits.train, probs)
        weights = polish_loss_weights(critic, config)
    seed_everything(seed)
    polished = copy_backbone(backbone)
    result = train_model(
        polished, splits.train, splits.val, schedule, loss_weights=weights,
        progress=progress, description="polish",
    )  # fmt: skip
    return Polished(polished, result, initial_weights)


def polish_schedule(config: RMTLConfig, train: TrainConfig, seed: int) -> TrainConfig:
    """The polish's training settings: ``train`` with RMTL's polish learning rate, guard and
    weighting where they are set."""
    return replace(
        train,
        lr=train.lr if config.polish_lr is None else config.polish_lr,
        keep_initial=config.polish_guard,
        weighting=train.weighting if config.polish_weighting is None else config.polish_weighting,
        seed=seed,
    )


def copy_backbone(backbone: MultiTaskModel) -> MultiTaskModel:
    """A fresh backbone of the same architecture holding ``backbone``'s weights (built the way a
    checkpoint is loaded, so the random state after it is the same as after loading one)."""
    config = backbone.config.to_dict()
    copy = build_model(
        model_name(backbone), backbone.field_dims, backbone.num_numerical, backbone.num_tasks,
        **config,
    )  # fmt: skip
    copy.load_state_dict(backbone.state_dict())
    return copy.to(model_device(backbone))


@dataclass
class DPLE:
    """The trained SB3 model, its actor as a predictor and what the two phases did."""

    sb3: TD3
    model: MultiTaskModel
    result: DPLEResult


def train_dple(
    splits: Splits,
    config: DPLEConfig = DPLEConfig(),
    backbone_checkpoint: str | Path | None = None,
    backbone: str = "ple",
    model: ModelConfig = ModelConfig(),
    seed: int = 0,
    device: str = "cpu",
    progress: bool = False,
    tensorboard_log: str | Path | None = None,
) -> DPLE:
    """D-PLE on stock SB3 DDPG: the actor starts from ``backbone_checkpoint`` (the pretrained
    PLE; a fresh ``backbone`` without one); critic phase with the actor frozen, then the actor
    phase online on ``SessionRecEnv-v0`` (``agents.dple``)."""
    if splits.streamed:
        raise ValueError("D-PLE steps SessionRecEnv, which holds its split in memory: "
                         "load the data without stream=True")  # fmt: skip
    env = gym.make("SessionRecEnv-v0", dataset=splits.dataset, split="train")
    seed_everything(seed)
    sb3 = make_dple(
        env, config, buffer_size=len(splits.train) + config.actor_steps,
        backbone_checkpoint=backbone_checkpoint, backbone=backbone,
        backbone_kwargs=model.to_dict(), seed=seed, device=str(device),
        tensorboard_log=tensorboard_log,
    )  # fmt: skip
    result = run_dple_phases(sb3, splits.train, config, seed=seed, progress=progress)
    return DPLE(sb3, actor_backbone(sb3), result)


def evaluate(
    models: Mapping[str, MultiTaskModel],
    data: Split,
    oracle: bool = True,
    predictions: dict[str, np.ndarray] | None = None,
    precision: str = "fp32",
) -> dict[str, Metrics]:
    """``{name: metrics}`` of each model on ``data`` (AUC, Logloss, session-averaged Logloss per
    task), plus an ``oracle`` row scored from the true probabilities where the data has them.
    ``predictions``, if given, receives each model's ``[n, K]`` test probabilities;
    ``precision``: the models' forward passes (``TrainConfig.precision``)."""
    results: dict[str, Metrics] = {}
    for name, model in models.items():
        probs = predict(model, data, precision=precision)
        if predictions is not None:
            predictions[name] = probs
        results[name] = task_metrics(data.labels, probs, data.session_id, data.tasks)
    ceiling = oracle_metrics(data) if oracle else None
    if ceiling is not None:
        results["oracle"] = ceiling
    return results


@dataclass
class RMTLResult:
    """Everything :func:`run_rmtl` produced."""

    backbone: Fit
    critics: Critics
    polished: Polished
    metrics: dict[str, Metrics] = field(default_factory=dict)


def run_rmtl(
    splits: Splits,
    backbone: str = "ple",
    model: ModelConfig = ModelConfig(),
    train: TrainConfig = TrainConfig(),
    config: RMTLConfig = PRESETS["paper"],
    seed: int = 0,
    device: str = "cpu",
    progress: bool = False,
) -> RMTLResult:
    """The whole method in one call: pretrain, learn critics, polish, evaluate on ``test``."""
    fit = pretrain(backbone, splits, model, train, seed, device, progress)
    # The frozen backbone's actions, computed once.
    probs = predict(fit.model, splits.train, precision=train.precision)
    critics = learn_critics(fit.model, splits.train, config, seed, progress, probs, train)
    polished = polish(fit.model, critics.critic, splits, config, train, seed, progress, probs)
    models = {backbone: fit.model, f"rmtl-{backbone}": polished.model}
    metrics = evaluate(models, splits.test, precision=train.precision)
    return RMTLResult(fit, critics, polished, metrics)
