"""Loss reductions that give the same objective under DDP as in one process.

DistributedDataParallel averages the processes' gradients. When each process's loss is a mean over
a fixed number of items per example (the VQA loss: a sum over answers, averaged over questions;
every process holds the same number of questions), the average of the processes' means is the
mean of the global batch, and DDP trains the objective of one process with the global batch.

When the number of items varies between examples (the grounding loss averages over real
(phrase, proposal) pairs, and sentences have different numbers of phrases, images different
numbers of proposals), the average of per-process means weighs each process's items by the
inverse of that process's count: a different objective. `global_mean` divides by the count of the
global batch instead, found with one all-reduce of the count; `global_sum` gives other batch
statistics (SVLR's attribute loss weighs by the batch's positive fraction per attribute) over the
global batch.
"""

from __future__ import annotations

import torch
from torch import Tensor


def data_parallel_world() -> int:
    """Number of processes of the default process group, 1 when there is none."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size()
    return 1


def global_mean(total: Tensor, count: Tensor | int) -> Tensor:
    """`total / count` over the global batch: in one process the plain mean; under DDP each
    process returns `total * world / (count summed over processes)`, so that the gradient DDP
    averages over the processes is the gradient of (sum of all totals) / (sum of all counts).

    Under DDP every process must call it the same number of times in the same order (the
    trainer's processes run the same tasks at every step); the count carries no gradient.
    """
    world = data_parallel_world()
    if world == 1:
        return total / count if float(count) > 0 else total * 0.0
    import torch.distributed as dist

    n = torch.as_tensor(count, dtype=torch.float32, device=total.device).detach().clone()
    dist.all_reduce(n)  # sum over processes
    return total * world / n.clamp(min=1.0)  # no item anywhere: total is 0, and so is the loss


def global_sum(value: Tensor) -> Tensor:
    """`value` summed over the processes, without gradient (a batch statistic such as a count);
    `value` itself in one process. Same calling rule as `global_mean`."""
    if data_parallel_world() == 1:
        return value.detach()
    import torch.distributed as dist

    out = value.detach().clone()
    dist.all_reduce(out)
    return out
