"""What the trainer expects of a task, and a resumable batch order tasks can share.

A task owns everything specific to it: its data (train stream and evaluation splits), its
head(s), its loss and its metrics. The training loop only ever does

    batch = next(stream)                    # stream = task.batches("train", start=k)
    out = task(model, move_to(batch, dev))  # {"loss": scalar tensor, other scalars to log}
    metrics = task.evaluate(model, "val", device=dev)

so it knows nothing about individual tasks. Tasks are `torch.nn.Module`s so that their heads'
parameters are optimised and checkpointed together with the model.

Resumability: the k-th training batch must be a function of (seed, k) only, so that a run
resumed at step k sees exactly the batches an uninterrupted run would have seen.
`EpochBatchSampler` gives that order (a fresh permutation per epoch, seeded by (seed, epoch)),
and works as a DataLoader `batch_sampler` with worker processes.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Iterator, Protocol, runtime_checkable

import torch
from torch import nn

from vlmt.data.features.resident import StoreRows
from vlmt.errors import ConfigError


@runtime_checkable
class Task(Protocol):
    """Protocol every task implements (in practice an `nn.Module` subclass)."""

    name: str
    primary_metric: str      # key of `evaluate`'s result that ranks checkpoints
    higher_is_better: bool   # direction of the primary metric

    def __call__(self, model: nn.Module, batch: Any) -> dict[str, torch.Tensor]:
        """Loss of one batch: {"loss": scalar tensor, ...other scalars to log}."""
        ...

    def batches(self, split: str, *, start: int = 0, rank: int = 0, world_size: int = 1) -> Iterator[Any]:
        """Batches of `split`. "train": an endless stream whose k-th batch depends on (seed, k)
        only, starting at batch `start`; under DDP, process `rank` of `world_size` gets its
        equal share of each global batch. Other splits: one pass in a fixed order."""
        ...

    def evaluate(self, model: nn.Module, split: str, *, device: torch.device) -> dict[str, float]:
        """Metrics of `model` on a whole split (the task calls model.eval() / no_grad itself)."""
        ...

    def parameters(self) -> Iterator[nn.Parameter]: ...


class EpochBatchSampler(torch.utils.data.Sampler):
    """Endless batches of example indices; batch k depends on (seed, k) only.

    Epoch e is a permutation drawn from a generator seeded with (seed, e); it is cut into
    `len // batch_size` full batches (the remainder of each epoch is dropped, as usual). Starting
    at `start` skips straight to that batch without drawing the earlier ones. With `world_size`
    processes, `batch_size` is the global batch and process `rank` gets its contiguous slice.
    """

    def __init__(self, num_examples: int, batch_size: int, *, seed: int, start: int = 0,
                 rank: int = 0, world_size: int = 1):
        if num_examples < 1 or batch_size < 1:
            raise ValueError("num_examples and batch_size must be >= 1")
        if batch_size % world_size:
            raise ValueError(f"global batch {batch_size} is not divisible by {world_size} processes")
        self.rank, self.world_size = rank, world_size
        self.num_examples = num_examples
        # a split smaller than one batch gives batches of the whole split (a multiple of world_size)
        self.batch_size = min(batch_size, num_examples - num_examples % world_size)
        if self.batch_size < 1:
            raise ValueError(f"{num_examples} examples cannot be shared by {world_size} processes")
        self.per_epoch = num_examples // self.batch_size
        self.seed = seed
        self.start = start

    def permutation(self, epoch: int) -> torch.Tensor:
        g = torch.Generator().manual_seed((self.seed * 1_000_003 + epoch) % (2**63))
        return torch.randperm(self.num_examples, generator=g)

    def __iter__(self) -> Iterator[list[int]]:
        k = self.start
        while True:
            epoch, j = divmod(k, self.per_epoch)
            perm = self.permutation(epoch)
            local = self.batch_size // self.world_size
            for j in range(j, self.per_epoch):
                first = j * self.batch_size + self.rank * local
                yield perm[first:first + local].tolist()
            k = (epoch + 1) * self.per_epoch


class TaskBase(nn.Module):
    """What every shipped task holds: its name, its config, the seed of its training order, and the
    data it was built from. Built from its data (a section's built datasets, of type `built_from`),
    a task has examples to train and evaluate on; built from the saved assets of a model folder
    (`vlmt.load`), it has its head and what reads new inputs, and asking it for examples is a
    ConfigError naming the task."""

    primary_metric: str = ""
    higher_is_better: bool = True

    def __init__(self, *, name: str, config: Any, data: Any, built_from: type | tuple[type, ...], seed: int = 0):
        super().__init__()
        self.name = name
        self.config = config
        self.seed = seed
        self._data = data if isinstance(data, built_from) else None
        self.assets = data.assets if self._data is not None else data

    @property
    def has_examples(self) -> bool:
        return self._data is not None

    @property
    def data(self) -> Any:
        """The datasets the task was built from; ConfigError for a task loaded without them."""
        if self._data is None:
            raise ConfigError(f"tasks.{self.name}: this task was loaded from a saved model without its data, so it "
                              f"has no examples to train or evaluate on")
        return self._data


def move_to(batch: Any, device: torch.device) -> Any:
    """Move every tensor inside a batch (dicts, lists, tuples, dataclasses) to `device`."""
    if isinstance(batch, (torch.Tensor, StoreRows)):  # StoreRows: features gathered on the device
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {k: move_to(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)) and not hasattr(batch, "_fields"):
        return type(batch)(move_to(v, device) for v in batch)
    if hasattr(batch, "_fields"):  # namedtuple
        return type(batch)(*(move_to(v, device) for v in batch))
    if dataclasses.is_dataclass(batch) and not isinstance(batch, type):
        return dataclasses.replace(batch, **{f.name: move_to(getattr(batch, f.name), device)
                                             for f in dataclasses.fields(batch) if f.init})
    return batch


class EvalMode:
    """Context manager: model and task in eval mode, restored afterwards."""

    def __init__(self, *modules: Any):  # modules, or encoders behind a protocol (train / eval / training)
        self.modules = modules
        self.states: list[bool] = []

    def __enter__(self) -> EvalMode:
        self.states = [m.training for m in self.modules]
        for m in self.modules:
            m.eval()
        return self

    def __exit__(self, *exc: object) -> None:
        for m, state in zip(self.modules, self.states):
            m.train(state)


def family_data(data: Any, kinds: type | tuple[type, ...]) -> Any:
    """The data of one model family a task reads: `data` itself when it is of one of the `kinds`;
    from a built `datasets` section (or its saved assets), the family registered with those types,
    built on first use (`family_for`, `vlmt.data.section`); else the first of `data.parts` that is
    one; else None."""
    if isinstance(data, kinds):
        return data
    find = getattr(data, "family_for", None)
    if callable(find):
        return find(kinds)
    for part in getattr(data, "parts", ()):
        if isinstance(part, kinds):
            return part
    return None
