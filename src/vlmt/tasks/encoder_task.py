"""What the tasks on the hierarchical encoder share: the encoder layer their head reads, their
evaluation batch size, the checks of data and model, and example lookup for pictures.

A task on the encoder holds its config (`EncoderTaskConfig` or a subclass); `config.layer` is the
one place the layer lives. The task asks the encoder for the outputs up to that layer and gives
them to its head:

    encoded = model(tokens, lengths, region_features, region_mask, depth=self.config.layer)
    logits = self.head(encoded.words, encoded.regions, encoded.word_mask, encoded.region_mask)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterator, Sequence

import numpy as np
import torch
from torch import Tensor

from vlmt.config import TaskConfig
from vlmt.errors import ConfigError, InvalidInput
from vlmt.models.encoders import Encoded, WordRegionEncoder, is_word_region_encoder
from vlmt.tasks.base import TaskBase, family_data
from vlmt.tasks.collate import index_batches, pad_regions, pad_tokens
from vlmt.tasks.vl_data import VLAssets, VLData


@dataclass
class EncoderTaskConfig(TaskConfig):
    """Fields of every task on the hierarchical encoder: `layer`, the encoder layer its head reads
    (0..L, 0 being the input encoders' S_0 and I_0; each task type defaults to the layer the
    paper's search chose), and `eval_batch_size` (examples per forward pass when evaluating)."""

    layer: int = 1
    eval_batch_size: int = 64

    def validate(self) -> str | None:
        if self.eval_batch_size < 1:
            return f"eval_batch_size must be >= 1, got {self.eval_batch_size}"
        if self.layer < 0:
            return f"layer must be >= 0, got {self.layer}"
        return None

    def check(self, *, name: str, kind: str, dataset: str, data: Any, model: Any
              ) -> tuple[VLData | VLAssets, WordRegionEncoder]:
        """The data and model, checked: `kind` tasks read `dataset` from the `vl` family of a
        `datasets` section (or, for a model used without its data, the family's saved `VLAssets`) and a layer of an
        encoder of words and regions (`vlmt.models.encoders.WordRegionEncoder`: the hierarchical
        encoder, the composed one, or any model offering the same calls)."""
        part = family_data(data, (VLData, VLAssets))  # the vl family's data (built on first use)
        if part is None:
            raise ConfigError(f"tasks.{name}: task type {kind} needs the vl family's data (data type datasets), "
                              f"got {type(data).__name__}")
        data = part
        if not is_word_region_encoder(model):
            raise ConfigError(f"tasks.{name}: task type {kind} needs an encoder of words and regions (model type "
                              f"hierarchical or composed, or one offering vlmt.models.encoders.WordRegionEncoder), "
                              f"got {type(model).__name__}")
        if isinstance(data, VLData):
            data.require(dataset, name)
        if self.layer > model.num_layers:
            raise ConfigError(f"tasks.{name}.layer: {self.layer} is outside the encoder's layers 0..{model.num_layers} "
                              f"(model.num_layers)")
        return data, model


class EncoderTask(TaskBase):
    """Base of the tasks on an encoder of words and regions: a name, its config, the shared data,
    the seed of its training order, and a head (set by the subclass). Built from a `VLData`, it has
    examples; built from `VLAssets` (a model loaded without its data) it has its head only."""

    kind: str = ""
    _data: VLData | None

    def __init__(self, *, name: str, config: EncoderTaskConfig, data: VLData | VLAssets, seed: int):
        super().__init__(name=name, config=config, data=data, built_from=VLData, seed=seed)

    @property
    def data(self) -> VLData:
        """The datasets the task was built from; ConfigError for a task loaded without them."""
        return super().data

    def encode(self, model: WordRegionEncoder, batch: dict[str, Tensor]) -> Encoded:
        """The encoder's outputs up to this task's layer for a batch's words and regions."""
        return model(batch["tokens"], batch["lengths"], batch["region_features"], batch["region_mask"],
                     depth=self.config.layer)

    # -- new inputs (the capabilities of a trained task) -------------------------------------------------
    def tokens(self, words: Sequence[str], device: torch.device, *, what: str) -> tuple[Tensor, Tensor, list[str]]:
        """(token ids (1, N), lengths (1,), the words the vocabulary does not know) of one sentence."""
        if not words:
            raise InvalidInput(f"{what}: no word")
        ids = self.assets.encode_words(list(words))
        unknown = [w for w, i in zip(words, ids.tolist()) if i == self.assets.vocab.unk_index]
        return torch.from_numpy(ids)[None].to(device), torch.tensor([len(ids)], device=device), unknown

    def sentence_batch(self, sentences: Sequence[Sequence[str]], device: torch.device) -> tuple[Tensor, Tensor]:
        """Padded token ids and lengths of tokenised sentences."""
        tokens, lengths = pad_tokens([self.assets.encode_words(list(words)) for words in sentences])
        return tokens.to(device), lengths.to(device)

    @staticmethod
    def region_batch(features: Sequence[np.ndarray], device: torch.device) -> tuple[Tensor, Tensor]:
        """Padded region features (B, T, D) and their mask (B, T) of pictures' regions."""
        padded = pad_regions(features, features[0].shape[1])
        return padded["region_features"].to(device), padded["region_mask"].to(device)

    def _split(self, split: str) -> dict[str, Any]:
        """The prepared examples of `split` (token ids, image ids, targets, ...), built once."""
        raise NotImplementedError

    def _part(self, split: str) -> dict[str, Any]:
        """The examples `batches(split)` draws from: `_split(split)` unless a task trains on more."""
        return self._split(split)

    def _collate(self, part: dict[str, Any], rows: list[int]) -> dict[str, torch.Tensor]:
        """The batch of examples `rows` of a part: padded tokens, gathered regions, targets."""
        raise NotImplementedError

    def num_examples(self, split: str) -> int:
        return len(self._part(split)["tokens"])

    def batches(self, split: str, *, start: int = 0, rank: int = 0, world_size: int = 1
                ) -> Iterator[dict[str, torch.Tensor]]:
        """"train": the endless resumable stream from batch `start` (this process's share under
        DDP); other splits: one pass in order, `eval_batch_size` examples at a time."""
        part = self._part(split)
        size = self.config.batch_size if split == "train" else self.config.eval_batch_size
        for rows in index_batches(len(part["tokens"]), size, split=split, seed=self.seed, start=start, rank=rank,
                                  world_size=world_size):
            yield self._collate(part, rows)

    def example_batch(self, split: str, index: int) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """One example of `split` as a batch of size 1 (what `__call__` and `attention_maps`
        take) and what to draw it with: {"image_id", "image_path", "words" (the tokens the model
        saw), ...}."""
        raise NotImplementedError

