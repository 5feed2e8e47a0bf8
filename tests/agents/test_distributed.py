"""Two-process data-parallel training on gloo: the ranks hold identical parameters, and the
model (and RMTL's critics) end as in the single-process run on the same data."""

from __future__ import annotations

import json
import socket

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp

# No dropout: its masks are drawn per process, so a rank's half-batch would not see the
# single process's masks.
SMALL = {"embed_dim": 8, "bottom_dims": (64, 32), "tower_dims": (16,), "dropout": 0.0}
CONFIG = {"batch_size": 256, "epochs": 3, "patience": 5, "seed": 0}


def train_once(out_dir: str, rank: int | None = None) -> None:
    """Train ESMM on the tiny KuaiRand twin; write parameters and test metrics under
    ``out_dir`` (``rank`` None: a single process)."""
    from agents.models import build_model
    from agents.runtime import seed_everything
    from agents.trainer import TrainConfig, evaluate, train_model
    from rmtl_env.data import load_dataset

    torch.set_num_threads(1)
    data = load_dataset("kuairand-synthetic", scale="tiny")
    train, val, test = (data.split(s) for s in ("train", "val", "test"))
    # Rank 1 starts from other weights on purpose: DDP broadcasts rank 0's (seed 0, as alone).
    seed_everything(0 if rank in (None, 0) else 100 + rank)
    model = build_model("esmm", data.field_dims, len(data.numerical_fields), 2, **SMALL)
    result = train_model(model, train, val, TrainConfig(**CONFIG), progress=False)
    name = "single" if rank is None else f"rank{rank}"
    torch.save(model.state_dict(), f"{out_dir}/{name}.pt")
    with open(f"{out_dir}/{name}.json", "w") as handle:
        json.dump({"test": evaluate(model, test), "history": result.history}, handle)


def critics_once(out_dir: str, rank: int | None = None) -> None:
    """RMTL's critic stage (2 epochs, a DDPG actor step too) on the tiny KuaiRand twin, in
    batches whose last one has a single row, so that rank 1's share of it is empty."""
    from agents.critic import CriticConfig
    from agents.models import build_model
    from agents.replay import build_replay
    from agents.rmtl import RMTLAgent, RMTLConfig
    from agents.runtime import seed_everything
    from rmtl_env.data import load_dataset

    torch.set_num_threads(1)
    data = load_dataset("kuairand-synthetic", scale="tiny")
    train = data.split("train")
    seed_everything(0)  # as under torchrun: every rank builds the same actor and replay
    actor = build_model("esmm", data.field_dims, len(data.numerical_fields), 2, **SMALL)
    config = RMTLConfig(critic_epochs=2, critic_batch_size=len(train) - 1, actor_update=True,
                        critic=CriticConfig(embed_dim=8, dropout=0.0))  # fmt: skip
    agent = RMTLAgent(actor, config)
    result = agent.train_critics(build_replay(actor, train, 0.3), progress=False)
    name = "critics-single" if rank is None else f"critics-rank{rank}"
    torch.save({**agent.critic.state_dict(), **{f"actor.{k}": v for k, v in
                actor.state_dict().items()}}, f"{out_dir}/{name}.pt")  # fmt: skip
    with open(f"{out_dir}/{name}.json", "w") as handle:
        json.dump(result.history, handle)


def worker(rank: int, world: int, port: int, out_dir: str, job=train_once) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                            world_size=world)  # fmt: skip
    try:
        job(out_dir, rank)
    finally:
        dist.destroy_process_group()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_gloo_ranks_train_as_one_process(tmp_path) -> None:
    mp.spawn(worker, args=(2, free_port(), str(tmp_path)), nprocs=2, join=True)
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    for key in ranks[0]:
        assert torch.equal(ranks[0][key], ranks[1][key]), key  # identical after training
    metrics = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    for m in metrics:
        for record in m["history"]:
            record.pop("seconds")
    assert metrics[0] == metrics[1]  # gathered predictions: the same exact AUC on both ranks

    train_once(str(tmp_path))  # one process, seed 0 = rank 0's initial weights
    single = torch.load(tmp_path / "single.pt", weights_only=True)
    alone = json.loads((tmp_path / "single.json").read_text())
    # The same global batches; only the order of float sums differs (gradient averaging): after
    # 3 epochs the parameters differed by at most 5.4e-7 and the test AUCs not at all (6 digits).
    for key in single:
        np.testing.assert_allclose(ranks[0][key], single[key], rtol=0, atol=1e-5, err_msg=key)
    for task, m in alone["test"].items():
        assert abs(metrics[0]["test"][task]["auc"] - m["auc"]) < 1e-4, task
        assert abs(metrics[0]["test"][task]["logloss"] - m["logloss"]) < 1e-5, task


@pytest.mark.slow
def test_two_gloo_ranks_learn_critics_as_one_process(tmp_path) -> None:
    mp.spawn(worker, args=(2, free_port(), str(tmp_path), critics_once), nprocs=2, join=True)
    ranks = [torch.load(tmp_path / f"critics-rank{r}.pt", weights_only=True) for r in (0, 1)]
    for key in ranks[0]:
        assert torch.equal(ranks[0][key], ranks[1][key]), key
    histories = [json.loads((tmp_path / f"critics-rank{r}.json").read_text()) for r in (0, 1)]
    assert histories[0] == histories[1]  # the epoch TD loss is summed over ranks: one decision
    assert all(np.isfinite(list(h.values())).all() for h in histories[0])  # the empty share

    critics_once(str(tmp_path))
    single = torch.load(tmp_path / "critics-single.pt", weights_only=True)
    alone = json.loads((tmp_path / "critics-single.json").read_text())
    for key in single:  # critics and the actor its DDPG step moved
        np.testing.assert_allclose(ranks[0][key], single[key], rtol=0, atol=1e-5, err_msg=key)
    for two, one in zip(histories[0], alone, strict=True):
        for key, value in one.items():
            assert abs(two[key] - value) <= 1e-5 * max(1.0, abs(value)), key


def rank_shards_once(out_dir: str, rank: int, folder: str = "") -> None:
    """Streamed pretraining and critics with each rank reading only its blocks."""
    from agents.critic import CriticConfig
    from agents.models import build_model
    from agents.replay import build_replay
    from agents.rmtl import RMTLAgent, RMTLConfig
    from agents.runtime import seed_everything
    from agents.trainer import TrainConfig, predict, train_model
    from rmtl_env.data import StreamedDataset

    torch.set_num_threads(1)
    data = StreamedDataset(folder, buffer_rows=700, rank_shards=True)
    train, val = data.split("train"), data.split("val")
    seed_everything(0)
    model = build_model("esmm", data.field_dims, len(data.numerical_fields), 2, **SMALL)
    result = train_model(model, train, val, TrainConfig(**CONFIG), progress=False)
    config = RMTLConfig(critic_epochs=2, critic_batch_size=256,
                        critic=CriticConfig(embed_dim=8, dropout=0.0))  # fmt: skip
    agent = RMTLAgent(model, config)
    critics = agent.train_critics(build_replay(model, train, 0.3), progress=False)
    read, groups = val.read, []
    val.read = lambda block: (groups.append(block.group), read(block))[1]
    np.save(f"{out_dir}/shards-probs{rank}.npy", predict(model, val))
    state = {
        **model.state_dict(),
        **{f"critic.{k}": v for k, v in agent.critic.state_dict().items()},
    }
    torch.save(state, f"{out_dir}/shards-rank{rank}.pt")
    with open(f"{out_dir}/shards-rank{rank}.json", "w") as handle:
        json.dump({"history": result.history, "critics": critics.history, "val_groups": groups},
                  handle)  # fmt: skip


@pytest.mark.slow
def test_two_gloo_ranks_reading_their_own_blocks(tmp_path, kr_tiny_regrouped) -> None:
    from functools import partial

    _, streamed = kr_tiny_regrouped
    job = partial(rank_shards_once, folder=str(streamed.folder))
    mp.spawn(worker, args=(2, free_port(), str(tmp_path), job), nprocs=2, join=True)
    ranks = [torch.load(tmp_path / f"shards-rank{r}.pt", weights_only=True) for r in (0, 1)]
    for key in ranks[0]:
        assert torch.equal(ranks[0][key], ranks[1][key]), key  # in step although reading apart
    logs = [json.loads((tmp_path / f"shards-rank{r}.json").read_text()) for r in (0, 1)]
    groups = [set(log.pop("val_groups")) for log in logs]  # the val blocks each rank read
    for log in logs:
        for record in log["history"]:
            record.pop("seconds")
    assert logs[0] == logs[1]  # the same losses, AUCs and stopping decisions on both ranks
    assert all(np.isfinite(r["train_loss"]) for r in logs[0]["history"])
    assert all(np.isfinite(r["td_loss"]) for r in logs[0]["critics"])
    # Prediction too reads a block per rank, and every rank gets every row in order.
    val = streamed.split("val")
    assert not groups[0] & groups[1] and groups[0] | groups[1] == {b.group for b in val.blocks()}
    probs = [np.load(tmp_path / f"shards-probs{r}.npy") for r in (0, 1)]
    assert np.array_equal(probs[0], probs[1]) and probs[0].shape == (len(val), 2)
    from agents.models import build_model
    from agents.trainer import predict

    alone = build_model("esmm", streamed.field_dims, len(streamed.numerical_fields), 2, **SMALL)
    alone.load_state_dict({k: v for k, v in ranks[0].items() if not k.startswith("critic.")})
    in_memory, _ = kr_tiny_regrouped
    np.testing.assert_allclose(probs[0], predict(alone, in_memory.split("val")), atol=1e-6)
