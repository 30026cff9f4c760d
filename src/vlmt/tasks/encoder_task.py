"""What the three hierarchical-model tasks (VQA, retrieval, grounding) share: their config fields,
the decoder attachment at the configured layer, and example lookup for pictures."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from vlmt.config import TaskConfig
from vlmt.errors import ConfigError

# H Sec. 4.2 / 5.2: the layers the paper's search chose
PAPER_LAYERS = {"retrieval": 3, "vqa": 5, "grounding": 2}


@dataclass
class VLTaskConfig(TaskConfig):
    """Fields of every vision-language task: `layer` (null: the paper's layer for the task),
    `eval_batch_size` (examples per forward pass when evaluating)."""

    eval_batch_size: int = 64

    def validate(self) -> str | None:
        if self.eval_batch_size < 1:
            return f"eval_batch_size must be >= 1, got {self.eval_batch_size}"
        if self.layer is not None and self.layer < 1:
            return f"layer must be >= 1, got {self.layer}"
        return None

    def attach(self, *, name: str, kind: str, dataset: str, data: Any, model: nn.Module) -> int:
        """Check the data and model, attach the `kind` decoder at the configured layer; returns it."""
        from vlmt.data.vl_datasets import VLData
        from vlmt.models.hierarchical import HierarchicalVL

        if not isinstance(data, VLData):
            raise ConfigError(f"tasks.{name}: task type {kind} needs data type vl_datasets, got {type(data).__name__}")
        if not isinstance(model, HierarchicalVL):
            raise ConfigError(f"tasks.{name}: task type {kind} needs model type hierarchical, got {type(model).__name__}")
        data.require(dataset, name)
        layer = self.layer if self.layer is not None else PAPER_LAYERS[kind]
        try:
            model.attach_decoder(kind, layer=layer)
        except ValueError as e:
            raise ConfigError(f"tasks.{name}.layer: {e}") from None
        return layer


class VLTask(nn.Module):
    """Base of the three tasks: a name, batch sizes, the seed of its training order."""

    primary_metric: str = ""
    higher_is_better: bool = True
    kind: str = ""

    def __init__(self, *, name: str, data: Any, layer: int, batch_size: int, eval_batch_size: int, seed: int):
        super().__init__()
        self.name = name
        self.data = data
        self.layer = layer
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size
        self.seed = seed

    def example_batch(self, split: str, index: int) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """One example of `split` as a batch of size 1 (the tensors the model's forward and
        `HierarchicalVL.attention_maps(task, **batch)` take, plus task extras) and what to draw
        it with: {"image_id", "image_path", "words" (the tokens the model saw), ...}."""
        raise NotImplementedError

    def num_examples(self, split: str) -> int:
        raise NotImplementedError
