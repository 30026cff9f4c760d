"""`global_mean` under a real 2-process gloo group: the gradient DDP averages is the gradient of
the mean over both processes' items, however unevenly the items are shared."""

from __future__ import annotations

import multiprocessing as mp
from pathlib import Path

import torch

from vlmt.tasks.grounding import grounding_loss

# two processes' grounding batches: different sentence, phrase and proposal counts
SHAPES = [(2, 3, 5), (1, 1, 4)]


def make_batch(rank: int) -> tuple[torch.Tensor, ...]:
    b, h, t = SHAPES[rank]
    g = torch.Generator().manual_seed(rank)
    base = torch.randn(b, h, t, generator=g)
    targets = (torch.rand(b, h, t, generator=g) > 0.7).float()
    region_mask = torch.ones(b, t, dtype=torch.bool)
    phrase_mask = torch.ones(b, h, dtype=torch.bool)
    if rank == 0:
        region_mask[1, 3:] = False
        phrase_mask[1, 2] = False
    return base, targets, region_mask, phrase_mask


def loss_of(rank: int, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    base, targets, region_mask, phrase_mask = make_batch(rank)
    return grounding_loss(base * w + b, targets, region_mask, phrase_mask)


def worker(rank: int, store_path: str, out: mp.Queue) -> None:
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", store=dist.FileStore(store_path, 2), rank=rank, world_size=2)
    try:
        w, b = torch.ones((), requires_grad=True), torch.zeros((), requires_grad=True)
        loss_of(rank, w, b).backward()
        grads = torch.stack([w.grad, b.grad])
        dist.all_reduce(grads)  # what DDP does with the gradients: their mean over processes
        out.put((rank, (grads / 2).tolist()))
    finally:
        dist.destroy_process_group()


def test_two_processes_average_to_the_gradient_of_the_global_mean(tmp_path: Path):
    ctx = mp.get_context("fork")  # the children share this process's imports: no start-up cost
    out = ctx.Queue()
    procs = [ctx.Process(target=worker, args=(r, str(tmp_path / "store"), out)) for r in range(2)]
    for p in procs:
        p.start()
    results = dict(out.get(timeout=60) for _ in procs)
    for p in procs:
        p.join(timeout=30)
        assert p.exitcode == 0
    assert results[0] == results[1]
    got = torch.tensor(results[0])

    # one process, all pairs: (sum over both batches' real pairs) / (their number)
    w, b = torch.ones((), requires_grad=True), torch.zeros((), requires_grad=True)
    sums, counts = [], []
    for rank in range(2):
        base, targets, region_mask, phrase_mask = make_batch(rank)
        valid = phrase_mask[:, :, None] & region_mask[:, None, :]
        per_pair = torch.nn.functional.binary_cross_entropy_with_logits(base * w + b, targets, reduction="none")
        sums.append(per_pair[valid].sum())
        counts.append(int(valid.sum()))
    assert counts[0] != counts[1]  # the case where a per-process mean is a different objective
    (sum(sums) / sum(counts)).backward()
    want = torch.stack([w.grad, b.grad])
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-7)

    # the mean of per-process means (what the loss did before) is another objective: in one
    # process without a group, grounding_loss is the plain mean of its batch
    w, b = torch.ones((), requires_grad=True), torch.zeros((), requires_grad=True)
    ((loss_of(0, w, b) + loss_of(1, w, b)) / 2).backward()
    assert not torch.allclose(torch.stack([w.grad, b.grad]), want, rtol=1e-3)


# -- SVLR recognition (Eq. 1 and 2) over two processes' regions --------------------------------

REGIONS = [5, 2]  # regions per process; some have no positive label, attribute positives differ


def recognition_batch(rank: int) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(10 + rank)
    m, k_o, k_a = REGIONS[rank], 6, 4
    obj = torch.randn(m, k_o, generator=g)
    atr = torch.randn(m, k_a, generator=g)
    obj_pos = torch.rand(m, k_o, generator=g) > 0.7
    obj_pos[0] = False  # a region with no object label: no Eq. 1 term
    atr_pos = torch.rand(m, k_a, generator=g) > (0.5 if rank == 0 else 0.9)
    return obj, atr, obj_pos, atr_pos


def recognition_loss(obj, atr, obj_pos, atr_pos, w, b):
    from vlmt.tasks.svlr_recognition import attribute_loss, object_loss

    return object_loss(obj * w + b, obj_pos) + attribute_loss(atr * w + b, atr_pos)


def recognition_worker(rank: int, store_path: str, out: mp.Queue) -> None:
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", store=dist.FileStore(store_path, 2), rank=rank, world_size=2)
    try:
        w, b = torch.ones((), requires_grad=True), torch.zeros((), requires_grad=True)
        recognition_loss(*recognition_batch(rank), w, b).backward()
        grads = torch.stack([w.grad, b.grad])
        dist.all_reduce(grads)
        out.put((rank, (grads / 2).tolist()))
    finally:
        dist.destroy_process_group()


def test_svlr_recognition_losses_under_two_processes_are_the_global_batch_s(tmp_path: Path):
    ctx = mp.get_context("fork")
    out = ctx.Queue()
    procs = [ctx.Process(target=recognition_worker, args=(r, str(tmp_path / "store"), out)) for r in range(2)]
    for p in procs:
        p.start()
    results = dict(out.get(timeout=60) for _ in procs)
    for p in procs:
        p.join(timeout=30)
        assert p.exitcode == 0
    got = torch.tensor(results[0])
    # one process holding both processes' regions: the objective DDP must train
    both = [torch.cat(parts) for parts in zip(*(recognition_batch(r) for r in range(2)))]
    w, b = torch.ones((), requires_grad=True), torch.zeros((), requires_grad=True)
    recognition_loss(*both, w, b).backward()
    torch.testing.assert_close(got, torch.stack([w.grad, b.grad]), rtol=1e-5, atol=1e-7)
