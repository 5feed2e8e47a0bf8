"""Training, prediction, the polish weights and the critics' replay on a streamed split give what
the in-memory split gives (exactly where the row order is the same)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from agents.critic import CriticConfig
from agents.models import build_model
from agents.pipeline import Splits, polish, run_rmtl, train_dple
from agents.replay import StreamedReplay, build_replay
from agents.rmtl import PRESETS, RMTLAgent, RMTLConfig
from agents.runtime import seed_everything
from agents.trainer import TrainConfig, predict, train_model

SMALL = {"embed_dim": 8, "bottom_dims": (32, 16), "tower_dims": (8,)}


def backbone(data, seed: int = 0):
    seed_everything(seed)
    return build_model("esmm", data.field_dims, len(data.numerical_fields), len(data.tasks),
                       **SMALL)  # fmt: skip


def test_file_order_training_and_prediction_equal_in_memory(kr_tiny_regrouped) -> None:
    data, streamed = kr_tiny_regrouped
    config = TrainConfig(batch_size=256, epochs=2, patience=5, shuffle=False, eval_batch_size=500)
    models, histories = [], []
    for source in (data, streamed):
        model = backbone(data)
        result = train_model(model, source.split("train"), source.split("val"), config,
                             progress=False)  # fmt: skip
        models.append(model)
        histories.append([{k: v for k, v in h.items() if k != "seconds"} for h in result.history])
    for key, value in models[0].state_dict().items():
        assert torch.equal(value, models[1].state_dict()[key]), key  # the same batches: bit-equal
    assert histories[0] == histories[1]
    assert np.array_equal(predict(models[0], data.split("test")),
                          predict(models[0], streamed.split("test")))  # fmt: skip


def test_streamed_replay_has_the_in_memory_transitions(kr_tiny_regrouped) -> None:
    data, streamed = kr_tiny_regrouped
    actor = backbone(data).eval()
    memory = build_replay(actor, data.split("train"), exploration_noise=0.3, seed=4)
    replay = build_replay(actor, streamed.split("train"), exploration_noise=0.3, seed=4)
    assert isinstance(replay, StreamedReplay) and len(replay) == len(memory)
    parts = [replay.block_transitions(k) for k in range(len(replay.blocks))]
    t = memory.transitions
    for field in ("categorical", "numerical", "action", "rewards", "next_categorical",
                  "next_numerical", "terminated"):  # fmt: skip
        joined = np.concatenate([p[field] for p in parts])
        assert np.array_equal(joined, getattr(t, field)), field
    joined = np.concatenate([p["next_action"] for p in parts])
    assert np.array_equal(joined, memory.next_action.numpy())
    # Sessions do cross block boundaries here, so the look-ahead row was needed.
    ends = [b.offset + len(b) - 1 for b in replay.blocks[:-1]]
    assert not t.terminated[ends].all()


def test_critics_and_polish_on_a_streamed_split(kr_tiny_regrouped) -> None:
    data, streamed = kr_tiny_regrouped
    actor = backbone(data).eval()
    config = RMTLConfig(critic_epochs=2, critic_batch_size=256, critic=CriticConfig(embed_dim=8))
    critics = []
    for _ in range(2):
        seed_everything(0)
        agent = RMTLAgent(actor, config)
        result = agent.train_critics(
            build_replay(actor, streamed.split("train"), 0.3), progress=False
        )
        assert result.epochs == 2 and np.isfinite(result.history[-1]["td_loss"])
        critics.append(agent.critic)
    for key, value in critics[0].state_dict().items():
        assert torch.equal(value, critics[1].state_dict()[key]), key  # seeded block shuffling
    agent = RMTLAgent(actor, config, critic=critics[0])
    probs = predict(actor, data.split("train"))
    assert np.array_equal(agent.polish_weights_on(data.split("train"), probs),
                          agent.polish_weights_on(streamed.split("train"), probs))  # fmt: skip
    train = TrainConfig(batch_size=256, epochs=1)
    out = polish(actor, critics[0], Splits.of(streamed), config, train, progress=False)
    assert out.initial_weights.shape == (len(streamed.split("train")), len(data.tasks))


@pytest.mark.slow
def test_run_rmtl_end_to_end_on_streamed_splits(kr_tiny_regrouped) -> None:
    _, streamed = kr_tiny_regrouped
    config = dataclasses.replace(PRESETS["paper"], critic_epochs=1, critic_batch_size=512,
                                 critic=CriticConfig(embed_dim=8))  # fmt: skip
    result = run_rmtl(Splits.of(streamed), "esmm", train=TrainConfig(batch_size=512, epochs=1),
                      config=config)  # fmt: skip
    assert set(result.metrics) == {"esmm", "rmtl-esmm", "oracle"}
    assert 0.0 < result.metrics["rmtl-esmm"]["is_click"]["auc"] < 1.0


def test_dple_refuses_a_streamed_split(kr_tiny_regrouped) -> None:
    _, streamed = kr_tiny_regrouped
    with pytest.raises(ValueError, match="D-PLE steps SessionRecEnv"):
        train_dple(Splits.of(streamed))


def test_rank_shards_need_a_streamed_run() -> None:
    from agents.pipeline import DataConfig
    from agents.runtime import config_record

    with pytest.raises(ValueError, match="rank_shards reads a streamed split's blocks"):
        DataConfig(rank_shards=True)
    assert config_record(DataConfig(stream=True, rank_shards=True))["rank_shards"] is True
    assert "rank_shards" not in config_record(DataConfig(stream=True))
    assert set(config_record(DataConfig())) == {
        "dataset",
        "scale",
        "data_seed",
        "data_dir",
        "roles",
    }
