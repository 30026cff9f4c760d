"""Devices and processes: which device a run trains on, and the process group under torchrun.

`torchrun --nproc_per_node N -m vlmt train CONFIG` starts N processes; each calls
`init_distributed`, which starts the default process group (NCCL on GPUs, gloo on CPUs) once per
process and leaves it running until the process exits.
"""

from __future__ import annotations

import atexit
import os

import torch

from vlmt.errors import ConfigError


def resolve_device(name: str, local_rank: int = 0, *, world: int = 1) -> torch.device:
    """`auto` -> cuda when available, else cpu; `cuda` without one is a config error. Under
    torchrun (`world` > 1) each process takes the GPU of its LOCAL_RANK, so a device naming one
    GPU (`cuda:0`) is refused there: every process would use the same GPU."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"train.device: {name!r} requested but no CUDA device is available")
    if name.startswith("cuda:") and world > 1:
        raise ConfigError(f"train.device: {name!r} names one GPU, but under torchrun each of the {world} "
                          f"processes takes the GPU of its LOCAL_RANK; use 'cuda' or 'auto'")
    if name == "cuda":
        if local_rank >= torch.cuda.device_count():
            raise ConfigError(f"train.device: process LOCAL_RANK {local_rank} has no GPU of its own "
                              f"({torch.cuda.device_count()} visible); start at most that many processes per node")
        name = f"cuda:{local_rank}"
    return torch.device(name)


def init_distributed(device: str = "auto") -> tuple[int, int, int]:
    """(rank, world size, local rank); starts the process group when launched by torchrun
    (WORLD_SIZE > 1): NCCL when `device` (train.device) resolves to a GPU, which then becomes
    the process's current device; gloo on CPUs (also on a GPU host told to train on the CPU).

    The group lives until the process exits, and later trainings in the same process (the cells
    of `vlmt search-layers`, a run and its resume) use it: destroying the default group and
    starting it again can pair a fast process with a slow one's previous group and hang."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1, 0
    import torch.distributed as dist

    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    dev = resolve_device(device, local_rank, world=world)
    if not dist.is_initialized():
        if dev.type == "cuda":
            torch.cuda.set_device(dev)  # NCCL collectives (the final barrier) run on the current device
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo")
        atexit.register(_end_process_group)
    return dist.get_rank(), dist.get_world_size(), local_rank


def _end_process_group() -> None:
    import torch.distributed as dist

    if dist.is_initialized():
        dist.destroy_process_group()
