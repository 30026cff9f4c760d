"""Config section `model: {type: hierarchical, ...}`: the hyper-parameters of `HierarchicalVL`.

The sizes that come from the data (vocabulary, word-vector width when vectors are given, region
feature width, answer pool) are taken from the `vl_datasets` data section at build time; the
decoders are attached by the tasks, each at the layer its task config names (`layer`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from vlmt.config import ModelConfig, register_model
from vlmt.errors import ConfigError
from vlmt.models.hierarchical import HierarchicalConfig, HierarchicalVL


@register_model("hierarchical")
@dataclass
class HierarchicalModelConfig(ModelConfig):
    """dim: d (paper 1024); num_layers: L dense co-attention layers; heads: K attention maps
    (co-attention and summaries); null_slots: m "nowhere to attend" slots; fc_dropout /
    lstm_dropout: 0.3 / 0.1 in the paper; word_dim: learned embedding width (ignored when the
    data section gives word vectors, whose width is used)."""

    dim: int = 1024
    num_layers: int = 5
    heads: int = 4
    null_slots: int = 3
    fc_dropout: float = 0.3
    lstm_dropout: float = 0.1
    word_dim: int = 300

    def validate(self) -> str | None:
        for key in ("dim", "num_layers", "heads", "null_slots", "word_dim"):
            if getattr(self, key) < 1:
                return f"{key} must be >= 1, got {getattr(self, key)}"
        if self.dim % self.heads or self.dim % 2:
            return f"dim {self.dim} must be even and divisible by heads {self.heads}"
        for key in ("fc_dropout", "lstm_dropout"):
            if not 0.0 <= getattr(self, key) < 1.0:
                return f"{key} must be in [0, 1), got {getattr(self, key)}"
        return None

    def build(self, *, data: Any) -> HierarchicalVL:
        from vlmt.data.vl_datasets import VLData

        if not isinstance(data, VLData):
            raise ConfigError(f"model type hierarchical needs data type vl_datasets, got {type(data).__name__}")
        vectors = data.word_vectors
        config = HierarchicalConfig(
            vocab_size=len(data.vocab),
            num_answers=len(data.answers) if data.answers is not None else 0,
            region_feature_dim=data.feature_dim,
            dim=self.dim,
            word_dim=int(vectors.shape[1]) if vectors is not None else self.word_dim,
            num_layers=self.num_layers,
            heads=self.heads,
            null_slots=self.null_slots,
            fc_dropout=self.fc_dropout,
            lstm_dropout=self.lstm_dropout,
            padding_idx=data.vocab.pad_index,
            freeze_word_vectors=vectors is not None,
            decoder_layers={},
        )
        return HierarchicalVL(config, word_vectors=vectors)
