"""How a training step weighs its K task losses: equal weights, the loss-level balancers and the
Jacobian aggregators of the multi-task learning literature.

Every balancer turns one minibatch's per-task losses ``[K]`` (each task's mean BCE, already
multiplied by RMTL's per-sample critic weights in a polish) into gradients on the model:

- ``equal``: the mean of the task losses, the paper's and the official code's objective.
- Loss-level (one scalar objective, one backward pass):
  ``uncertainty`` (Kendall, Gal & Cipolla, CVPR 2018; TorchJD's ``UW``),
  ``gradnorm`` (Chen et al., ICML 2018; alpha 1.5, written here),
  ``dwa`` (Liu, Johns & Davison, CVPR 2019; T = 2, TorchJD's ``DWA``),
  ``famo`` (Liu et al., NeurIPS 2023; lr 0.025, weight decay 1e-3, TorchJD's ``FAMO``).
- Jacobian (``JACOBIAN``): the Jacobian of the task losses with respect to the parameters the
  tasks share (``MultiTaskModel.shared_parameters``) is aggregated into one update by TorchJD
  (``torchjd.autojac.mtl_backward`` then ``jac_to_grad``), while each task's own head takes its
  own gradient: ``upgrad`` (Quinton & Rey, 2024), ``mgda`` (Sener & Koltun, NeurIPS 2018),
  ``pcgrad`` (Yu et al., NeurIPS 2020), ``cagrad`` (Liu et al., NeurIPS 2021; c = 0.4),
  ``nash_mtl`` (Navon et al., ICML 2022), ``imtl_g`` (Liu et al., ICLR 2021), ``aligned_mtl``
  (Senushkin et al., CVPR 2023). CAGrad and Nash-MTL solve a convex program with cvxpy: the
  ``balancers`` extra installs it.

A balancer needs parameters that the tasks share; Single Task has none, so ``gradnorm`` and the
Jacobian balancers refuse it. Under ``torchrun`` only ``equal`` runs: the others keep state or
take per-task gradients that DistributedDataParallel's averaging does not cover.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Literal, get_args

import torch
from torch import nn

from agents.models import MultiTaskModel, build_model

Weighting = Literal[
    "equal", "uncertainty", "gradnorm", "dwa", "famo",
    "upgrad", "mgda", "pcgrad", "cagrad", "nash_mtl", "imtl_g", "aligned_mtl",
]  # fmt: skip
WEIGHTINGS: tuple[str, ...] = get_args(Weighting)
"""Every ``TrainConfig.weighting``."""
LOSS_LEVEL = ("uncertainty", "gradnorm", "dwa", "famo")
JACOBIAN = ("upgrad", "mgda", "pcgrad", "cagrad", "nash_mtl", "imtl_g", "aligned_mtl")
NEEDS_SHARED = ("gradnorm", *JACOBIAN)
"""Balancers that read the tasks' shared representation: refused on a model without one."""

GRADNORM_ALPHA = 1.5  # Chen et al. 2018: the restoring force's strength
DWA_TEMPERATURE = 2.0  # Liu et al. 2019
FAMO_LR, FAMO_WEIGHT_DECAY = 0.025, 1e-3  # Liu et al. 2023, Algorithm 2
CAGRAD_C = 0.4  # Liu et al. 2021, the multi-task supervised experiments
NASH_MTL = {"max_norm": 1.0, "update_weights_every": 1, "optim_niter": 20}  # Navon et al. 2022
# TorchJD's UPGrad projector and CAGrad treat a Jacobian whose squared Frobenius norm is below
# their norm_eps (1e-4 by default) as zero: UPGrad then averages the task gradients without
# projecting them, CAGrad makes no update. CTR losses' gradients are often that small (about
# 1e-6 on a small PLE at initialisation), so the guard is set to a true zero test.
GRAMIAN_EPS = 1e-12


def check_weighting(name: str) -> str:
    """``name`` if it is a known weighting, else a ``ValueError`` listing them."""
    if name not in WEIGHTINGS:
        raise ValueError(f"unknown weighting {name!r}; expected one of {', '.join(WEIGHTINGS)}")
    return name


def check_model(name: str, model: MultiTaskModel) -> None:
    """Refuse ``name`` on a model it cannot weigh (no parameters shared between tasks)."""
    check_weighting(name)
    if name in NEEDS_SHARED and not model.shared_parameters():
        raise ValueError(
            f"weighting {name!r} balances the gradients of parameters shared between tasks, and "
            f"{type(model).__name__} shares none (one network per task); use 'equal', "
            f"'uncertainty', 'dwa' or 'famo', or a model with shared layers"
        )


def check_backbone(name: str, backbone: str) -> None:
    """``check_model`` for backbone ``backbone`` by name, before anything is trained (on a
    one-unit instance of it)."""
    tiny = {"embed_dim": 1, "bottom_dims": (1,), "tower_dims": (1,), "num_experts": 2}
    check_model(name, build_model(backbone, [2], 1, 2, **tiny))


def check_training(
    weightings: Iterable[str | None], backbones: Iterable[str], world_size: int
) -> None:
    """Refuse, before anything is trained, a weighting (None: unset) that one of the named
    ``backbones`` cannot take or that cannot run with ``world_size`` processes."""
    for weighting in filter(None, weightings):
        check_world_size(weighting, world_size)
        for backbone in backbones:
            check_backbone(weighting, backbone)


def check_world_size(name: str, world_size: int) -> None:
    """Refuse a balancer other than ``equal`` in a data-parallel run (``world_size`` > 1)."""
    if check_weighting(name) != "equal" and world_size > 1:
        raise ValueError(
            f"weighting {name!r} runs in one process only: it keeps per-task state or takes "
            f"per-task gradients that torchrun's gradient averaging does not cover; run without "
            f"torchrun or use --weighting equal"
        )


class Balancer:
    """Equal weights; the base of every balancer.

    The trainer calls, per minibatch: ``backward(losses, features)`` (after ``zero_grad``),
    the optimiser's step, then ``after_step(recompute)``; and ``end_epoch()`` after each epoch.
    ``features`` are the inputs of the model's task heads when ``needs_features``."""

    needs_features = False

    def parameters(self) -> list[nn.Parameter]:
        """The balancer's own parameters, trained by the model's optimiser (no weight decay)."""
        return []

    def backward(self, losses: torch.Tensor, features: Sequence[torch.Tensor]) -> torch.Tensor:
        """Gradients of this minibatch into ``.grad``; returns the loss to log (the mean of the
        task losses for every balancer, so that training losses compare across balancers)."""
        loss = losses.mean()
        loss.backward()
        return loss

    def after_step(self, recompute: Callable[[], torch.Tensor]) -> None:
        """After the optimiser's step; ``recompute()`` gives the batch's task losses again."""

    def end_epoch(self) -> None:
        """After each training epoch."""

    def task_weights(self) -> torch.Tensor | None:
        """The current per-task weights, where the balancer has explicit ones."""
        return None


class Scalarized(Balancer):
    """A TorchJD scalarizer: one objective from the task losses, one backward pass."""

    def __init__(self, scalarizer: nn.Module) -> None:
        self.scalarizer = scalarizer

    def parameters(self) -> list[nn.Parameter]:
        return list(self.scalarizer.parameters())

    def backward(self, losses, features):
        self.scalarizer(losses).backward()
        return losses.detach().mean()


class Uncertainty(Scalarized):
    """Kendall et al. 2018: ``sum_k 0.5 exp(-s_k) L_k + 0.5 s_k`` with learned log-variances."""

    def task_weights(self):
        return 0.5 * torch.exp(-self.scalarizer.log_var.detach())


class DWA(Scalarized):
    """Liu et al. 2019: weights ``K softmax(r / T)`` of each task's loss ratio over the two
    previous epochs (uniform in the first two)."""

    def end_epoch(self):
        self.scalarizer.step()


class FAMO(Scalarized):
    """Liu et al. 2023: softmax task weights learned from each step's log-loss decrease, from
    the batch's losses recomputed after the step."""

    def backward(self, losses, features):
        if not bool((losses.detach() > 0).all()):
            raise ValueError(
                "weighting 'famo' takes the log of each task loss and needs them > 0; got "
                f"{losses.detach().tolist()} (a loss weight that can be negative, such as RMTL's "
                "weight_variant 'nlc', does not fit it)"
            )
        return super().backward(losses, features)

    def after_step(self, recompute):
        with torch.no_grad():
            self.scalarizer.update(recompute())

    def task_weights(self):
        return torch.softmax(self.scalarizer._w.detach(), 0)


class GradNorm(Balancer):
    """Chen et al. 2018: learned task weights ``w`` (sum K) whose weighted gradient norms
    ``G_k = w_k ||grad L_k||`` are pulled towards ``mean(G) * r_k ** alpha``, ``r_k`` each
    task's loss ratio to its first step over the mean ratio. The gradient norms are taken at the
    shared representation (the task heads' inputs), as LibMTL's ``rep_grad``: K small backward
    passes through the heads instead of K through the whole network."""

    needs_features = True

    def __init__(
        self, num_tasks: int, alpha: float = GRADNORM_ALPHA, device: torch.device | str = "cpu"
    ) -> None:
        self.weights = nn.Parameter(torch.ones(num_tasks, device=device))
        self.alpha = alpha
        self.initial: torch.Tensor | None = None

    def parameters(self):
        return [self.weights]

    def backward(self, losses, features):
        losses_now = losses.detach()
        if self.initial is None:
            self.initial = losses_now.clone()
        norms = torch.stack([
            torch.cat([g.flatten().float() for g in torch.autograd.grad(
                loss, features, retain_graph=True, allow_unused=True, materialize_grads=True
            )]).norm()
            for loss in losses
        ])  # fmt: skip
        weighted_norms = self.weights * norms  # differentiable in the weights only
        ratios = losses_now / self.initial
        target = (weighted_norms.mean() * (ratios / ratios.mean()) ** self.alpha).detach()
        self.weights.grad = torch.autograd.grad(
            (weighted_norms - target).abs().sum(), self.weights
        )[0]
        (self.weights.detach() * losses).sum().backward()
        return losses_now.mean()

    def after_step(self, recompute):
        with torch.no_grad():  # renormalise: the weights sum to K, none below a floor
            self.weights.clamp_(min=1e-3)
            self.weights.mul_(len(self.weights) / self.weights.sum())

    def task_weights(self):
        return self.weights.detach().clone()


class Jacobian(Balancer):
    """A TorchJD aggregator on the Jacobian of the task losses w.r.t. the shared parameters;
    the task heads take their own gradients."""

    needs_features = True

    def __init__(self, aggregator, shared: list[nn.Parameter]) -> None:
        from torchjd import aggregation as A

        self.aggregator, self.shared = aggregator, shared
        # Nash-MTL weighs the Jacobian itself; the others read only its Gramian, which can be
        # summed over parameters instead of concatenating the Jacobians.
        self.gramian_only = isinstance(aggregator, A.GramianWeightedAggregator)

    def backward(self, losses, features):
        from torchjd.autojac import jac_to_grad, mtl_backward

        # The task losses share their last nodes (one [B, K] BCE), which each task's own
        # backward pass crosses: the graph is kept until the step ends. One task's row at a
        # time (parallel_chunk_size=1) and the Gramian summed over parameters instead of
        # concatenating the Jacobians: on a CPU, PLE's step takes 1.6-1.8x an equal one this
        # way, 1.95x with torch.vmap over the rows (benchmarks/bench_train.py --weightings).
        mtl_backward(
            list(losses), features=list(features), shared_params=self.shared,
            retain_graph=True, parallel_chunk_size=1,
        )  # fmt: skip
        if self.gramian_only:
            jac_to_grad(self.shared, self.aggregator, optimize_gramian_computation=True)
        else:
            jac_to_grad(self.shared, self.aggregator)
        return losses.detach().mean()


def aggregator(name: str, num_tasks: int):
    """TorchJD's aggregator ``name`` with its paper's hyper-parameters."""
    # TorchJD is imported where a balancer is built: with the balancers extra it imports cvxpy,
    # and the two cost 1.2 s at every start of a process that trains with equal weights.
    from torchjd import aggregation as A
    from torchjd.linalg import QuadprogProjector

    makers = {
        "upgrad": lambda: A.UPGrad(projector=QuadprogProjector(norm_eps=GRAMIAN_EPS)),
        "mgda": A.MGDA, "pcgrad": A.PCGrad, "imtl_g": A.IMTLG, "aligned_mtl": A.AlignedMTL,
        "cagrad": lambda: A.CAGrad(c=CAGRAD_C, norm_eps=GRAMIAN_EPS),
        "nash_mtl": lambda: A.NashMTL(n_tasks=num_tasks, **NASH_MTL),
    }  # fmt: skip
    try:
        return makers[name]()
    except ImportError as exc:
        raise ImportError(
            f"weighting {name!r} solves a convex program with cvxpy: "
            f'pip install -e ".[balancers]" ({exc})'
        ) from None


def make_balancer(name: str, model: MultiTaskModel) -> Balancer:
    """The balancer ``name`` (one of ``WEIGHTINGS``) for training ``model``; checks that the
    model has what it needs."""
    check_model(name, model)
    if name == "equal":
        return Balancer()
    from torchjd import scalarization  # see aggregator(): not imported for equal weights

    k = model.num_tasks
    device = next(model.parameters()).device
    if name == "uncertainty":
        return Uncertainty(scalarization.UW(k).to(device))
    if name == "dwa":
        return DWA(scalarization.DWA(temperature=DWA_TEMPERATURE))
    if name == "famo":
        return FAMO(scalarization.FAMO(k, lr=FAMO_LR, weight_decay=FAMO_WEIGHT_DECAY).to(device))
    if name == "gradnorm":
        return GradNorm(k, device=device)
    return Jacobian(aggregator(name, k), model.shared_parameters())


def parameter_groups(model: MultiTaskModel, balancer: Balancer) -> list:
    """The optimiser's parameters for ``model`` trained with ``balancer``: the model's, then a
    group of the balancer's own weights, without weight decay, when it has any."""
    params = list(model.parameters())
    if not balancer.parameters():
        return params
    return [{"params": params}, {"params": balancer.parameters(), "weight_decay": 0.0}]


@contextlib.contextmanager
def head_inputs(model: MultiTaskModel, enabled: bool = True) -> Iterator[list[torch.Tensor]]:
    """Collects, during forward passes of ``model`` inside the block, the distinct input tensors
    of its task heads (``MultiTaskModel.task_heads``): the representation the tasks share."""
    features: list[torch.Tensor] = []
    if not enabled:
        yield features
        return

    def keep(module, args):
        if not any(args[0] is f for f in features):
            features.append(args[0])

    hooks = [head.register_forward_pre_hook(keep) for head in model.task_heads()]
    try:
        yield features
    finally:
        for hook in hooks:
            hook.remove()
