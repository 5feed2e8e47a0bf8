"""D-PLE: the paper's RL baseline, a PLE actor trained by DDPG, on stock stable-baselines3.

The schedule is the paper's (and the RMTL authors' answer in the official repository's issue #3):
the actor starts from the pretrained backbone and stays **frozen until the critic has
converged**, and only then moves.

1. **Critic phase.** Every logged training transition, with the frozen actor's noisy actions
   (the replay RMTL's critics train on, ``agents.replay.build_replay``), is loaded into SB3's replay
   buffer; SB3's own ``train`` then runs epoch after epoch (``len(replay) / critic_batch_size``
   gradient steps each) until the epoch critic loss converges (RMTL's ``ConvergenceStopper``).
   The actor receives no gradient, and the answers of the frozen actor and its target are looked
   up (:class:`agents.sb3.FrozenActions`) rather than recomputed.
2. **Actor phase.** The actor is released and ``learn`` runs online on ``SessionRecEnv`` with the
   actor's own learning rate (smaller than the critic's), a policy delay and soft target updates;
   the new transitions join the logged ones in the buffer.

SB3's ``DDPG`` is its ``TD3`` with one critic, no target-policy noise and ``policy_delay=1``; D-PLE
uses ``TD3`` with exactly those settings except the policy delay. After training, the actor's
backbone is evaluated as an ordinary multi-task predictor.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch
from stable_baselines3 import TD3
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.logger import Logger, configure
from stable_baselines3.common.noise import NormalActionNoise
from tqdm.auto import tqdm

from agents.domains import at_least, check_domains, within
from agents.models import MultiTaskModel
from agents.replay import build_replay
from agents.rmtl import ConvergenceStopper
from agents.sb3 import BackboneTD3Policy, FrozenActions
from agents.trainer import map_batches, predict
from rmtl_env.data.dataset import SplitData


@dataclass(frozen=True)
class DPLEConfig:
    """D-PLE's settings; gamma, the critic learning rate and the stopper are RMTL's.

    Attributes:
        exploration_noise: std of the Gaussian noise on the logits of the logged transitions'
            actions (RMTL's replay).
        critic_batch_size: minibatch of the critic phase.
        critic_max_epochs: cap on critic-phase epochs.
        stop_rel_tol, stop_patience: the critic has converged when its epoch loss changes by less
            than ``stop_rel_tol`` (relative) for ``stop_patience`` consecutive epochs.
        actor_steps: environment steps of the actor phase.
        actor_lr: the actor's Adam learning rate in the actor phase (below ``critic_lr``).
        policy_delay: critic updates per actor update (and per soft target update) in both phases.
        actor_batch_size: minibatch of the actor phase.
        train_freq, gradient_steps: in the actor phase, ``gradient_steps`` updates every
            ``train_freq`` env steps.
        action_noise: std of SB3's Gaussian exploration noise in the actor phase, in SB3's
            ``[-1, 1]`` action units.
        gamma, tau: discount and soft-update rate (every ``policy_delay`` critic updates).
        critic_lr: the critic's Adam learning rate (SB3's ``learning_rate``).
        critic_embed_dim: embedding size of the critic's ``CategoricalEmbeddingExtractor``.
        critic_net_arch: hidden sizes of the critic MLP.
    """

    exploration_noise: float = field(default=0.3, metadata=within(0))
    critic_batch_size: int = field(default=2048, metadata=at_least())
    critic_max_epochs: int = field(default=100, metadata=at_least())
    stop_rel_tol: float = field(default=0.01, metadata=within(0))
    stop_patience: int = field(default=2, metadata=at_least())
    actor_steps: int = field(default=2_000, metadata=at_least(0))
    actor_lr: float = field(default=1e-6, metadata=within(0, low_open=True))
    policy_delay: int = field(default=2, metadata=at_least())
    actor_batch_size: int = field(default=256, metadata=at_least())
    train_freq: int = field(default=8, metadata=at_least())
    gradient_steps: int = field(default=1, metadata=at_least())
    action_noise: float = field(default=0.1, metadata=within(0))
    gamma: float = field(default=0.95, metadata=within(0, 1, high_open=True))
    tau: float = field(default=0.2, metadata=within(0, 1, low_open=True))
    critic_lr: float = field(default=1e-3, metadata=within(0, low_open=True))
    critic_embed_dim: int = field(default=16, metadata=at_least())
    critic_net_arch: tuple[int, ...] = field(default=(256, 128), metadata=at_least())

    def __post_init__(self) -> None:
        object.__setattr__(self, "critic_net_arch", tuple(int(d) for d in self.critic_net_arch))
        check_domains(self)
        if not self.actor_lr <= self.critic_lr:
            raise ValueError(
                f"DPLEConfig.actor_lr must be in (0, critic_lr={self.critic_lr}], "
                f"got {self.actor_lr}"
            )

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class DPLEResult:
    """What the two phases did."""

    critic_epochs: int
    critic_converged: bool
    critic_history: list[dict[str, float]] = field(default_factory=list)
    critic_seconds: float = 0.0
    actor_updates: int = 0
    actor_seconds: float = 0.0
    env_steps_per_second: float = 0.0
    mean_q_before: float = float("nan")
    mean_q_after: float = float("nan")

    def to_dict(self) -> dict:
        return asdict(self)


class TqdmCallback(BaseCallback):
    """A tqdm bar over environment steps."""

    def __init__(self, total: int, enabled: bool = True) -> None:
        super().__init__()
        self.bar = tqdm(total=total, desc="D-PLE actor phase", disable=not enabled)

    def _on_step(self) -> bool:
        self.bar.update(self.training_env.num_envs)
        return True

    def _on_training_end(self) -> None:
        self.bar.close()


def make_dple(
    env: gym.Env,
    config: DPLEConfig,
    buffer_size: int,
    backbone_checkpoint: str | Path | None = None,
    backbone: str = "ple",
    backbone_kwargs: dict | None = None,
    seed: int = 0,
    device: str = "auto",
    tensorboard_log: str | Path | None = None,
) -> TD3:
    """SB3 DDPG (``TD3`` with one critic and no target noise) on ``env``, its actor a backbone
    loaded from ``backbone_checkpoint`` or a fresh ``backbone`` built with ``backbone_kwargs``."""
    k = int(env.action_space.shape[0])
    model = TD3(
        BackboneTD3Policy,
        env,
        learning_rate=config.critic_lr,
        buffer_size=buffer_size,
        learning_starts=0,  # the buffer starts full of logged transitions
        batch_size=config.actor_batch_size,
        tau=config.tau,
        gamma=config.gamma,
        train_freq=config.train_freq,
        gradient_steps=config.gradient_steps,
        action_noise=NormalActionNoise(np.zeros(k), np.full(k, config.action_noise)),
        policy_delay=config.policy_delay,
        target_policy_noise=0.0,  # DDPG: no target smoothing, one critic
        target_noise_clip=0.0,
        policy_kwargs={
            "backbone": backbone,
            "backbone_kwargs": backbone_kwargs or {},
            "backbone_checkpoint": None
            if backbone_checkpoint is None
            else str(backbone_checkpoint),
            "actor_lr_scale": config.actor_lr / config.critic_lr,
            "features_extractor_kwargs": {"embed_dim": config.critic_embed_dim},
            "net_arch": list(config.critic_net_arch),
            "n_critics": 1,
        },
        seed=seed,
        device=device,
        verbose=0,
    )
    # Without a log folder SB3 would create an empty SB3-<date> folder in the system temp dir on
    # every learn(); a logger with no outputs writes nothing anywhere.
    if tensorboard_log is None:
        model.set_logger(Logger(folder=None, output_formats=[]))
    else:
        model.set_logger(configure(str(tensorboard_log), ["tensorboard"]))
    return model


def load_logged_transitions(model: TD3, replay) -> int:
    """Write every transition of an ``agents.replay.Replay`` into ``model``'s replay buffer, as SB3
    stores them (actions scaled to ``[-1, 1]``, the scalar reward summed over tasks)."""
    buffer, t = model.replay_buffer, replay.transitions
    n = len(t)
    if n > buffer.buffer_size or buffer.n_envs != 1:
        raise ValueError(
            f"the replay buffer holds {buffer.buffer_size} x {buffer.n_envs}; need {n} x 1"
        )
    buffer.observations["categorical"][:n, 0] = t.categorical
    buffer.observations["numerical"][:n, 0] = t.numerical
    buffer.next_observations["categorical"][:n, 0] = t.next_categorical
    buffer.next_observations["numerical"][:n, 0] = t.next_numerical
    buffer.actions[:n, 0] = model.policy.scale_action(t.action)
    buffer.rewards[:n, 0] = t.rewards.sum(1)
    buffer.dones[:n, 0] = t.terminated
    buffer.timeouts[:n, 0] = False
    buffer.pos, buffer.full = n % buffer.buffer_size, n == buffer.buffer_size
    return n


def mean_q_at_actor(
    model: TD3, data: SplitData, probs: np.ndarray | None = None, batch_size: int = 16384
) -> float:
    """The critic's mean ``Q(s, pi(s))`` over ``data``'s rows (actor and critic in eval mode);
    ``probs``: the actor's probabilities on those rows when already known (a frozen actor)."""
    policy = model.policy
    policy.set_training_mode(False)

    @torch.no_grad()
    def q(categorical, numerical, *known):
        obs = {"categorical": categorical.float(), "numerical": numerical}
        actions = known[0] if known else policy.actor(obs)  # SB3's [-1, 1] units
        return policy.critic.q1_forward(obs, actions)

    arrays = (data.categorical, data.numerical)
    if probs is not None:
        arrays += (policy.scale_action(np.asarray(probs)).astype(np.float32),)
    return float(map_batches(q, policy.device, batch_size, *arrays).mean())


def critic_phase(
    model: TD3, n: int, config: DPLEConfig, progress: bool = True
) -> tuple[list[dict[str, float]], bool, float]:
    """Epochs of SB3 critic updates over the ``n`` logged transitions in ``model``'s buffer until
    the epoch loss converges; ``(history, converged, seconds)``."""
    steps = max(1, n // config.critic_batch_size)
    stopper = ConvergenceStopper(config.stop_rel_tol, config.stop_patience)
    history, converged, started = [], False, time.perf_counter()
    bar = tqdm(range(1, config.critic_max_epochs + 1), desc="D-PLE critic phase",
               disable=not progress)  # fmt: skip
    for epoch in bar:
        model.train(gradient_steps=steps, batch_size=config.critic_batch_size)
        loss = float(model.logger.name_to_value["train/critic_loss"])
        history.append({"epoch": epoch, "critic_loss": loss})
        bar.set_postfix(critic_loss=f"{loss:.5f}")
        if stopper.update(loss):
            converged = True
            break
    return history, converged, time.perf_counter() - started


def train_dple(
    model: TD3,
    train: SplitData,
    config: DPLEConfig,
    seed: int = 0,
    progress: bool = True,
) -> DPLEResult:
    """The two phases on ``model`` (from :func:`make_dple`): the critic on ``train``'s logged
    sessions with the actor frozen, to convergence; then the actor online on the env."""
    policy = model.policy
    backbone = policy.actor.backbone
    clean = predict(backbone, train)
    replay = build_replay(backbone, train, config.exploration_noise, seed=seed, actor_actions=clean)
    n = load_logged_transitions(model, replay)

    # Phase 1: critic to convergence, actor frozen (no gradient; answers looked up).
    table = FrozenActions(train.categorical, train.numerical, policy.scale_action(clean))
    policy.actor.freeze(table)
    policy.actor_target.freeze(table)
    history, converged, critic_seconds = critic_phase(model, n, config, progress)
    # The target saw soft updates toward identical weights; make it exactly the actor again.
    policy.actor_target.load_state_dict(policy.actor.state_dict())
    policy.actor.unfreeze()
    policy.actor_target.unfreeze()
    mean_q_before = mean_q_at_actor(model, train, clean)  # the frozen actor's actions: known

    # Phase 2: the actor moves, online, at its own learning rate.
    updates_before, started = model._n_updates, time.perf_counter()
    if config.actor_steps > 0:
        model.learn(
            config.actor_steps,
            callback=TqdmCallback(config.actor_steps, progress),
            reset_num_timesteps=True,
            tb_log_name="dple",
        )
    actor_seconds = time.perf_counter() - started
    updates_after = model._n_updates
    d = config.policy_delay
    actor_updates = updates_after // d - updates_before // d  # SB3 steps the actor when n % d == 0
    return DPLEResult(
        critic_epochs=len(history),
        critic_converged=converged,
        critic_history=history,
        critic_seconds=critic_seconds,
        actor_updates=int(actor_updates),
        actor_seconds=actor_seconds,
        env_steps_per_second=config.actor_steps / actor_seconds if actor_seconds > 0 else 0.0,
        mean_q_before=mean_q_before,
        mean_q_after=mean_q_at_actor(model, train),
    )


def actor_backbone(model: TD3) -> MultiTaskModel:
    """The trained actor's backbone, in eval mode, usable as an ordinary predictor."""
    return model.policy.actor.backbone.eval()
