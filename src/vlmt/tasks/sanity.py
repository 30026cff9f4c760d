"""Trainer check, not a paper task: regress a fixed random linear map through a small MLP.

It exists so the training machinery (schedules, seeding, checkpoints, resume, metrics, CLI) can be
exercised end to end on any machine in seconds. Several sanity tasks with different `map_seed`s
share one `sanity_mlp` encoder, which makes task switching observable: each task's validation
error falls only while it is being trained or while the shared encoder helps it.

Data: x ~ N(0, I) in R^in_dim, y = A x / sqrt(in_dim) + noise, with A drawn from `map_seed`;
train and val sets are fixed samples drawn from the same seed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterator

import torch
from torch import nn

from vlmt.config import ModelConfig, TaskConfig, register_model, register_task
from vlmt.errors import ConfigError
from vlmt.tasks.base import EpochBatchSampler


@register_model("sanity_mlp")
@dataclass(frozen=True)
class SanityMLPConfig(ModelConfig):
    in_dim: int = 16
    hidden: int = 32
    dropout: float = 0.1

    def validate(self) -> str | None:
        if self.in_dim < 1 or self.hidden < 1:
            return "in_dim and hidden must be >= 1"
        if not 0.0 <= self.dropout < 1.0:
            return f"dropout must be in [0, 1), got {self.dropout}"
        return None

    def build(self, *, data: Any) -> SanityMLP:
        return SanityMLP(self)

    def create(self) -> SanityMLP:
        return SanityMLP(self)


class SanityMLP(nn.Module):
    """Shared encoder of the trainer check: Linear -> ReLU -> Dropout -> Linear."""

    def __init__(self, config: SanityMLPConfig):
        super().__init__()
        self.config = config
        self.in_dim = config.in_dim
        self.hidden = config.hidden
        self.net = nn.Sequential(nn.Linear(config.in_dim, config.hidden), nn.ReLU(), nn.Dropout(config.dropout),
                                 nn.Linear(config.hidden, config.hidden))

    def forward(self, x: torch.Tensor, depth: int = 2) -> torch.Tensor:
        """(B, in_dim) -> (B, hidden): the output of the first layer (after ReLU and dropout) or of
        the second, so a task can choose the layer it reads, as on the hierarchical encoder."""
        return self.net[:3](x) if depth == 1 else self.net(x)


class SanityLinearTask(nn.Module):
    """Regress y = A x with a linear head on the shared encoder; MSE loss and metric."""

    primary_metric = "mse"
    higher_is_better = False

    def __init__(self, *, name: str, config: SanityLinearConfig, model: SanityMLP, seed: int):
        super().__init__()
        self.name = name
        self.config = config
        self.seed = seed
        c, in_dim = config, model.in_dim
        self.head = nn.Linear(model.hidden, c.out_dim)
        g = torch.Generator().manual_seed(c.map_seed)
        a = torch.randn(c.out_dim, in_dim, generator=g) / math.sqrt(in_dim)
        self.data: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        for split, size in (("train", c.train_size), ("val", c.val_size), ("test", c.val_size)):
            x = torch.randn(size, in_dim, generator=g)
            y = x @ a.T + c.noise * torch.randn(size, c.out_dim, generator=g)
            self.data[split] = (x, y)

    def forward(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        pred = self.head(model(batch["x"], depth=self.config.layer))
        loss = nn.functional.mse_loss(pred.float(), batch["y"])
        return {"loss": loss}

    def num_examples(self, split: str) -> int:
        return len(self.data[split][0])

    def batches(self, split: str, *, start: int = 0, rank: int = 0,
                world_size: int = 1) -> Iterator[dict[str, torch.Tensor]]:
        x, y = self.data[split]
        if split == "train":
            for idx in EpochBatchSampler(len(x), self.config.batch_size, seed=self.seed, start=start,
                                         rank=rank, world_size=world_size):
                yield {"x": x[idx], "y": y[idx]}
        else:
            for i in range(0, len(x), self.config.batch_size):
                yield {"x": x[i:i + self.config.batch_size], "y": y[i:i + self.config.batch_size]}

    @torch.no_grad()
    def evaluate(self, model: nn.Module, split: str, *, device: torch.device) -> dict[str, float]:
        was_training = model.training, self.training
        model.eval()
        self.eval()
        total, count = 0.0, 0
        for batch in self.batches(split):
            pred = self.head(model(batch["x"].to(device), depth=self.config.layer))
            total += float(((pred.float() - batch["y"].to(device)) ** 2).mean(dim=1).sum())
            count += len(batch["x"])
        model.train(was_training[0])
        self.train(was_training[1])
        return {"mse": total / count}


@register_task("sanity_linear")
@dataclass
class SanityLinearConfig(TaskConfig):
    """A regression task of the trainer check: `map_seed` draws its map A, `layer` (1 or 2) is the
    encoder layer its linear head reads."""

    out_dim: int = 4
    train_size: int = 512
    val_size: int = 128
    noise: float = 0.01
    map_seed: int = 0
    layer: int = 2

    def validate(self) -> str | None:
        return None if self.layer in (1, 2) else f"layer must be 1 or 2 (the sanity encoder's layers), got {self.layer}"

    def build(self, *, name: str, data: Any, model: Any, seed: int) -> SanityLinearTask:
        if not isinstance(model, SanityMLP):
            raise ConfigError(f"tasks.{name}: type sanity_linear needs model type sanity_mlp, "
                              f"got {type(model).__name__}")
        return SanityLinearTask(name=name, config=self, model=model, seed=seed)
