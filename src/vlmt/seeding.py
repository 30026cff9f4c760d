"""Every seed a run derives from `train.seed`, in one place.

- `seed_everything(seed)`: Python, numpy and torch generators (model construction, dropout).
- `stream_seed(seed, task_type, occurrence)`: the seed of one task's training batch order
  (`vlmt.tasks.base.EpochBatchSampler`). Distinct task types get distinct streams; so do two tasks
  of one type in a run (`occurrence` counts them).
- `step_seed(seed, rank, step)`: the generators of process `rank` at iteration `step` under DDP.

The first task types keep the stream seeds they had when they were written
(`seed * 7919 + offset`, their configs declare the offset: `stream_offset`), so documented seeded
results still reproduce; any other type derives its offset from its name.
- `seeded(seed)`: a block whose torch draws (a module's initial weights, say) come from `seed`,
  leaving the global generator as it found it.
"""

from __future__ import annotations

import contextlib
import random
import zlib
from typing import Iterator

import numpy as np
import torch

_OCCURRENCE_STRIDE = 1_000_003  # a prime beyond every offset: a second task of one type never meets a first


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


@contextlib.contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Torch's global generator seeded with `seed` inside the block and restored after it, so a
    library function's draws depend on its seed alone and leave the caller's stream untouched."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def stream_offset(task_type: str, pinned: int | None = None) -> int:
    """The fixed offset of a task type's batch stream: `pinned` when its config declares one (the
    first types, 1-3), else 10 + a CRC-32 of the name below 10^6 (stable across runs, processes and
    platforms)."""
    return pinned if pinned is not None else 10 + zlib.crc32(task_type.encode("utf-8")) % 999_983


def stream_seed(seed: int, task_type: str, occurrence: int = 0, *, pinned: int | None = None) -> int:
    """Seed of the training batch order of the `occurrence`-th task of type `task_type` in a run
    seeded `seed` (`pinned`: the offset its config declares, if any)."""
    return seed * 7919 + stream_offset(task_type, pinned) + occurrence * _OCCURRENCE_STRIDE


def step_seed(seed: int, rank: int, step: int) -> int:
    """Seed of process `rank`'s generators at iteration `step` of a DDP run: a function of
    (seed, rank, step) only, so a resumed run draws what an uninterrupted one draws."""
    return int(np.random.SeedSequence((seed, rank, step)).generate_state(1, np.uint64)[0] % 2**63)
