"""Every backbone: shapes, ranges, gradients, overfitting, checkpoints; ESMM's product identity."""

from __future__ import annotations

import pytest
import torch

from agents.checkpoint import load_model, save_model
from agents.models import ESMM, MODELS, build_model
from agents.trainer import weighted_bce

FIELD_DIMS = [5, 7, 3, 11]
NUM_NUMERICAL = 2
SMALL = {"embed_dim": 8, "bottom_dims": (32, 16), "tower_dims": (8,), "num_experts": 4}


def batch(size: int = 16, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    categorical = torch.stack([torch.randint(0, d, (size,), generator=g) for d in FIELD_DIMS], 1)
    return categorical, torch.randn(size, NUM_NUMERICAL, generator=g)


@pytest.mark.parametrize("num_tasks", [2, 3])
@pytest.mark.parametrize("name", sorted(MODELS))
def test_output_shape_and_range_with_paper_dimensions(name: str, num_tasks: int) -> None:
    model = build_model(name, FIELD_DIMS, NUM_NUMERICAL, num_tasks)
    assert model.config.embed_dim == 128 and model.config.bottom_dims == (512, 256)
    assert model.config.tower_dims == (128, 64) and model.config.num_experts == 8
    probs = model(*batch(32))
    assert probs.shape == (32, num_tasks)
    assert torch.all((probs >= 0) & (probs <= 1))
    assert torch.isfinite(probs).all()


@pytest.mark.parametrize("num_tasks", [2, 3])
@pytest.mark.parametrize("name", sorted(MODELS))
def test_gradients_reach_every_parameter(name: str, num_tasks: int) -> None:
    torch.manual_seed(0)
    model = build_model(name, FIELD_DIMS, NUM_NUMERICAL, num_tasks, **SMALL)
    categorical, numerical = batch(64)
    labels = (torch.rand(64, num_tasks) < 0.5).float()
    weighted_bce(model(categorical, numerical), labels, None).backward()
    missing = [
        n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0
    ]
    assert not missing, f"no gradient reaches {missing}"


@pytest.mark.parametrize("name", sorted(MODELS))
def test_overfits_one_small_batch(name: str) -> None:
    torch.manual_seed(0)
    model = build_model(name, FIELD_DIMS, NUM_NUMERICAL, 2, **SMALL, dropout=0.0)
    categorical, numerical = batch(32, seed=1)
    click = (torch.rand(32, generator=torch.Generator().manual_seed(2)) < 0.5).float()
    pay = click * (torch.rand(32, generator=torch.Generator().manual_seed(3)) < 0.5).float()
    labels = torch.stack([click, pay], 1)  # nested like CTR/CTCVR, so ESMM can fit it exactly
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(300):
        loss = weighted_bce(model(categorical, numerical), labels, None)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert loss.item() < 0.02, f"{name} did not overfit: loss {loss.item():.4f}"


@pytest.mark.parametrize("num_tasks", [2, 3])
def test_esmm_outputs_are_the_product_of_its_towers(num_tasks: int) -> None:
    model = build_model("esmm", FIELD_DIMS, NUM_NUMERICAL, num_tasks, **SMALL).eval()
    assert isinstance(model, ESMM)
    categorical, numerical = batch(20)
    conditional = model.conditional_probs(categorical, numerical)
    probs = model(categorical, numerical)
    torch.testing.assert_close(probs[:, 0], conditional[:, 0])
    for k in range(1, num_tasks):
        torch.testing.assert_close(probs[:, k], probs[:, k - 1] * conditional[:, k])
        assert torch.all(probs[:, k] <= probs[:, k - 1])  # pCTCVR <= pCTR


@pytest.mark.parametrize("name", sorted(MODELS))
def test_checkpoint_round_trip_gives_identical_predictions(name: str, tmp_path) -> None:
    model = build_model(name, FIELD_DIMS, NUM_NUMERICAL, 3, **SMALL).eval()
    path = save_model(model, tmp_path / f"{name}.pt", note="x")
    restored = load_model(path).eval()
    assert type(restored) is type(model) and restored.config == model.config
    torch.testing.assert_close(restored(*batch()), model(*batch()), rtol=0, atol=0)


def test_bad_arguments_have_clear_errors(tmp_path) -> None:
    with pytest.raises(ValueError, match="unknown model 'xgboost'"):
        build_model("xgboost", FIELD_DIMS, 1, 2)
    with pytest.raises(ValueError, match="unknown model option"):
        build_model("ple", FIELD_DIMS, 1, 2, embedding_size=8)
    with pytest.raises(ValueError, match="num_tasks must be >= 2"):
        build_model("mmoe", FIELD_DIMS, 1, 1)
    with pytest.raises(ValueError, match="dropout"):
        build_model("mmoe", FIELD_DIMS, 1, 2, dropout=1.5)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_model(tmp_path / "missing.pt")
    bad = tmp_path / "bad.pt"
    torch.save({"weights": 1}, bad)
    with pytest.raises(ValueError, match="not a backbone checkpoint"):
        load_model(bad)


def test_ple_stacks_expert_outputs_batch_major_without_changing_a_bit() -> None:
    """``expert_stack`` (batch-major, saving the gates a transposing copy) gives exactly the
    outputs and gradients of the plain ``torch.cat`` along the expert dimension."""
    import agents.models.ple as ple

    torch.manual_seed(0)
    model = build_model("ple", FIELD_DIMS, NUM_NUMERICAL, 3, **SMALL).eval()

    def outputs_and_grads():
        model.zero_grad()
        probs = model(*batch(64))
        probs.sum().backward()
        return [probs.detach()] + [p.grad.clone() for p in model.parameters()]

    stacked = outputs_and_grads()
    stack = ple.expert_stack
    try:
        ple.expert_stack = torch.cat
        plain = outputs_and_grads()
    finally:
        ple.expert_stack = stack
    assert all(torch.equal(a, b) for a, b in zip(stacked, plain, strict=True))
    parts = [torch.randn(2, 5, 3), torch.randn(4, 5, 3)]
    joined = ple.expert_stack(parts)
    assert torch.equal(joined, torch.cat(parts)) and joined.transpose(0, 1).is_contiguous()


def test_experts_first_layer_layout_changes_no_bit_of_outputs_or_gradients() -> None:
    """The first layer stored ``[in, E, out]`` and read as one ``[in, E * out]`` GEMM gives
    exactly what the ``[E, in, out]`` weight (drawn by the same seed) gave through its
    transposing copy: outputs, input gradients and weight gradients."""
    from agents.models.layers import Experts

    torch.manual_seed(3)
    experts = Experts(4, 24, [16, 8], dropout=0.0)
    torch.manual_seed(3)
    legacy = torch.empty(4, 24, 16).uniform_(-(24**-0.5), 24**-0.5)  # the old draw
    assert torch.equal(experts.weights[0].detach(), legacy.permute(1, 0, 2))
    legacy = legacy.requires_grad_()
    x = torch.randn(32, 24, requires_grad=True)
    out = experts(x)
    (out * torch.arange(out.numel()).view_as(out).sin()).sum().backward()
    x_grad, weight_grad = x.grad.clone(), experts.weights[0].grad.clone()
    x.grad = None
    bias = experts.biases[0].detach()
    flat = legacy.permute(1, 0, 2).reshape(24, 4 * 16)  # what forward did before
    h = torch.addmm(bias.reshape(1, -1), x, flat).view(-1, 4, 16).transpose(0, 1).relu()
    w1, b1 = experts.weights[1].detach(), experts.biases[1].detach()
    reference = torch.baddbmm(b1, h, w1).relu()
    (reference * torch.arange(out.numel()).view_as(out).sin()).sum().backward()
    assert torch.equal(out.detach(), reference.detach())
    assert torch.equal(x_grad, x.grad)
    assert torch.equal(weight_grad, legacy.grad.permute(1, 0, 2))
    sliced = torch.randn(4, 32, 24)  # the per-expert input path reads the same weights
    torch.testing.assert_close(
        experts(sliced),
        torch.baddbmm(b1, torch.baddbmm(bias, sliced, legacy.detach()).relu(), w1).relu(),
    )


@pytest.mark.parametrize("name", ["ple", "mmoe", "esmm"])
def test_legacy_backbone_checkpoints_load_into_the_new_expert_layout(name, tmp_path) -> None:
    """An ``rmtl-backbone/1`` file (first expert layer saved ``[E, in, out]``) still loads and
    predicts exactly what the model that wrote it predicted."""
    from agents.models.layers import Experts

    model = build_model(name, FIELD_DIMS, NUM_NUMERICAL, 2, **SMALL).eval()
    path = save_model(model, tmp_path / "new.pt")
    payload = torch.load(path, weights_only=True)
    legacy = [n for n, m in model.named_modules() if isinstance(m, Experts)]
    assert legacy, f"{name} has no Experts to migrate"
    for module in legacy:
        key = f"{module}.weights.0"
        payload["state_dict"][key] = payload["state_dict"][key].permute(1, 0, 2).contiguous()
    payload["format"] = "rmtl-backbone/1"
    torch.save(payload, tmp_path / "legacy.pt")
    restored = load_model(tmp_path / "legacy.pt").eval()
    torch.testing.assert_close(restored(*batch()), model(*batch()), rtol=0, atol=0)


def test_int16_dropout_masks_keep_the_rate_and_the_mean() -> None:
    from agents.models.layers import Dropout, dropout_masks
    from agents.trainer import TrainConfig

    layer = Dropout(0.2).train()
    x = torch.ones(1_000_000)
    torch.manual_seed(3)
    default = layer(x)
    torch.manual_seed(3)
    assert torch.equal(default, torch.nn.Dropout(0.2).train()(x))  # the default is torch's own
    with dropout_masks("int16"):
        torch.manual_seed(3)
        first = layer(x)
        torch.manual_seed(3)
        again = layer(x)
        assert layer.eval()(x) is x  # eval mode: no mask
        layer.train()
        assert Dropout(0.0).train()(x) is x
    assert torch.equal(first, again)  # seeded
    assert not torch.equal(first, default)  # other random numbers than torch's masks
    kept = (first != 0).float().mean().item()
    assert abs(kept - (1 - 6554 / 32768)) < 2e-3  # p rounded to 6554/32768 = 0.20001
    assert abs(first.mean().item() - 1.0) < 5e-3  # kept values scaled by 1 / (1 - p)
    assert not torch.equal(layer(x), layer(x))  # back to torch's masks, fresh each call
    with pytest.raises(ValueError, match="dropout masks must be one of"), dropout_masks("float8"):
        pass
    with pytest.raises(ValueError, match="TrainConfig.dropout_masks must be one of"):
        TrainConfig(dropout_masks="float8")
