"""D-PLE: the paper's RL baseline, stock stable-baselines3 DDPG with a PLE actor on SessionRecEnv.

The actor starts from a pretrained backbone (or from scratch) and is updated only through the
critic (``max_a Q(s, a)``); the reward is the env's scalar reward, the sum of the per-task negative
BCEs. After training, the actor's backbone is evaluated as an ordinary multi-task predictor.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path

import gymnasium as gym
import numpy as np
from stable_baselines3 import DDPG
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.logger import Logger
from stable_baselines3.common.noise import NormalActionNoise
from tqdm.auto import tqdm

from agents.models import MultiTaskModel
from agents.sb3 import BackboneTD3Policy


@dataclass
class DPLEConfig:
    """Stock DDPG settings for D-PLE; gamma and the learning rate are RMTL's, the rest SB3's.

    Attributes:
        total_steps: environment steps.
        learning_starts: steps collected with the (noisy) actor before the first update.
        buffer_size: replay buffer capacity.
        batch_size: minibatch of each gradient step.
        train_freq, gradient_steps: one round of ``gradient_steps`` updates every ``train_freq``
            env steps.
        action_noise: std of SB3's Gaussian action noise, in SB3's ``[-1, 1]`` action units.
        gamma, tau, learning_rate: DDPG's discount, soft-update rate and Adam learning rate.
        critic_embed_dim: embedding size of the critic's ``CategoricalEmbeddingExtractor``.
        critic_net_arch: hidden sizes of the critic MLP.
    """

    total_steps: int = 5_000
    learning_starts: int = 1_000
    buffer_size: int = 100_000
    batch_size: int = 256
    train_freq: int = 4
    gradient_steps: int = 1
    action_noise: float = 0.1
    gamma: float = 0.95
    tau: float = 0.005
    learning_rate: float = 1e-3
    critic_embed_dim: int = 16
    critic_net_arch: tuple[int, ...] = (256, 128)

    def to_dict(self) -> dict:
        return asdict(self)


class TqdmCallback(BaseCallback):
    """A tqdm bar over environment steps."""

    def __init__(self, total: int, enabled: bool = True) -> None:
        super().__init__()
        self.bar = tqdm(total=total, desc="D-PLE (SB3 DDPG)", disable=not enabled)

    def _on_step(self) -> bool:
        self.bar.update(self.training_env.num_envs)
        return True

    def _on_training_end(self) -> None:
        self.bar.close()


def make_dple(
    env: gym.Env,
    config: DPLEConfig,
    backbone_checkpoint: str | Path | None = None,
    backbone: str = "ple",
    backbone_kwargs: dict | None = None,
    seed: int = 0,
    device: str = "auto",
    tensorboard_log: str | Path | None = None,
) -> DDPG:
    """Stock SB3 ``DDPG`` on ``env`` with a backbone actor: loaded from ``backbone_checkpoint``, or
    a fresh ``backbone`` built with ``backbone_kwargs`` (``ModelConfig`` overrides)."""
    k = int(env.action_space.shape[0])
    model = DDPG(
        BackboneTD3Policy,
        env,
        learning_rate=config.learning_rate,
        buffer_size=config.buffer_size,
        learning_starts=config.learning_starts,
        batch_size=config.batch_size,
        tau=config.tau,
        gamma=config.gamma,
        train_freq=config.train_freq,
        gradient_steps=config.gradient_steps,
        action_noise=NormalActionNoise(np.zeros(k), np.full(k, config.action_noise)),
        policy_kwargs={
            "backbone": backbone,
            "backbone_kwargs": backbone_kwargs or {},
            "backbone_checkpoint": None
            if backbone_checkpoint is None
            else str(backbone_checkpoint),
            "features_extractor_kwargs": {"embed_dim": config.critic_embed_dim},
            "net_arch": list(config.critic_net_arch),
        },
        tensorboard_log=None if tensorboard_log is None else str(tensorboard_log),
        seed=seed,
        device=device,
        verbose=0,
    )
    if tensorboard_log is None:
        # Without a log folder SB3 would create an empty SB3-<date> folder in the system temp dir
        # on every learn(); a logger with no outputs writes nothing anywhere.
        model.set_logger(Logger(folder=None, output_formats=[]))
    return model


def train_dple(model: DDPG, config: DPLEConfig, progress: bool = True) -> float:
    """Run ``model.learn`` for ``config.total_steps``; returns env steps per second."""
    start = time.perf_counter()
    model.learn(
        config.total_steps, callback=TqdmCallback(config.total_steps, progress), tb_log_name="dple"
    )
    return config.total_steps / (time.perf_counter() - start)


def actor_backbone(model: DDPG) -> MultiTaskModel:
    """The trained actor's backbone, in eval mode, usable as an ordinary predictor."""
    return model.policy.actor.backbone.eval()
