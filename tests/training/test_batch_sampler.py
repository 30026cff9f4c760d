"""The resumable batch order shared by tasks."""

from __future__ import annotations

import itertools

import torch

from vlmt.tasks.base import EpochBatchSampler, move_to


def take(sampler, n):
    return list(itertools.islice(iter(sampler), n))


def test_batch_k_depends_only_on_seed_and_k():
    full = take(EpochBatchSampler(10, 3, seed=4), 9)  # 3 batches per epoch, remainder dropped
    assert take(EpochBatchSampler(10, 3, seed=4, start=5), 4) == full[5:]
    for epoch in range(3):
        batches = full[3 * epoch:3 * epoch + 3]
        flat = [i for b in batches for i in b]
        assert len(set(flat)) == 9 and all(len(b) == 3 for b in batches)  # no repeats within an epoch
    assert full[:3] != full[3:6]  # a new permutation each epoch
    assert take(EpochBatchSampler(10, 3, seed=5), 3) != full[:3]


def test_processes_share_each_global_batch():
    whole = take(EpochBatchSampler(12, 4, seed=1), 5)
    parts = [take(EpochBatchSampler(12, 4, seed=1, rank=r, world_size=2), 5) for r in range(2)]
    assert [a + b for a, b in zip(*parts)] == whole


def test_small_split_and_move_to():
    assert take(EpochBatchSampler(3, 8, seed=0), 1)[0].__len__() == 3
    batch = move_to({"x": torch.zeros(2), "pair": (torch.ones(1), "text")}, torch.device("cpu"))
    assert batch["pair"][1] == "text" and batch["x"].device.type == "cpu"


def test_works_as_a_dataloader_batch_sampler_with_workers():
    data = torch.arange(20).float()
    sampler = EpochBatchSampler(20, 4, seed=2, start=3)
    loader = torch.utils.data.DataLoader(data, batch_sampler=sampler, num_workers=1)
    got = [b.long().tolist() for b in itertools.islice(iter(loader), 4)]
    assert got == take(EpochBatchSampler(20, 4, seed=2), 7)[3:]
