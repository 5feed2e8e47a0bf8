"""Training minibatches of streamed splits: block-shuffled epochs cover every row once, and rank
shards give each rank its own blocks in step."""

from __future__ import annotations

import numpy as np
import pytest

from agents.batching import rank_minibatches, split_minibatches


def test_block_shuffled_minibatches_cover_every_row_once(kr_tiny_regrouped) -> None:
    data, streamed = kr_tiny_regrouped
    memory, split = data.split("train"), streamed.split("train")
    epochs = []
    for seed in (0, 0, 1):
        batches = list(split_minibatches(split, 256, np.random.default_rng(seed)))
        assert all(len(b) == 256 for b in batches[:-1]) and 0 < len(batches[-1]) <= 256
        index = np.concatenate([b.index for b in batches])
        assert np.array_equal(np.sort(index), np.arange(len(memory)))
        for b in batches:
            assert np.array_equal(b.categorical, memory.categorical[b.index])
            assert np.array_equal(b.labels, memory.labels[b.index])
        epochs.append(index)
    assert np.array_equal(epochs[0], epochs[1])  # the same seed: the same order
    assert not np.array_equal(epochs[0], epochs[2])
    assert not np.array_equal(epochs[0], np.arange(len(memory)))  # shuffled
    in_order = np.concatenate([b.index for b in split_minibatches(split, 256)])  # no rng: in order
    assert np.array_equal(in_order, np.arange(len(memory)))


def test_rank_shards_read_disjoint_blocks_in_step(kr_tiny_regrouped) -> None:
    _, streamed = kr_tiny_regrouped
    split = streamed.split("train")
    read = split.read_block
    world, seen, schedules, after = 3, [], [], []
    for rank in range(world):
        rng = np.random.default_rng(7)
        shares = list(rank_minibatches(split, read, 300, rng, rank, world))
        seen.append(np.concatenate([batch["index"] for batch, _ in shares]))
        schedules.append([rows for _, rows in shares])
        assert all(len(batch["index"]) <= 100 for batch, _ in shares)  # the local batch
        after.append(rng.integers(1 << 30))
    assert schedules[0] == schedules[1] == schedules[2]  # every rank takes the same steps
    assert sum(schedules[0]) == len(split)
    every = np.concatenate(seen)
    assert np.array_equal(np.sort(every), np.arange(len(split)))  # each row on one rank, once
    assert after[0] == after[1] == after[2]  # the shared generator stays in step
    with pytest.raises(ValueError, match="multiple of the 3 ranks"):
        next(rank_minibatches(split, read, 256, np.random.default_rng(0), 0, 3))
