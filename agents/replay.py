"""The replay RMTL's critics (and D-PLE's critic phase) learn from: every logged transition of a
split, with a frozen actor's actions, built in one batched pass.

Because the session MDP's transitions are deterministic and the actor is frozen while the critics
learn, the whole replay is known in advance: the actor scores every row once, exploration noise is
drawn once, and the actor's action at every next state is a row lookup, never a forward pass.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np
import scipy.special
import torch

from agents.models import MultiTaskModel
from agents.trainer import model_device, predict
from rmtl_env.data.dataset import SplitData
from rmtl_env.rewards import DEFAULT_PROB_CLIP
from rmtl_env.transitions import Transitions, build_transitions

_DTYPES = {np.dtype(bool): torch.bool, np.dtype(np.int64): torch.long}


@dataclass(frozen=True)
class Replay:
    """A split's transitions as NumPy arrays (``transitions``) and as tensors on the actor's
    device (``tensors``, the same ``Transitions`` type, converted once), plus
    ``next_action`` ``[n, K]``: the noiseless actor's action at every next state."""

    transitions: Transitions
    tensors: Transitions
    next_action: torch.Tensor

    def __len__(self) -> int:
        return len(self.transitions)


def to_tensors(transitions: Transitions, device: torch.device | str) -> Transitions:
    """``transitions`` with every field a tensor on ``device`` (ids int64, flags bool, the
    rest float32)."""

    def tensor(array: np.ndarray) -> torch.Tensor:
        dtype = _DTYPES.get(np.asarray(array).dtype, torch.float32)
        return torch.as_tensor(np.array(array), dtype=dtype, device=device)

    return Transitions(
        **{f.name: tensor(getattr(transitions, f.name)) for f in fields(Transitions)}
    )


def noisy_actions(
    clean: np.ndarray, exploration_noise: float, seed: int, prob_clip: float = DEFAULT_PROB_CLIP
) -> np.ndarray:
    """``clean`` probabilities with Gaussian noise of std ``exploration_noise`` on their logits."""
    if exploration_noise <= 0:
        return clean
    # Noise in logit space: additive noise on probabilities near 0 (CTCVR rates are ~1 %) would
    # clip most actions to exactly 0 and turn each positive label into a -16 reward.
    rng = np.random.default_rng(seed)
    logits = scipy.special.logit(np.clip(clean, prob_clip, 1.0 - prob_clip).astype(np.float64))
    return scipy.special.expit(logits + rng.normal(0.0, exploration_noise, clean.shape)).astype(
        np.float32
    )


def build_replay(
    actor: MultiTaskModel,
    data: SplitData,
    exploration_noise: float = 0.0,
    seed: int = 0,
    prob_clip: float = DEFAULT_PROB_CLIP,
    actor_actions: np.ndarray | None = None,
) -> Replay:
    """Every transition of ``data`` with the actor's (optionally noisy) actions, in one pass.

    The rewards are computed at exactly the stored, noisy action; ``next_action`` is the
    noiseless actor's action at each next state. Pass ``actor_actions`` (``predict(actor,
    data)``) when they are already computed, to skip the actor's forward pass.
    """
    clean = predict(actor, data) if actor_actions is None else actor_actions  # [n, K]
    actions = noisy_actions(clean, exploration_noise, seed, prob_clip)
    transitions = build_transitions(data, actions=actions, prob_clip=prob_clip)
    device = model_device(actor)
    next_action = torch.as_tensor(
        np.array(clean[transitions.next_index]), dtype=torch.float32, device=device
    )
    return Replay(transitions, to_tensors(transitions, device), next_action)
