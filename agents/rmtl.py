"""RMTL: multi-critic DDPG whose critics weight each sample's per-task loss (Liu et al., WWW 2023).

Three stages (paper section 4, official ``SLmain.py`` / ``RLmain.py``):

1. pretrain a multi-task backbone (``agents.trainer``);
2. learn K task critics by TD on the logged sessions, the backbone as the (frozen) actor:
   ``y_k = r_k + gamma * (1 - terminated) * Q~_k(s', pi~_k(s'))``, soft target updates at rate tau;
3. polish: retrain the backbone with ``sum_k mean(w_k * BCE_k)``, ``w_k = 1 - lambda * Q_k(s, pi_k(s))``.

Where the official code is buggy we do not follow it: the reward is computed at exactly the action
stored in the replay (the official code stores ``a`` and rewards ``(a + 1) / 2``); categorical ids
are never z-scored; critics are in eval mode when they produce weights; the critic stage runs until
its TD loss converges (the official stopper is never called). Because the actor is frozen during
the critic stage, its actions on every next state are computed once, not at every step.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Literal, get_args

import numpy as np
import torch
from tqdm.auto import tqdm

from agents import distributed
from agents.critic import CriticConfig, MultiCritic
from agents.domains import at_least, check_domains, within
from agents.models import MultiTaskModel
from agents.models.layers import dropout_masks
from agents.replay import Replay, StreamedReplay, TransitionBatch
from agents.runtime import RECORDED_IF_SET
from agents.trainer import LossWeights, Split, adam, autocast, map_split, model_device
from agents.weighting import Weighting, check_weighting

WeightVariant = Literal["rmtl", "cw", "wl", "nlc", "none"]
WEIGHT_VARIANTS: tuple[str, ...] = get_args(WeightVariant)
CONSTANT_WEIGHT = 0.5  # the official code's CW ablation ("method 2")


@dataclass(frozen=True)
class RMTLConfig:
    """Every RMTL hyper-parameter; the defaults are the paper's (``PRESETS``).

    Attributes:
        gamma: discount of the session MDP (paper 0.95; official code 0.9).
        lam: lambda in ``w = 1 - lambda * Q`` (paper 0.7).
        tau: soft target-update rate (0.2 in both).
        target_update_interval: critic steps between soft updates (official: 2).
        critic_lr, actor_lr: Adam learning rates (1e-3).
        critic_batch_size: critic minibatch (official 2048).
        exploration_noise: std of the Gaussian noise added to the logits of the actor's actions
            when the replay is built; 0 replays the actor's own predictions.
        critic_max_epochs: cap on critic epochs when the stopper decides.
        critic_epochs: train exactly this many critic epochs, no stopper (official: 96).
        stop_rel_tol, stop_patience: the critic has converged when the epoch TD loss changes by
            less than ``stop_rel_tol`` (relative) for ``stop_patience`` consecutive epochs.
        actor_update: also take the paper's DDPG actor step (maximise ``sum_k Q_k(s, pi_k(s))``)
            during the critic stage.
        weight_variant: ``rmtl`` (1 - lambda Q), ``cw`` (constant 0.5), ``wl`` (1 - lambda y Q) or
            ``nlc`` (-Q): the paper's ablations; ``none`` (weight 1, the critics unused): the
            polish is a plain retraining, the control of the loss balancers' comparison.
        normalize_weights: divide each task's weights by their batch mean.
        polish_lr: the polish's Adam learning rate; None keeps the pretraining one (paper and
            official code: the same 1e-3, with a fresh optimiser).
        polish_guard: the pretrained backbone competes in the polish's early stopping (epoch 0),
            so the polish can only keep or improve its validation AUC. Off in the paper.
        polish_weighting: how the polish weighs its K (critic-weighted) task losses
            (``TrainConfig.weighting``: ``equal`` or an adaptive balancer, so RMTL + UPGrad is
            ``upgrad``); None keeps the pretraining's.
        critic: the critics' dimensions and whether they share the state encoder.
        seed: seeds exploration noise and minibatch order.
    """

    gamma: float = field(default=0.95, metadata=within(0, 1, high_open=True))
    lam: float = field(default=0.7, metadata=within(0))
    tau: float = field(default=0.2, metadata=within(0, 1, low_open=True))
    target_update_interval: int = field(default=2, metadata=at_least())
    critic_lr: float = field(default=1e-3, metadata=within(0, low_open=True))
    actor_lr: float = field(default=1e-3, metadata=within(0, low_open=True))
    critic_batch_size: int = field(default=2048, metadata=at_least())
    exploration_noise: float = field(default=0.3, metadata=within(0))
    critic_max_epochs: int = field(default=100, metadata=at_least())
    critic_epochs: int | None = field(default=None, metadata=at_least())
    stop_rel_tol: float = field(default=0.01, metadata=within(0))
    stop_patience: int = field(default=2, metadata=at_least())
    actor_update: bool = False
    weight_variant: WeightVariant = "rmtl"
    normalize_weights: bool = False
    polish_lr: float | None = field(default=None, metadata=within(0, low_open=True))
    polish_guard: bool = False
    polish_weighting: Weighting | None = field(default=None, metadata=RECORDED_IF_SET)
    critic: CriticConfig = field(default_factory=CriticConfig)
    seed: int = 0

    def __post_init__(self) -> None:
        check_domains(self)
        if self.polish_weighting is not None:
            check_weighting(self.polish_weighting)
        if isinstance(self.critic, dict):
            object.__setattr__(self, "critic", CriticConfig(**self.critic))
        if self.weight_variant not in WEIGHT_VARIANTS:
            raise ValueError(
                f"weight_variant must be one of {WEIGHT_VARIANTS}, got {self.weight_variant!r}"
            )

    def to_dict(self) -> dict:
        return asdict(self)


PRESETS: dict[str, RMTLConfig] = {
    # The paper: gamma 0.95, lambda 0.7, tau 0.2, shared-bottom critics trained until their TD
    # loss converges.
    "paper": RMTLConfig(),
    # The official code where it differs from the paper (without its bugs): gamma 0.9, a fixed 96
    # critic epochs, K independent critics.
    "official": RMTLConfig(gamma=0.9, critic_epochs=96, critic=CriticConfig(independent=True)),
}
"""RMTL's presets; derive variants with ``dataclasses.replace(PRESETS["paper"], lam=0.3)``."""


# --- The math, as small functions -------------------------------------------------------------


def td_target(
    rewards: torch.Tensor, terminated: torch.Tensor, next_q: torch.Tensor, gamma: float
) -> torch.Tensor:
    """``y_k = r_k + gamma * (1 - terminated) * Q~_k(s', a'_k)``; shapes ``[B, K]``, ``[B]``, ``[B, K]``."""
    return rewards + gamma * (1.0 - terminated.float()).unsqueeze(-1) * next_q


@torch.no_grad()
def soft_update(target: torch.nn.Module, source: torch.nn.Module, tau: float) -> None:
    """``theta' <- tau * theta + (1 - tau) * theta'`` for every parameter and buffer."""
    for t, s in zip(target.state_dict().values(), source.state_dict().values(), strict=True):
        if t.dtype.is_floating_point:
            t.lerp_(s, tau)
        else:
            t.copy_(s)


def loss_weights(
    q: torch.Tensor,
    labels: torch.Tensor,
    lam: float,
    variant: str = "rmtl",
    normalize: bool = False,
) -> torch.Tensor:
    """Per-sample, per-task loss weights from critic values ``q`` ``[B, K]``.

    ``rmtl``: ``1 - lam * Q``; ``wl``: ``1 - lam * y * Q`` (weights only the positives); ``nlc``:
    ``-Q`` (no linear combination); ``cw``: the constant 0.5; ``none``: 1. ``normalize`` rescales each task's
    weights to batch mean 1.
    """
    if variant == "rmtl":
        weights = 1.0 - lam * q
    elif variant == "wl":
        weights = 1.0 - lam * labels * q
    elif variant == "nlc":
        weights = -q
    elif variant == "cw":
        weights = torch.full_like(q, CONSTANT_WEIGHT)
    elif variant == "none":
        weights = torch.ones_like(q)
    else:
        raise ValueError(f"variant must be one of {WEIGHT_VARIANTS}, got {variant!r}")
    if normalize:
        weights = weights / weights.mean(0, keepdim=True).clamp_min(1e-8)
    return weights


class ConvergenceStopper:
    """Stops when the monitored loss changes by less than ``rel_tol`` (relative to the previous
    epoch) for ``patience`` consecutive epochs."""

    def __init__(self, rel_tol: float, patience: int) -> None:
        self.rel_tol, self.patience = rel_tol, patience
        self.previous: float | None = None
        self.calm_epochs = 0

    def update(self, loss: float) -> bool:
        """Record one epoch's loss; True when training should stop."""
        if self.previous is not None:
            change = abs(loss - self.previous) / max(abs(self.previous), 1e-12)
            self.calm_epochs = self.calm_epochs + 1 if change < self.rel_tol else 0
        self.previous = loss
        return self.calm_epochs >= self.patience


# --- The agent -----------------------------------------------------------------------------------


@dataclass
class CriticTrainingResult:
    """Per-epoch log of the critic stage and whether the stopper ended it."""

    epochs: int
    converged: bool
    seconds: float
    history: list[dict[str, float]] = field(default_factory=list)


class RMTLAgent:
    """An actor (any backbone), K critics, and their target copies.

    Args:
        actor: a pretrained backbone; it is not modified unless ``config.actor_update``.
        config: RMTL hyper-parameters.
        critic: critics to start from (e.g. trained with another backbone); fresh ones otherwise.
        precision, dropout_masks: the critic stage's forward passes, optimisers and dropout
            masks, as the backbone's training (``TrainConfig.precision`` and ``mask_source``).
    """

    def __init__(
        self,
        actor: MultiTaskModel,
        config: RMTLConfig,
        critic: MultiCritic | None = None,
        precision: str = "fp32",
        dropout_masks: str = "bernoulli",
    ) -> None:
        self.config = config
        self.precision, self.dropout_masks = precision, dropout_masks
        self.device = model_device(actor)
        self.actor = actor
        self.critic = critic or MultiCritic(
            actor.field_dims, actor.num_numerical, actor.num_tasks, config.critic
        )
        self.critic.to(self.device)
        if self.critic.config.share_embedding:
            self.critic.attach(getattr(actor, "embedding", None))
        if self.critic.num_tasks != actor.num_tasks:
            raise ValueError(
                f"critic has {self.critic.num_tasks} heads but the actor {actor.num_tasks} tasks"
            )
        self.actor_target = copy.deepcopy(actor).eval().requires_grad_(False)
        self.critic_target = copy.deepcopy(self.critic).eval().requires_grad_(False)
        self.critic_optimizer = adam(self.critic.parameters(), config.critic_lr, precision)
        self.actor_optimizer = adam(self.actor.parameters(), config.actor_lr, precision)
        self.steps = 0
        # What the steps call: the networks themselves, or their DDP wrappers while
        # ``train_critics`` runs under torch.distributed (gradients averaged over ranks).
        self.critic_network: torch.nn.Module = self.critic
        self.actor_network: torch.nn.Module = self.actor

    @contextmanager
    def numerics(self) -> Iterator[None]:
        """The forward passes of a critic-stage step: ``precision`` and ``dropout_masks``."""
        with dropout_masks(self.dropout_masks), autocast(self.precision, self.device):
            yield

    def critic_step(self, batch: TransitionBatch) -> tuple[torch.Tensor, torch.Tensor]:
        """One TD step on a minibatch (this rank's share of it under torch.distributed);
        returns the minibatch's per-task TD loss and mean Q, ``[K]`` each."""
        with torch.no_grad(), self.numerics():
            if self.config.actor_update:
                next_action = self.actor_target(batch.next_categorical, batch.next_numerical)
            else:
                next_action = batch.next_action  # frozen actor: computed once in build_replay
            next_q = self.critic_target(batch.next_categorical, batch.next_numerical, next_action)
            y = td_target(batch.rewards, batch.terminated, next_q.float(), self.config.gamma)
        with self.numerics():
            q = self.critic_network(batch.categorical, batch.numerical, batch.action)
        q = q.float()  # the TD loss in float32
        td_loss = distributed.batch_mean((q - y) ** 2, batch.rows)  # [K]
        self.critic_optimizer.zero_grad(set_to_none=True)
        td_loss.sum().backward()
        self.critic_optimizer.step()
        return td_loss.detach(), distributed.batch_mean(q.detach(), batch.rows)

    def actor_step(self, batch: TransitionBatch) -> None:
        """The paper's DDPG actor step: ascend ``sum_k Q_k(s, pi_k(s))`` with the critics fixed."""
        # The critics are fixed here: their own forward (not DDP's), and no gradients for them.
        self.critic.eval().requires_grad_(False)
        self.actor.train()
        with self.numerics():
            actions = self.actor_network(batch.categorical, batch.numerical)
            q = self.critic(batch.categorical, batch.numerical, actions).float().sum(1)
        loss = -distributed.batch_mean(q, batch.rows)
        self.actor_optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.actor_optimizer.step()
        self.critic.train().requires_grad_(True)

    def train_critics(
        self,
        replay: Replay | StreamedReplay,
        progress: bool = True,
        on_epoch: Callable[[dict], None] | None = None,
    ) -> CriticTrainingResult:
        """Train the critics on ``replay`` until convergence (or a fixed number of epochs).

        Under torch.distributed every rank draws the same permutation and takes its share of
        each global batch; DDP averages the gradients and the epoch's TD loss is summed over
        ranks, so every rank takes the same stopping decision."""
        config = self.config
        fixed = config.critic_epochs
        epochs = fixed or config.critic_max_epochs
        stopper = ConvergenceStopper(config.stop_rel_tol, config.stop_patience)
        generator = torch.Generator().manual_seed(config.seed)  # in-memory replay's order
        rng = np.random.default_rng(config.seed)  # a streamed replay's block shuffling
        history: list[dict[str, float]] = []
        converged, start = False, time.perf_counter()
        if not config.actor_update:
            self.actor.eval()
        self.critic_network = distributed.wrap(self.critic)  # broadcasts rank 0's critics
        distributed.broadcast_state(self.critic_target)
        if config.actor_update:
            self.actor_network = distributed.wrap(self.actor)
            distributed.broadcast_state(self.actor_target)
        shuffler = rng if isinstance(replay, StreamedReplay) else generator
        bar = tqdm(range(1, epochs + 1), desc="critics", disable=not progress)
        for epoch in bar:
            self.critic.train()
            batches = replay.minibatches(config.critic_batch_size, shuffler)
            td_sum = torch.zeros(self.critic.num_tasks, device=self.device)
            q_sum = torch.zeros(self.critic.num_tasks, device=self.device)
            for batch in batches:
                td_loss, mean_q = self.critic_step(batch)
                if config.actor_update:
                    self.actor_step(batch)
                self.steps += 1
                if self.steps % config.target_update_interval == 0:
                    soft_update(self.critic_target, self.critic, config.tau)
                    if config.actor_update:
                        soft_update(self.actor_target, self.actor, config.tau)
                share = batch.rows / distributed.world_size()  # this rank's weight in the sum
                td_sum += td_loss * share
                q_sum += mean_q * share
            td_sum, q_sum = distributed.all_reduce_sum(td_sum), distributed.all_reduce_sum(q_sum)
            td, mean_q = (td_sum / len(replay)).tolist(), (q_sum / len(replay)).tolist()
            record = {"epoch": epoch, "td_loss": float(sum(td))}
            for k in range(self.critic.num_tasks):
                record[f"td_loss_{k}"], record[f"mean_q_{k}"] = td[k], mean_q[k]
            history.append(record)
            bar.set_postfix(td_loss=f"{record['td_loss']:.5f}")
            if on_epoch is not None:
                on_epoch(record)
            if fixed is None and stopper.update(record["td_loss"]):
                converged = True
                break
        self.critic.eval()
        self.critic_network, self.actor_network = self.critic, self.actor
        return CriticTrainingResult(len(history), converged, time.perf_counter() - start, history)

    def polish_weights(self) -> LossWeights:
        """The polish stage's per-sample, per-task loss weights (critics frozen, eval mode)."""
        return polish_loss_weights(self.critic, self.config)

    def q_values(self, data: Split, actions: np.ndarray, batch_size: int = 16384) -> np.ndarray:
        """``Q_k(s, a_k)`` for every row of ``data`` at ``actions`` ``[n, K]``."""
        self.critic.eval()
        actions = np.asarray(actions, dtype=np.float32)
        return map_split(self.critic, self.device, batch_size, data, actions)

    def polish_weights_on(
        self, data: Split, probs: np.ndarray, batch_size: int = 16384
    ) -> np.ndarray:
        """The polish loss weights ``[n, K]`` of every row of ``data`` at predictions ``probs``
        (``loss_weights_on``)."""
        return loss_weights_on(self.critic, self.config, data, probs, batch_size)


# --- The polish's weights, from trained critics alone ----------------------------------------


def polish_critics(critic: MultiCritic, actor: MultiTaskModel) -> MultiCritic:
    """``critic`` on ``actor``'s device, reading the actor's embedding if it shares it."""
    critic.to(model_device(actor))
    if critic.config.share_embedding:
        critic.attach(getattr(actor, "embedding", None))
    return critic


def polish_loss_weights(critic: MultiCritic, config: RMTLConfig) -> LossWeights:
    """The polish stage's per-sample, per-task loss weights ``w_k = 1 - lambda * Q_k(s, pi_k(s))``
    (or ``config.weight_variant``) at the model's current predictions; the critics are frozen
    and in eval mode."""
    critic.eval().requires_grad_(False)

    def weights(categorical, numerical, probs, labels):
        # Q_k(s, pi_k(s)) at the current predictions; float32 weights under a bf16 autocast.
        q = critic(categorical, numerical, probs).float()
        return loss_weights(q, labels, config.lam, config.weight_variant, config.normalize_weights)

    return weights


def loss_weights_on(
    critic: MultiCritic,
    config: RMTLConfig,
    data: Split,
    probs: np.ndarray,
    batch_size: int = 16384,
) -> np.ndarray:
    """The polish loss weights ``[n, K]`` of every row of ``data`` at predictions ``probs``,
    batch by batch as in training (so ``normalize_weights`` normalises per batch)."""
    probs = np.asarray(probs, dtype=np.float32)
    device = next(critic.parameters()).device
    weights = polish_loss_weights(critic, config)
    return map_split(weights, device, batch_size, data, probs, data.labels)
