"""``agents.pipeline`` in-process on the tiny KuaiRand twin: the stages compose, seed themselves
and leave their inputs as they were."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from agents import pipeline
from agents.critic import CriticConfig
from agents.models import ModelConfig
from agents.rmtl import PRESETS
from agents.trainer import TrainConfig

MODEL = ModelConfig(embed_dim=8, bottom_dims=(16, 8), tower_dims=(8,))
TRAIN = TrainConfig(epochs=2, batch_size=512)
RMTL = replace(PRESETS["paper"], critic_batch_size=512, critic_epochs=2,
               critic=CriticConfig(embed_dim=8, bottom_dims=(16,)))  # fmt: skip


@pytest.fixture(scope="module")
def splits() -> pipeline.Splits:
    return pipeline.load_splits(pipeline.DataConfig("kuairand-synthetic", "tiny"))


def weights(model: torch.nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in model.state_dict().values()]


def test_the_stages_compose_into_run_rmtl(splits) -> None:
    whole = pipeline.run_rmtl(splits, "esmm", MODEL, TRAIN, RMTL, seed=1)
    backbone = pipeline.pretrain("esmm", splits, MODEL, TRAIN, seed=1).model
    before = weights(backbone)
    critics = pipeline.learn_critics(backbone, splits.train, RMTL, seed=1)
    polished = pipeline.polish(backbone, critics.critic, splits, RMTL, TRAIN, seed=1)
    assert all(torch.equal(a, b) for a, b in zip(before, weights(backbone), strict=True))
    results = pipeline.evaluate({"esmm": backbone, "rmtl-esmm": polished.model}, splits.test)
    assert results == whole.metrics  # each stage seeds itself: the same numbers either way
    assert list(results) == ["esmm", "rmtl-esmm", "oracle"]
    assert critics.result.epochs == 2 and polished.initial_weights.shape == (len(splits.train), 2)
    assert not all(torch.equal(a, b) for a, b in zip(before, weights(polished.model), strict=True))


def test_train_dple_moves_the_pretrained_actor(splits, tmp_path) -> None:
    from agents.checkpoint import save_model
    from agents.dple import DPLEConfig

    backbone = pipeline.pretrain("ple", splits, MODEL, TRAIN, seed=0).model
    checkpoint = save_model(backbone, tmp_path / "ple.pt")
    config = DPLEConfig(actor_steps=64, actor_batch_size=32, critic_batch_size=256,
                        critic_max_epochs=2)  # fmt: skip
    out = pipeline.train_dple(splits, config, checkpoint, "ple", MODEL, seed=0)
    predictions: dict = {}
    pipeline.evaluate({"ple": backbone, "d-ple": out.model}, splits.test, predictions=predictions)
    assert out.result.actor_updates > 0
    assert abs(predictions["d-ple"] - predictions["ple"]).mean() > 0
