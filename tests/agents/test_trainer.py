"""The supervised trainer: learning, early stopping, best-epoch restore, loss weights, seeding."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from agents.models import build_model
from agents.runtime import denormals_flushed, flush_denormals, resolve_device, seed_everything
from agents.trainer import TrainConfig, evaluate, predict, train_model, weighted_bce

SMALL = {"embed_dim": 8, "bottom_dims": (64, 32), "tower_dims": (16,), "num_experts": 4}


@pytest.fixture(scope="module")
def kr_tiny():
    from rmtl_env.data import load_dataset

    dataset = load_dataset("kuairand-synthetic", scale="tiny", seed=0)
    return dataset, *(dataset.split(s) for s in ("train", "val", "test"))


def fit(kr_tiny, seed: int = 0, name: str = "esmm", **config):
    dataset, train, val, _ = kr_tiny
    seed_everything(seed)
    model = build_model(name, dataset.field_dims, len(dataset.numerical_fields), 2, **SMALL)
    params = {"batch_size": 256, "epochs": 20, "patience": 2, "seed": seed, **config}
    return model, train_model(model, train, val, TrainConfig(**params), progress=False)


def test_trained_model_beats_chance_on_both_tasks(kr_tiny) -> None:
    model, result = fit(kr_tiny)
    metrics = evaluate(model, kr_tiny[3])
    assert all(m["auc"] > 0.55 for m in metrics.values()), metrics
    assert result.best_epoch >= 2
    losses = [h["train_loss"] for h in result.history]
    assert losses[-1] < losses[0]


def test_best_epoch_weights_are_restored_and_early_stopping_counts_patience(kr_tiny) -> None:
    model, result = fit(kr_tiny, epochs=40, patience=2)
    aucs = [h["val_auc"] for h in result.history]
    assert result.best_val_auc == pytest.approx(max(aucs))
    assert aucs[result.best_epoch - 1] == max(aucs)
    if result.stopped_early:
        assert len(aucs) == result.best_epoch + 2
    restored = np.mean([m["auc"] for m in evaluate(model, kr_tiny[2]).values()])
    assert restored == pytest.approx(result.best_val_auc, abs=1e-9)


def test_same_seed_same_numbers_on_cpu(kr_tiny) -> None:
    first, _ = fit(kr_tiny, seed=3, epochs=2)
    second, _ = fit(kr_tiny, seed=3, epochs=2)
    np.testing.assert_array_equal(predict(first, kr_tiny[3]), predict(second, kr_tiny[3]))


def test_loss_weights_reach_the_loss(kr_tiny) -> None:
    """Zero weight on task 1 leaves task 1's tower untouched; the callable sees detached probs."""
    seen = {}

    def only_first_task(categorical, numerical, probs, labels):
        seen["grad"] = probs.requires_grad
        seen["tasks"] = probs.shape[1]
        return torch.stack([torch.ones(len(probs)), torch.zeros(len(probs))], 1)

    dataset, train, val, _ = kr_tiny
    seed_everything(0)
    model = build_model(
        "shared_bottom", dataset.field_dims, len(dataset.numerical_fields), 2, **SMALL
    )
    tower_before = [p.clone() for p in model.towers[1].parameters()]
    config = TrainConfig(batch_size=256, epochs=1, weight_decay=0.0)
    train_model(model, train, val, config, loss_weights=only_first_task, progress=False)
    assert seen == {"grad": False, "tasks": 2}
    for before, after in zip(tower_before, model.towers[1].parameters(), strict=True):
        torch.testing.assert_close(before, after, rtol=0, atol=0)


def test_weighted_bce_is_the_mean_over_tasks_of_weighted_means() -> None:
    probs = torch.tensor([[0.9, 0.2], [0.4, 0.6]])
    labels = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    weights = torch.tensor([[2.0, 1.0], [1.0, 3.0]])
    bce = -(labels * probs.log() + (1 - labels) * (1 - probs).log())
    expected = ((weights * bce)[:, 0].mean() + (weights * bce)[:, 1].mean()) / 2
    torch.testing.assert_close(weighted_bce(probs, labels, weights), expected)


def test_config_and_device_errors() -> None:
    with pytest.raises(ValueError, match="batch_size"):
        TrainConfig(batch_size=0)
    with pytest.raises(ValueError, match="device must be"):
        resolve_device("tpu")
    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type in {"cpu", "cuda"}


def test_flushing_subnormals_zeroes_them_and_keeps_normal_numbers() -> None:
    try:
        assert flush_denormals() and denormals_flushed()
        tiny = torch.tensor([1e-40, 1e-30, -2e-39])
        assert (tiny * 1.0).tolist() == [0.0, pytest.approx(1e-30, rel=1e-6), 0.0]
    finally:
        torch.set_flush_denormal(False)
    assert not denormals_flushed()


def test_keep_initial_lets_the_starting_weights_win_early_stopping(kr_tiny) -> None:
    """The polish guard: a run that only gets worse restores the weights it started from."""
    dataset, train, val, _ = kr_tiny
    model, _ = fit(kr_tiny, epochs=6)
    start = {k: v.clone() for k, v in model.state_dict().items()}
    start_auc = np.mean([m["auc"] for m in evaluate(model, val).values()])
    # A learning rate far too large: every epoch lands below the starting point.
    config = TrainConfig(lr=0.5, batch_size=256, epochs=3, patience=2, keep_initial=True)
    result = train_model(model, train, val, config, progress=False)
    assert result.best_epoch == 0 and result.history[0] == {"epoch": 0, "val_auc": start_auc}
    assert result.best_val_auc == pytest.approx(start_auc)
    for key, value in model.state_dict().items():
        assert torch.equal(value, start[key])
    unguarded = train_model(model, train, val, TrainConfig(lr=0.5, batch_size=256, epochs=2))
    assert unguarded.best_epoch >= 1  # without the guard the best polished epoch is kept


def test_bf16_runs_the_forward_pass_in_bfloat16_and_still_learns(kr_tiny) -> None:
    """The towers' hidden layers see bfloat16 in training and in bf16 prediction, their output
    layers float32; the weights stay float32, every probability is float32 with float32's
    resolution (no ties from bf16 rounding), and the model learns about as well as in fp32."""
    dataset, train, val, test = kr_tiny
    hidden: set[torch.dtype] = set()
    output: set[torch.dtype] = set()
    seed_everything(0)
    model = build_model("esmm", dataset.field_dims, len(dataset.numerical_fields), 2, **SMALL)
    tower = model.towers[0]
    tower[0].register_forward_hook(lambda _m, _i, out: hidden.add(out.dtype))
    tower[-1].register_forward_hook(lambda _m, _i, out: output.add(out.dtype))
    config = TrainConfig(batch_size=256, epochs=20, patience=2, precision="bf16")
    train_model(model, train, val, config, progress=False)
    assert hidden == {torch.bfloat16} and output == {torch.float32}
    assert all(p.dtype == torch.float32 for p in model.parameters())
    hidden.clear()
    full = predict(model, test)
    assert hidden == {torch.float32}  # fp32 prediction: no autocast
    hidden.clear()
    half = predict(model, test, precision="bf16")
    assert hidden == {torch.bfloat16} and half.dtype == np.float32
    assert np.abs(half - full).max() < 0.02
    # A bf16 probability would sit on a grid of 2^-8 relative steps: far fewer distinct values.
    distinct = len(np.unique(half[:, 0]))
    assert distinct > 0.9 * len(np.unique(full[:, 0]))
    assert distinct > 2 * len(np.unique(torch.as_tensor(half[:, 0]).bfloat16().float().numpy()))
    bf16 = evaluate(model, test, precision="bf16")
    fp32 = evaluate(fit(kr_tiny)[0], test)
    for task in bf16:
        assert bf16[task]["auc"] > 0.55 and abs(bf16[task]["auc"] - fp32[task]["auc"]) < 0.03
    with pytest.raises(ValueError, match="TrainConfig.precision must be one of"):
        TrainConfig(precision="fp16")
