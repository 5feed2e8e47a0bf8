"""The loss balancers: each one's defining property on a toy two-task problem with conflicting
gradients, the models' shared parameters, the refusals, and every balancer in the trainer at
fp32 and bf16."""

from __future__ import annotations

import importlib.util
import math

import pytest
import torch

from agents.models import MODELS, build_model
from agents.trainer import TrainConfig, adam, fit_batches
from agents.weighting import (
    DWA_TEMPERATURE,
    FAMO_LR,
    JACOBIAN,
    WEIGHTINGS,
    GradNorm,
    Jacobian,
    aggregator,
    check_world_size,
    make_balancer,
)

SOLVER = ("cagrad", "nash_mtl")  # the balancers extra: cvxpy
HAS_CVXPY = importlib.util.find_spec("cvxpy") is not None
needs_cvxpy = pytest.mark.skipif(not HAS_CVXPY, reason='needs cvxpy: pip install ".[balancers]"')
TINY = {"embed_dim": 4, "bottom_dims": (8, 8), "tower_dims": (4,), "num_experts": 4}
# Two task gradients on a shared parameter, at an obtuse angle (g1 . g2 = -2 < 0).
G1, G2 = torch.tensor([3.0, 1.0, 0.0]), torch.tensor([-2.0, 4.0, 0.0])


def jacobian_update(name: str, g1: torch.Tensor = G1, g2: torch.Tensor = G2) -> torch.Tensor:
    """The update a Jacobian balancer puts into a shared parameter ``w`` when the task losses are
    ``g1 . w`` and ``g2 . w`` (read through the shared representation ``f = 1 * w``)."""
    w = torch.nn.Parameter(torch.zeros(3))
    features = w * 1.0
    losses = torch.stack([g1 @ features, g2 @ features])
    Jacobian(aggregator(name, 2), [w]).backward(losses, [features])
    return w.grad


@pytest.mark.parametrize("name", ["upgrad", "mgda"])
def test_update_does_not_conflict_with_any_task(name) -> None:
    d = jacobian_update(name)
    assert G1 @ G2 < 0
    assert float(d @ G1) >= -1e-5 and float(d @ G2) >= -1e-5, d
    assert float(d.norm()) > 1e-3


def test_pcgrad_removes_the_conflicting_components() -> None:
    d = jacobian_update("pcgrad")
    p1 = G1 - (G1 @ G2) / (G2 @ G2) * G2  # each gradient projected off the other's normal plane
    p2 = G2 - (G2 @ G1) / (G1 @ G1) * G1
    torch.testing.assert_close(d, p1 + p2, atol=1e-4, rtol=1e-4)
    assert abs(float(p1 @ G2)) < 1e-5 and abs(float(p2 @ G1)) < 1e-5


def test_imtl_g_gives_equal_projections_onto_each_task() -> None:
    d = jacobian_update("imtl_g")
    assert float(d @ G1 / G1.norm()) == pytest.approx(float(d @ G2 / G2.norm()), rel=1e-3)


def test_aligned_mtl_equalises_orthogonal_tasks_of_different_scales() -> None:
    g1, g2 = torch.tensor([5.0, 0.0, 0.0]), torch.tensor([0.0, 1.0, 0.0])
    d = jacobian_update("aligned_mtl", g1, g2)
    assert float(d @ g1 / g1.norm()) == pytest.approx(float(d @ g2 / g2.norm()), rel=1e-3)


@needs_cvxpy
def test_cagrad_stays_near_the_mean_and_lifts_the_worst_task() -> None:
    d, mean = jacobian_update("cagrad"), (G1 + G2) / 2
    c = 0.4
    assert float((d - mean).norm()) <= c * float(mean.norm()) + 1e-4  # within c |g0| of g0
    assert min(float(d @ G1), float(d @ G2)) >= min(float(mean @ G1), float(mean @ G2)) - 1e-5


@needs_cvxpy
def test_nash_mtl_is_the_bargaining_solution() -> None:
    """Nash-MTL's weights alpha solve alpha_i (g_i . d) = const (d = sum alpha_i g_i)."""
    d = jacobian_update("nash_mtl")
    alpha = torch.linalg.lstsq(torch.stack([G1, G2]).T, d.unsqueeze(1)).solution.squeeze(1)
    assert (alpha > 0).all(), alpha
    products = alpha * torch.stack([G1 @ d, G2 @ d])
    assert float(products[0]) == pytest.approx(float(products[1]), rel=0.05)


def test_uncertainty_lowers_the_weight_of_the_noisier_task() -> None:
    """At the optimum of 0.5 exp(-s) L + 0.5 s the weight 0.5 exp(-s) is 1 / (2 L)."""
    balancer = make_balancer("uncertainty", build_model("ple", [5, 5], 1, 2, **TINY))
    optimizer = torch.optim.Adam(balancer.parameters(), lr=0.05)
    for _ in range(600):
        losses = torch.tensor([0.2, 2.0], requires_grad=True)  # task 2: ten times the noise
        optimizer.zero_grad()
        balancer.backward(losses, [])
        optimizer.step()
    weights = balancer.task_weights()
    assert weights[0] > weights[1]
    torch.testing.assert_close(weights, torch.tensor([2.5, 0.25]), rtol=0.05, atol=0)


def test_gradnorm_pulls_the_task_gradient_norms_together() -> None:
    balancer = GradNorm(2)
    optimizer = torch.optim.Adam(balancer.parameters(), lr=0.01)
    p = torch.nn.Parameter(torch.ones(4))

    def gap() -> float:
        norms = balancer.weights.detach() * torch.tensor([10.0, 1.0]) * 2.0  # |grad| = c |1|
        return float((norms[0] - norms[1]).abs())

    before = gap()
    for _ in range(200):
        features = p * 1.0
        losses = torch.stack([10.0 * features.sum(), features.sum()])  # constant loss ratios
        optimizer.zero_grad()
        balancer.backward(losses, [features])
        optimizer.step()
        balancer.after_step(lambda losses=losses: losses.detach())
    assert gap() < 0.5 * before
    assert float(balancer.weights.detach().sum()) == pytest.approx(2.0)
    assert balancer.weights[0] < balancer.weights[1]  # the larger gradient's task gets less


def test_dwa_weights_follow_the_loss_ratio_formula() -> None:
    balancer = make_balancer("dwa", build_model("ple", [5, 5], 1, 2, **TINY))
    weights = []
    for epoch_losses in ([1.0, 1.0], [0.5, 0.9], [0.4, 0.8]):
        losses = torch.tensor(epoch_losses, requires_grad=True)
        balancer.backward(losses, [])
        weights.append(losses.grad.clone())  # d(sum_k lambda_k L_k) / dL_k = lambda_k
        balancer.end_epoch()
    torch.testing.assert_close(weights[0], torch.ones(2))  # uniform in the first two epochs
    torch.testing.assert_close(weights[1], torch.ones(2))
    ratios = torch.tensor([0.5 / 1.0, 0.9 / 1.0])
    expected = 2 * torch.softmax(ratios / DWA_TEMPERATURE, 0)
    torch.testing.assert_close(weights[2], expected)
    assert weights[2][1] > weights[2][0]  # the task whose loss fell less gets more weight


def test_famo_weights_follow_its_update_rule() -> None:
    """One update from logits 0: Adam's first step is lr * sign(gradient), the gradient of
    softmax(w) . delta with delta_k = log L_k(before) - log L_k(after)."""
    balancer = make_balancer("famo", build_model("ple", [5, 5], 1, 2, **TINY))
    before, after = torch.tensor([1.0, 1.0]), torch.tensor([0.5, 0.9])
    balancer.backward(before.clone().requires_grad_(), [])
    balancer.after_step(lambda: after)
    delta = before.log() - after.log()
    z = torch.full((2,), 0.5)
    gradient = z * (delta - (z * delta).sum())
    logits = -FAMO_LR * gradient.sign()  # FAMO's Adam descends: the faster task loses weight
    torch.testing.assert_close(balancer.task_weights(), torch.softmax(logits, 0))
    assert balancer.task_weights()[1] > balancer.task_weights()[0]


def test_equal_is_the_mean_of_the_task_losses() -> None:
    losses = torch.tensor([0.3, 0.9], requires_grad=True)
    loss = make_balancer("equal", build_model("ple", [5, 5], 1, 2, **TINY)).backward(losses, [])
    assert float(loss.detach()) == pytest.approx(0.6)
    torch.testing.assert_close(losses.grad, torch.full((2,), 0.5))


def test_unknown_weighting_lists_the_valid_ones() -> None:
    with pytest.raises(ValueError, match="upgrad.*aligned_mtl|equal.*uncertainty") as info:
        TrainConfig(weighting="upgrd")
    assert all(name in str(info.value) for name in WEIGHTINGS)


@pytest.mark.parametrize("name", ["gradnorm", *JACOBIAN])
def test_single_task_has_no_shared_parameters_and_is_refused(name) -> None:
    model = build_model("single_task", [5, 5], 1, 2, **TINY)
    assert model.shared_parameters() == []
    with pytest.raises(ValueError, match="shares none"):
        make_balancer(name, model)


def test_loss_level_balancers_accept_single_task() -> None:
    model = build_model("single_task", [5, 5], 1, 2, **TINY)
    for name in ("equal", "uncertainty", "dwa", "famo"):
        make_balancer(name, model)


def test_models_declare_their_shared_parameters() -> None:
    for name in MODELS:
        model = build_model(name, [5, 5], 1, 2, **TINY)
        shared = {id(p) for p in model.shared_parameters()}
        towers = {id(p) for t in model.towers for p in t.parameters()}
        assert not shared & towers, name
        if name == "single_task":
            assert not shared
        elif name in ("esmm", "aitm"):  # only the embeddings
            assert shared == {id(p) for p in model.embedding.parameters()}, name
        else:  # everything below the towers: embedding, bottom or experts, gates
            assert shared == {id(p) for p in model.parameters()} - towers, name


def test_balancers_other_than_equal_refuse_torchrun() -> None:
    check_world_size("equal", 4)
    check_world_size("upgrad", 1)
    with pytest.raises(ValueError, match="one process only"):
        check_world_size("upgrad", 2)


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
@pytest.mark.parametrize("model_name", ["ple", "esmm"])
def test_every_balancer_trains_at_both_precisions(model_name, precision) -> None:
    torch.manual_seed(0)
    categorical, numerical = torch.randint(0, 20, (256, 3)), torch.randn(256, 2)
    labels = (torch.rand(256, 2) < 0.4).float()
    for name in [w for w in WEIGHTINGS if HAS_CVXPY or w not in SOLVER]:
        model = build_model(model_name, [20] * 3, 2, 2, **TINY)
        balancer = make_balancer(name, model)
        before = [p.detach().clone() for p in model.parameters()]
        optimizer = adam([*model.parameters(), *balancer.parameters()], 1e-2, precision)
        batches = [(categorical, numerical, labels, 256)] * 3
        loss = fit_batches(model, batches, optimizer, precision=precision, balancer=balancer)
        assert math.isfinite(float(loss)), name
        moved = [not torch.equal(a, p) for a, p in zip(before, model.parameters(), strict=True)]
        assert all(moved), f"{name}: some parameters got no update"


def test_rmtl_weights_and_a_balancer_compose() -> None:
    """Per-sample weights zero on task 2 leave its tower untouched under a Jacobian balancer:
    the balancer acts on the critic-weighted task losses."""
    torch.manual_seed(0)
    model = build_model("ple", [20] * 3, 2, 2, **TINY)
    tower = [p.detach().clone() for p in model.towers[1].parameters()]
    balancer = make_balancer("upgrad", model)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    batch = (torch.randint(0, 20, (64, 3)), torch.randn(64, 2), torch.ones(64, 2), 64)
    first_only = lambda c, n, p, y: torch.stack([torch.ones(len(y)), torch.zeros(len(y))], 1)  # noqa: E731
    fit_batches(model, [batch], optimizer, loss_weights=first_only, balancer=balancer)
    for a, b in zip(tower, model.towers[1].parameters(), strict=True):
        torch.testing.assert_close(a, b)


def test_scripts_refuse_a_weighting_their_backbone_cannot_take_before_any_work(capsys) -> None:

    import mtl_baselines
    import rmtl_ddpg

    for parse, argv in (
        (mtl_baselines.parse_args, ["--model", "all", "--weighting", "upgrad"]),
        (rmtl_ddpg.parse_args, ["--backbone", "single_task", "--polish-weighting", "mgda"]),
    ):
        with pytest.raises(SystemExit) as exit_info:
            parse(argv)
        assert exit_info.value.code == 2
        assert "SingleTask shares none" in capsys.readouterr().err
    assert rmtl_ddpg.parse_args(["--polish-weighting", "upgrad"]).rmtl.polish_weighting == "upgrad"
