"""Supervised multi-task training with early stopping, prediction and evaluation.

The recipe is the paper's (official ``SLmain.py`` and MTReclib): Adam (lr 1e-3, weight decay 1e-6),
batch 2048, mean over tasks of each task's BCE, early stopping on the mean validation AUC with
patience 2, best weights restored. Unlike the official code the training rows are shuffled every
epoch and the validation split is the one named ``val`` (the official code early-stops on
``test.csv`` and reports on ``val.csv``).
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from agents import distributed
from agents.batching import epoch_shares, pooled
from agents.domains import at_least, check_domains, within
from agents.models import MultiTaskModel
from agents.models.layers import DROPOUT_MASKS, dropout_masks
from agents.runtime import RECORDED_IF_SET
from agents.weighting import (
    Balancer,
    Weighting,
    check_weighting,
    check_world_size,
    head_inputs,
    make_balancer,
    parameter_groups,
)
from rmtl_env.data.dataset import SplitData
from rmtl_env.data.stream import StreamedSplit
from rmtl_env.metrics import task_metrics

Split = SplitData | StreamedSplit
"""A split in memory, or streamed from Parquet block by block (``rmtl_env.data.stream``)."""

Batch = tuple[torch.Tensor, torch.Tensor, torch.Tensor, int]
"""``(categorical, numerical, labels)`` of this rank's share of a minibatch, and the global
minibatch's row count."""

PRECISIONS = ("fp32", "bf16")

LossWeights = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
"""``(categorical [B, F], numerical [B, N], probs [B, K], labels [B, K]) -> weights [B, K]``.

``probs`` are the model's current predictions, detached; the returned weights multiply each
sample's per-task BCE and are treated as constants (no gradient flows through them). It runs
under the step's ``autocast`` (``TrainConfig.precision``), like the model's forward pass."""


@dataclass(frozen=True)
class TrainConfig:
    """Supervised training settings; defaults are the paper's.

    Attributes:
        lr, weight_decay: Adam's learning rate and weight decay.
        batch_size: training minibatch.
        epochs: the most epochs of one training run (early stopping usually ends it sooner).
        patience: epochs without a mean validation AUC gain before stopping; the best epoch's
            weights are restored.
        eval_batch_size: rows per forward pass when scoring the validation split.
        shuffle: reshuffle the training rows every epoch (the official code keeps them in file
            order, i.e. session and time order).
        keep_initial: let the starting weights compete in early stopping (scored as epoch 0):
            if no epoch beats them they are restored. Off in the paper; RMTL's polish guard.
        seed: seeds the per-epoch shuffling.
        precision: ``fp32``, or ``bf16``: every forward pass of a training step under
            ``torch.autocast`` in bfloat16 (the backbone's, the polish critics', and in RMTL's
            critic stage the critics' and the actor's) and of every prediction (validation,
            the actor's actions, test); the weights, the towers' output layers (so every
            probability is float32), the losses and Adam stay float32. bf16 also takes the
            kernels that are fastest beside it: ``int16`` dropout masks unless
            ``dropout_masks`` is set, and Adam's fused kernel (the same update in one pass;
            fp32 keeps the per-tensor loop, so its numbers stay those of earlier versions).
            For CPUs with AVX512-BF16/AMX and GPUs with bf16 (Ampere and later).
        dropout_masks: ``bernoulli`` (torch's dropout) or ``int16``: masks from 15-bit random
            integers, about 3x cheaper on CPUs, where torch's masks took a quarter of a PLE
            step (``agents.models.layers.Dropout``); other masks for the same seed. Unset:
            ``int16`` at bf16, ``bernoulli`` at fp32 (``mask_source``).
        weighting: how a step weighs its task losses: ``equal`` (their mean, the paper's) or an
            adaptive balancer: ``uncertainty``, ``gradnorm``, ``dwa``, ``famo`` (loss-level) or
            ``upgrad``, ``mgda``, ``pcgrad``, ``cagrad``, ``nash_mtl``, ``imtl_g``,
            ``aligned_mtl`` (Jacobian, on the shared parameters; ``agents.weighting``).
    """

    lr: float = field(default=1e-3, metadata=within(0, low_open=True))
    weight_decay: float = field(default=1e-6, metadata=within(0))
    batch_size: int = field(default=2048, metadata=at_least())
    epochs: int = field(default=50, metadata=at_least())
    patience: int = field(default=2, metadata=at_least())
    eval_batch_size: int = field(default=16384, metadata=at_least())
    shuffle: bool = True
    keep_initial: bool = False
    seed: int = 0
    precision: Literal["fp32", "bf16"] = "fp32"
    dropout_masks: Literal["bernoulli", "int16"] | None = field(
        default=None, metadata=RECORDED_IF_SET
    )
    weighting: Weighting = field(default="equal", metadata=RECORDED_IF_SET)

    def __post_init__(self) -> None:
        check_domains(self)
        check_weighting(self.weighting)
        if self.dropout_masks is not None and self.dropout_masks not in DROPOUT_MASKS:
            raise ValueError(
                f"TrainConfig.dropout_masks must be one of {DROPOUT_MASKS}, "
                f"got {self.dropout_masks!r}"
            )
        if self.precision not in PRECISIONS:
            raise ValueError(
                f"TrainConfig.precision must be one of {PRECISIONS}, got {self.precision!r}"
            )

    @property
    def mask_source(self) -> str:
        """The dropout masks' source: ``dropout_masks``, or the precision's own when unset."""
        if self.dropout_masks is not None:
            return self.dropout_masks
        return "int16" if self.precision == "bf16" else "bernoulli"


def adam(
    params: Iterable[torch.nn.Parameter] | Iterable[dict],
    lr: float,
    precision: str,
    weight_decay: float = 0.0,
) -> torch.optim.Adam:
    """Adam for a network trained at ``precision``: the fused kernel at bf16, torch's default
    per-tensor loop at fp32 (see ``TrainConfig.precision``)."""
    return torch.optim.Adam(
        params, lr=lr, weight_decay=weight_decay, fused=True if precision == "bf16" else None
    )


@dataclass
class TrainResult:
    """What ``train_model`` did: the epoch whose weights were restored and the per-epoch log."""

    best_epoch: int
    best_val_auc: float
    stopped_early: bool
    history: list[dict[str, float]] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def split_tensors(data: SplitData, device: torch.device | str) -> tuple[torch.Tensor, ...]:
    """``(categorical, numerical, labels)`` of a split as tensors on ``device``."""
    return (
        torch.as_tensor(np.array(data.categorical, dtype=np.int64), device=device),
        torch.as_tensor(np.array(data.numerical, dtype=np.float32), device=device),
        torch.as_tensor(np.array(data.labels, dtype=np.float32), device=device),
    )


def model_device(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


def autocast(precision: str, device: torch.device | str) -> torch.autocast:
    """The context of forward passes at ``precision`` (``TrainConfig.precision``), in training
    and in prediction: ``torch.autocast`` to bfloat16 for ``bf16``, a no-op for ``fp32``."""
    device_type = torch.device(device).type
    return torch.autocast(device_type, dtype=torch.bfloat16, enabled=precision == "bf16")


@torch.no_grad()
def map_batches(
    fn: Callable[..., torch.Tensor],
    device: torch.device | str,
    batch_size: int,
    *arrays: np.ndarray,
) -> np.ndarray:
    """``fn`` applied to row batches of ``arrays`` (as tensors on ``device``), concatenated."""
    out = [
        fn(*(torch.as_tensor(np.array(a[i : i + batch_size]), device=device) for a in arrays))
        .float()
        .cpu()
        for i in range(0, len(arrays[0]), batch_size)
    ]
    return torch.cat(out).numpy()


def map_split(
    fn: Callable[..., torch.Tensor],
    device: torch.device | str,
    batch_size: int,
    data: Split,
    *per_row: np.ndarray,
) -> np.ndarray:
    """``fn(categorical, numerical, *per_row)`` over every row of ``data`` in batches,
    concatenated in row order; ``per_row`` are ``[n, ...]`` arrays aligned with ``data``'s rows.
    Under torch.distributed each rank maps its rows (``rank::world``) and the results are
    gathered, so every rank returns all rows. A streamed split of a dataset with
    ``rank_shards`` is mapped a block per rank instead (blocks ``rank, rank + world, ...``,
    when there are at least as many blocks as ranks), so each rank reads only its blocks."""
    if isinstance(data, StreamedSplit):
        world, rank, blocks = distributed.world_size(), distributed.rank(), data.blocks()
        sharded = data.dataset.rank_shards and 1 < world <= len(blocks)

        def mine() -> Iterator[dict[str, np.ndarray]]:  # this rank's rows, a block at a time
            for block in blocks[rank::world] if sharded else blocks:
                rows = data.read(block)
                own = slice(None) if sharded else rows.index % world == rank
                arrays = [rows.categorical[own], rows.numerical[own],
                          *(a[rows.index[own]] for a in per_row)]  # fmt: skip
                yield {str(i): a for i, a in enumerate(arrays)}

        # Pooled across blocks into the in-memory path's batches: the same float results
        # (with rank shards, batches of this rank's blocks: the same to float rounding).
        parts = [
            map_batches(fn, device, batch_size, *batch.values())
            for batch in pooled(mine(), batch_size, None, batch_size)
        ]
        local = np.concatenate(parts) if parts else np.zeros((0,), np.float32)
        if sharded:
            spans = [(block.offset, len(block)) for block in blocks]
            return distributed.gather_blocks(local, spans, len(data))
    else:
        share = slice(distributed.rank(), None, distributed.world_size())  # one process: all
        extra = (a[share] for a in per_row)
        local = map_batches(
            fn, device, batch_size, data.categorical[share], data.numerical[share], *extra
        )
    return distributed.gather_rows(local, len(data))  # every rank: all rows, in order


def predict(
    model: MultiTaskModel, data: Split, batch_size: int = 16384, precision: str = "fp32"
) -> np.ndarray:
    """``[n, K]`` float32 probabilities of ``model`` (in eval mode) for every row of ``data``,
    its forward passes at ``precision`` (``TrainConfig.precision``)."""
    if len(data) == 0:
        return np.zeros((0, model.num_tasks), np.float32)
    was_training = model.training
    model.eval()
    device = model_device(model)
    with autocast(precision, device):
        probs = map_split(model, device, batch_size, data)
    model.train(was_training)
    return probs


def evaluate(
    model: MultiTaskModel, data: Split, batch_size: int = 16384, precision: str = "fp32"
) -> dict[str, dict[str, float]]:
    """The paper's metrics of ``model`` on ``data``: ``{task: {auc, logloss, s_logloss}}``
    (``precision``: ``predict``'s)."""
    probs = predict(model, data, batch_size, precision)
    return task_metrics(data.labels, probs, data.session_id, data.tasks)


def mean_auc(metrics: dict[str, dict[str, float]]) -> float:
    return float(np.mean([m["auc"] for m in metrics.values()]))


def task_losses(
    probs: torch.Tensor,
    labels: torch.Tensor,
    weights: torch.Tensor | None,
    batch_rows: int | None = None,
) -> torch.Tensor:
    """``[K]``: each task's (per-sample ``weights``-weighted) mean BCE over the batch.
    ``batch_rows``: the global batch's size when ``probs`` is this rank's share of it
    (``distributed.batch_mean``)."""
    losses = F.binary_cross_entropy(probs, labels, reduction="none")  # [B, K]
    if weights is not None:
        losses = losses * weights
    return distributed.batch_mean(losses, batch_rows or len(losses))


def weighted_bce(
    probs: torch.Tensor,
    labels: torch.Tensor,
    weights: torch.Tensor | None,
    batch_rows: int | None = None,
) -> torch.Tensor:
    """Mean over tasks of each task's (weighted) mean BCE; the official ``1/K * sum_k``."""
    return task_losses(probs, labels, weights, batch_rows).mean()


def check_splits(model: MultiTaskModel, train: Split, val: Split) -> None:
    """Both splits non-empty, with the same tasks as the model's outputs."""
    if train.tasks != val.tasks or len(train.tasks) != model.num_tasks:
        raise ValueError(
            f"train tasks {train.tasks}, val tasks {val.tasks} and the model's {model.num_tasks} "
            "outputs must agree"
        )
    if len(train) == 0 or len(val) == 0:
        raise ValueError("train and val splits must both be non-empty")
    single = [t for k, t in enumerate(val.tasks) if len(np.unique(val.labels[:, k])) < 2]
    if single:
        raise ValueError(
            f"the validation split has only one class for task(s) {single}: early stopping on "
            "the validation AUC is undefined; use more data or other tasks"
        )


def memory_batches(
    tensors: tuple[torch.Tensor, torch.Tensor, torch.Tensor], order: torch.Tensor, batch_size: int
) -> Iterator[Batch]:
    """Minibatches of the rows ``order`` of in-memory ``(categorical, numerical, labels)``."""
    categorical, numerical, labels = tensors
    for i in range(0, len(order), batch_size):
        batch = order[i : i + batch_size]
        idx = distributed.shard(batch)  # this rank's share of the batch
        yield categorical[idx], numerical[idx], labels[idx], len(batch)


def stream_batches(
    data: StreamedSplit,
    batch_size: int,
    rng: np.random.Generator | None,
    device: torch.device,
) -> Iterator[Batch]:
    """One epoch of block-shuffled minibatches of a streamed split (file order without
    ``rng``), as tensors on ``device``; under torch.distributed every rank reads every block and
    keeps its share of each batch, or, with the dataset's ``rank_shards``, reads only its
    blocks."""
    shares = epoch_shares(data, data.read_block, batch_size, rng, distributed.rank(),
                          distributed.world_size())  # fmt: skip
    for rows, count in shares:
        yield (torch.as_tensor(rows["categorical"], device=device),
               torch.as_tensor(rows["numerical"], device=device),
               torch.as_tensor(rows["labels"], device=device), count)  # fmt: skip


def train_epoch(
    model: MultiTaskModel,
    tensors: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    order: torch.Tensor,
    optimizer: torch.optim.Optimizer,
    batch_size: int,
    loss_weights: LossWeights | None = None,
    progress: str | None = None,
    precision: str = "fp32",
    masks: str = "bernoulli",
    balancer: Balancer | None = None,
) -> torch.Tensor:
    """One pass over the rows ``order`` of ``(categorical, numerical, labels)`` in minibatches;
    returns the summed training loss (``progress``: the tqdm bar's label, None for no bar;
    ``precision``, ``masks``: ``TrainConfig.precision`` and ``dropout_masks``; ``balancer``:
    the task-loss weighting, ``agents.weighting.make_balancer``, equal weights when None)."""
    batches = memory_batches(tensors, order, batch_size)
    total = -(-len(order) // batch_size)
    return fit_batches(
        model, batches, optimizer, loss_weights, progress, precision, total, masks, balancer
    )


def fit_batches(
    model: MultiTaskModel,
    batches: Iterable[Batch],
    optimizer: torch.optim.Optimizer,
    loss_weights: LossWeights | None = None,
    progress: str | None = None,
    precision: str = "fp32",
    total: int | None = None,
    masks: str = "bernoulli",
    balancer: Balancer | None = None,
) -> torch.Tensor:
    """One optimiser step per minibatch of ``batches``; returns the summed training loss
    (``total``: the number of batches, for the tqdm bar; ``masks``: the dropout masks'
    source, ``TrainConfig.dropout_masks``; ``balancer``: as ``train_epoch``'s). The logged
    loss is the mean of the task losses whatever the balancer."""
    balancer = balancer or Balancer()
    with dropout_masks(masks):
        return _fit_batches(
            model, batches, optimizer, loss_weights, progress, precision, total, balancer
        )


def _fit_batches(model, batches, optimizer, loss_weights, progress, precision, total, balancer):
    model.train()
    device = next(model.parameters()).device
    heads = model.module if hasattr(model, "module") else model  # inside DDP
    total_loss = torch.zeros((), device=device)
    bar = tqdm(batches, desc=progress, disable=progress is None, leave=False, total=total)
    for cat, num, y, batch_rows in bar:
        with head_inputs(heads, balancer.needs_features) as features, autocast(precision, device):
            probs = model(cat, num)
        probs = probs.float()  # BCE in float32: bf16's 8-bit mantissa cannot hold log(1 - p)
        weights = None
        if loss_weights is not None:
            with torch.no_grad(), autocast(precision, device):  # the critics' forward, in polish
                weights = loss_weights(cat, num, probs.detach(), y).float()
        losses = task_losses(probs, y, weights, batch_rows)
        optimizer.zero_grad(set_to_none=True)
        loss = balancer.backward(losses, features)
        optimizer.step()
        balancer.after_step(lambda c=cat, n=num, y=y, w=weights, r=batch_rows: _losses_again(
            model, c, n, y, w, r, precision))  # fmt: skip
        total_loss += loss.detach() * (batch_rows / distributed.world_size())
    balancer.end_epoch()
    return distributed.all_reduce_sum(total_loss)


@torch.no_grad()
def _losses_again(model, cat, num, labels, weights, batch_rows, precision) -> torch.Tensor:
    """The task losses of a batch after the step (FAMO's update reads them)."""
    with autocast(precision, cat.device):
        probs = model(cat, num)
    return task_losses(probs.float(), labels, weights, batch_rows)


class EpochBatches:
    """Each epoch's minibatches of a training split, seeded by ``config.seed``: a fresh
    permutation of the rows in memory (file order without ``config.shuffle``), or block
    shuffling of a streamed split."""

    def __init__(self, train: Split, config: TrainConfig, device: torch.device) -> None:
        self.train, self.config, self.device = train, config, device
        self.generator = torch.Generator().manual_seed(config.seed)
        self.rng = np.random.default_rng(config.seed)
        self.tensors = None if isinstance(train, StreamedSplit) else split_tensors(train, device)

    def __len__(self) -> int:
        return -(-len(self.train) // self.config.batch_size)

    def next(self) -> Iterator[Batch]:
        """The next epoch's minibatches."""
        config, device = self.config, self.device
        if self.tensors is None:
            rng = self.rng if config.shuffle else None
            return stream_batches(self.train, config.batch_size, rng, device)
        order = (
            torch.randperm(len(self.train), generator=self.generator).to(device)
            if config.shuffle
            else torch.arange(len(self.train), device=device)  # file order: session and time
        )
        return memory_batches(self.tensors, order, config.batch_size)


def train_model(
    model: MultiTaskModel,
    train: Split,
    val: Split,
    config: TrainConfig | None = None,
    loss_weights: LossWeights | None = None,
    progress: bool = True,
    description: str = "train",
) -> TrainResult:
    """Train ``model`` (on its device) in place on ``train``, early-stopping on the mean AUC over
    tasks of ``val``; restores the best epoch's weights. ``loss_weights``: optional per-sample,
    per-task weights (``LossWeights``), RMTL's polish; ``progress``: a tqdm bar per epoch labelled
    ``description``. Either split may be streamed (``StreamedSplit``): its rows are then read
    block by block and block-shuffled (``rmtl_env.data.stream``)."""
    config = config or TrainConfig()
    check_splits(model, train, val)
    device = model_device(model)
    check_world_size(config.weighting, distributed.world_size())
    balancer = make_balancer(config.weighting, model)
    optimizer = adam(
        parameter_groups(model, balancer), config.lr, config.precision, config.weight_decay
    )
    best_auc, best_epoch, best_state, bad_epochs = -np.inf, 0, None, 0
    history: list[dict[str, float]] = []
    if config.keep_initial:
        best_auc = mean_auc(evaluate(model, val, config.eval_batch_size, config.precision))
        best_state = copy.deepcopy(model.state_dict())
        history.append({"epoch": 0, "val_auc": best_auc})
    stopped_early = False
    epochs = EpochBatches(train, config, device)
    network = distributed.wrap(model)  # DDP under torchrun: every rank takes a share of a batch
    for epoch in range(1, config.epochs + 1):
        start = time.perf_counter()
        bar = f"{description} epoch {epoch}" if progress else None
        total_loss = fit_batches(
            network, epochs.next(), optimizer, loss_weights, bar, config.precision, len(epochs),
            config.mask_source, balancer,
        )  # fmt: skip
        val_metrics = evaluate(model, val, config.eval_batch_size, config.precision)
        val_auc = mean_auc(val_metrics)
        scores = {f"val_{t}_{k}": v for t, m in val_metrics.items() for k, v in m.items()}
        record = {"epoch": epoch, "train_loss": float(total_loss) / len(train),
                  "val_auc": val_auc, **scores, "seconds": time.perf_counter() - start}  # fmt: skip
        task_weights = balancer.task_weights()
        if task_weights is not None:  # where the balancer has explicit weights: their path
            record |= {
                f"weight_{t}": float(w)
                for t, w in zip(train.tasks, task_weights.tolist(), strict=True)
            }
        history.append(record)
        if progress:
            tqdm.write(
                f"{description} epoch {epoch}: loss {record['train_loss']:.5f} val AUC {val_auc:.5f}"
            )
        if val_auc > best_auc:
            best_auc, best_epoch, bad_epochs = val_auc, epoch, 0
            best_state = copy.deepcopy(model.state_dict())
        else:
            bad_epochs += 1
            if bad_epochs >= config.patience:
                stopped_early = True
                break
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    return TrainResult(best_epoch, float(best_auc), stopped_early, history)
