"""A vlmt plugin: a data source, a model and a task, registered when vlmt imports this module
(entry-point group `vlmt.plugins` in pyproject.toml)."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import torch
from torch import nn

from vlmt.config import DataConfig, ModelConfig, TaskConfig, from_data, register_data, register_model, register_task
from vlmt.tasks.base import EpochBatchSampler

ASSETS = "toy_assets.json"


# -- data -------------------------------------------------------------------------------------------


@dataclass
class ToyAssets:
    """What a trained model needs to read new inputs: the class names (saved with the model)."""

    classes: list[str]

    def save(self, folder: Path) -> None:
        (folder / ASSETS).write_text(json.dumps({"classes": self.classes}), encoding="utf-8")


@dataclass
class ToyData:
    """Points in R^2 around one centre per class, split train / val / test."""

    assets: ToyAssets
    splits: dict[str, tuple[torch.Tensor, torch.Tensor]]

    @property
    def feature_dim(self) -> int:
        return 2


@register_data("toy_clusters")
@dataclass
class ToyClustersConfig(DataConfig):
    classes: list[str] = field(default_factory=lambda: ["a", "b"])
    points: int = 300
    spread: float = 0.4

    def build(self, *, seed: int) -> ToyData:
        g = torch.Generator().manual_seed(seed)
        k = len(self.classes)
        centres = torch.tensor([[math.cos(2 * math.pi * i / k), math.sin(2 * math.pi * i / k)] for i in range(k)])
        splits = {}
        for split, n in (("train", self.points), ("val", self.points // 3), ("test", self.points // 3)):
            labels = torch.randint(k, (n,), generator=g)
            splits[split] = (centres[labels] + self.spread * torch.randn(n, 2, generator=g), labels)
        return ToyData(ToyAssets(list(self.classes)), splits)

    @classmethod
    def load_assets(cls, folder: Path) -> ToyAssets:
        return ToyAssets(**json.loads((folder / ASSETS).read_text(encoding="utf-8")))


# -- model ------------------------------------------------------------------------------------------


@register_model("toy_mlp")
@dataclass(frozen=True)
class ToyMLPConfig(ModelConfig):
    hidden: int = 16
    in_dim: int = from_data()  # set from the data when built; stored with the model

    def build(self, *, data: Any) -> ToyMLP:
        return ToyMLP(ToyMLPConfig(hidden=self.hidden, in_dim=data.feature_dim))

    def create(self) -> ToyMLP:
        return ToyMLP(self)


class ToyMLP(nn.Module):
    def __init__(self, config: ToyMLPConfig):
        super().__init__()
        self.config = config
        self.net = nn.Sequential(nn.Linear(config.in_dim, config.hidden), nn.Tanh())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


# -- task -------------------------------------------------------------------------------------------


class ToyClassifyTask(nn.Module):
    """A linear head over the model's features; cross-entropy loss, accuracy metric."""

    primary_metric = "accuracy"
    higher_is_better = True

    def __init__(self, *, name: str, config: ToyClassifyConfig, data: ToyData | ToyAssets, model: ToyMLP, seed: int):
        super().__init__()
        self.name, self.config, self.seed = name, config, seed
        classes = data.classes if isinstance(data, ToyAssets) else data.assets.classes
        self.splits = getattr(data, "splits", {})  # none when rebuilt from a model folder
        self.head = nn.Linear(model.config.hidden, len(classes))

    def forward(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {"loss": nn.functional.cross_entropy(self.head(model(batch["x"])), batch["y"])}

    def batches(self, split: str, *, start: int = 0, rank: int = 0, world_size: int = 1
                ) -> Iterator[dict[str, torch.Tensor]]:
        x, y = self.splits[split]
        size = self.config.batch_size
        if split == "train":  # endless; batch k depends on (seed, k) only, so a resumed run sees the same
            for idx in EpochBatchSampler(len(x), size, seed=self.seed, start=start, rank=rank, world_size=world_size):
                yield {"x": x[idx], "y": y[idx]}
        else:
            for i in range(0, len(x), size):
                yield {"x": x[i:i + size], "y": y[i:i + size]}

    @torch.no_grad()
    def evaluate(self, model: nn.Module, split: str, *, device: torch.device) -> dict[str, float]:
        was = model.training
        model.eval()
        right = total = 0
        for batch in self.batches(split):
            right += int((self.head(model(batch["x"].to(device))).argmax(1).cpu() == batch["y"]).sum())
            total += len(batch["y"])
        model.train(was)
        return {"accuracy": 100.0 * right / total}


@register_task("toy_classify")
@dataclass
class ToyClassifyConfig(TaskConfig):
    def build(self, *, name: str, data: Any, model: Any, seed: int) -> ToyClassifyTask:
        return ToyClassifyTask(name=name, config=self, data=data, model=model, seed=seed)
