"""The replay RMTL's critics (and D-PLE's critic phase) learn from: every logged transition of a
split, with a frozen actor's actions, built in one batched pass.

Because the session MDP's transitions are deterministic and the actor is frozen while the critics
learn, the whole replay is known in advance: the actor scores every row once, exploration noise is
drawn once, and the actor's action at every next state is a row lookup, never a forward pass.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, fields

import numpy as np
import scipy.special
import torch

from agents import distributed
from agents.batching import epoch_shares
from agents.models import MultiTaskModel
from agents.trainer import Split, model_device, predict
from rmtl_env.data.dataset import SplitData
from rmtl_env.data.stream import StreamedSplit
from rmtl_env.rewards import DEFAULT_PROB_CLIP
from rmtl_env.transitions import Transitions, build_transitions

_DTYPES = {np.dtype(bool): torch.bool, np.dtype(np.int64): torch.long}


@dataclass(frozen=True)
class TransitionBatch:
    """This rank's share of one minibatch of transitions, as tensors, and the global
    minibatch's row count (``rows``)."""

    categorical: torch.Tensor
    numerical: torch.Tensor
    action: torch.Tensor
    rewards: torch.Tensor
    next_categorical: torch.Tensor
    next_numerical: torch.Tensor
    terminated: torch.Tensor
    next_action: torch.Tensor
    rows: int


_BATCH_FIELDS = [f.name for f in fields(TransitionBatch) if f.name != "rows"]


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

    def minibatches(self, batch_size: int, generator: torch.Generator) -> Iterator[TransitionBatch]:
        """One epoch of minibatches in a fresh random order drawn from ``generator``."""
        device = self.next_action.device
        order = torch.randperm(len(self), generator=generator).to(device)
        t = self.tensors
        for i in range(0, len(order), batch_size):
            batch = order[i : i + batch_size]
            idx = distributed.shard(batch)  # this rank's share of the global batch
            yield TransitionBatch(
                t.categorical[idx], t.numerical[idx], t.action[idx], t.rewards[idx],
                t.next_categorical[idx], t.next_numerical[idx], t.terminated[idx],
                self.next_action[idx], len(batch),
            )  # fmt: skip


class StreamedReplay:
    """The replay of a streamed split, built block by block every epoch from the split's
    Parquet blocks and the actions computed once (``actions``: the stored, noisy ones;
    ``clean``: the noiseless actor's, for the next states). Holds ``[n, K]`` actions twice and
    one row per block (its first, the next state of the previous block's last row), never the
    features of the split."""

    def __init__(
        self,
        data: StreamedSplit,
        actions: np.ndarray,
        clean: np.ndarray,
        prob_clip: float,
        device: torch.device,
    ) -> None:
        self.data, self.actions, self.clean = data, actions, clean
        self.prob_clip, self.device = prob_clip, device
        self.blocks = data.blocks()
        self.heads = [data.read_head(b) for b in self.blocks[1:]] + [None]

    def __len__(self) -> int:
        return len(self.data)

    def block_transitions(self, k: int) -> dict[str, np.ndarray]:
        """The transitions of block ``k``'s rows (equal to ``build_transitions`` on the whole
        split), with the noiseless actor's action at each next state."""
        rows, head = self.data.read(self.blocks[k]), self.heads[k]
        parts = [rows] if head is None else [rows, head]  # head: the next state across blocks
        joined = {f: np.concatenate([getattr(p, f) for p in parts]) for f in vars(rows)}
        session = joined["session_id"]
        change = np.flatnonzero(np.diff(session)) + 1
        block = SplitData(
            name=self.data.name, session_id=session, timestamp=np.zeros(len(session), np.int64),
            categorical=joined["categorical"], numerical=joined["numerical"],
            labels=joined["labels"], true_probs=None,
            session_starts=np.concatenate([[0], change, [len(session)]]).astype(np.int64),
            tasks=self.data.tasks,
        )  # fmt: skip
        index = joined["index"]
        t = build_transitions(block, actions=self.actions[index], prob_clip=self.prob_clip)
        n = len(rows)
        out = {f: getattr(t, f)[:n] for f in _BATCH_FIELDS if f != "next_action"}
        out["next_action"] = self.clean[index[t.next_index[:n]]]
        return out

    def minibatches(self, batch_size: int, rng: np.random.Generator) -> Iterator[TransitionBatch]:
        """One epoch of block-shuffled minibatches (``agents.batching.epoch_shares``)."""
        shares = epoch_shares(self.data, self.block_transitions, batch_size, rng,
                              distributed.rank(), distributed.world_size())  # fmt: skip
        for batch, rows in shares:
            tensors = {k: torch.as_tensor(v, device=self.device) for k, v in batch.items()}
            yield TransitionBatch(**tensors, rows=rows)


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
    data: Split,
    exploration_noise: float = 0.0,
    seed: int = 0,
    prob_clip: float = DEFAULT_PROB_CLIP,
    actor_actions: np.ndarray | None = None,
) -> Replay | StreamedReplay:
    """Every transition of ``data`` with the actor's (optionally noisy) actions, in one pass.

    The rewards are computed at exactly the stored, noisy action; ``next_action`` is the
    noiseless actor's action at each next state. Pass ``actor_actions`` (``predict(actor,
    data)``) when they are already computed, to skip the actor's forward pass. A streamed
    split gives a ``StreamedReplay`` of the same transitions.
    """
    clean = predict(actor, data) if actor_actions is None else actor_actions  # [n, K]
    actions = noisy_actions(clean, exploration_noise, seed, prob_clip)
    if isinstance(data, StreamedSplit):
        return StreamedReplay(data, actions, clean, prob_clip, model_device(actor))
    transitions = build_transitions(data, actions=actions, prob_clip=prob_clip)
    device = model_device(actor)
    next_action = torch.as_tensor(
        np.array(clean[transitions.next_index]), dtype=torch.float32, device=device
    )
    return Replay(transitions, to_tensors(transitions, device), next_action)
