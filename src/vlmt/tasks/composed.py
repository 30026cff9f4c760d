"""SVLR's tasks on the hierarchical encoder (`model: {type: composed}`, a `datasets` data section
read by both the vl and the svlr family): the same losses and metrics as `svlr_recognition`, `svlr_vqa_mc` and
`svlr_zero_shot`, with the regions R of every equation replaced by the encoder's region outputs
I_l of the task's `layer`. A composed model is any encoder of words and regions
(`WordRegionEncoder`) carrying an aligner as `alignment` (`vlmt.models.composed.with_alignment`).

- `composed_recognition`: Visual Genome regions, Eq. 1 (objects, hypernym hinge) + Eq. 2
  (attributes, weighted BCE), scored f_o(I_l)·g(w), f_a(I_l)·g(w). A region is encoded with the
  other regions of its picture; at layer l >= 1 the encoder co-attends them with words, and a
  recognition example has none of its own, so the task gives a fixed `prompt` (layer 0, the
  region encoder, needs none).
- `composed_vqa_mc`: multiple-choice VQA, Eq. 3-8 on I_l, the question being the encoder's words.
- `composed_zero_shot`: Eq. 9 on I_l (evaluation only).

The three share the model's alignment module (g, f_o, f_a), as SVLR shares it between recognition
and VQA; give them the same `layer` for the zero-shot score to read the space recognition trained.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import numpy as np
import torch
from torch import Tensor

from vlmt.config import register_task
from vlmt.errors import ConfigError
from vlmt.models.encoders import WordRegionAligner, alignment_of, is_word_region_encoder
from vlmt.models.heads.word_region import encode_vqa, recognition_scores, zero_shot_scores
from vlmt.models.svlr import SVLRVQAInputs
from vlmt.tasks.base import EvalMode, family_data
from vlmt.tasks.capabilities import Picture
from vlmt.tasks.collate import index_batches, pad_tokens, padded_regions
from vlmt.tasks.svlr_base import need_data, split_items
from vlmt.tasks.svlr_batches import MCBatches, RecognitionBatch, VQAMCBatch, vqa_batch
from vlmt.tasks.svlr_data import GenomeRegion, SVLRAssets, SVLRData
from vlmt.tasks.svlr_recognition import SVLRRecognitionConfig, SVLRRecognitionTask
from vlmt.tasks.svlr_text import MCQuestion, MCQuestions
from vlmt.tasks.svlr_vqa_mc import SVLRVQAConfig, SVLRVQATask
from vlmt.tasks.svlr_zero_shot import SVLRZeroShotConfig, SVLRZeroShotTask
from vlmt.tasks.vl_data import VLAssets, VLData, caption_tokens, question_tokens


def need_composed(model: Any, name: str, layer: int) -> Any:
    """`model`, checked to be an encoder of words and regions carrying an aligner over its region
    outputs (model type composed), with a layer `layer`."""
    if not is_word_region_encoder(model) or alignment_of(model) is None:
        raise ConfigError(f"tasks.{name}: needs model type composed (an encoder of words and regions with SVLR's "
                          f"alignment over its region outputs), got {type(model).__name__}")
    if not 0 <= layer <= model.num_layers:
        raise ConfigError(f"tasks.{name}.layer: {layer} is outside the encoder's layers 0..{model.num_layers}")
    return model


def aligner(model: Any) -> WordRegionAligner:
    """The aligner a composed model carries (checked by `need_composed`)."""
    found = alignment_of(model)
    if found is None:
        raise ConfigError(f"{type(model).__name__} carries no alignment of words and regions")
    return found


def regions_at(model: Any, layer: int, region_features: Tensor, region_mask: Tensor, *,
               tokens: Tensor | None = None, lengths: Tensor | None = None) -> Tensor:
    """I_layer (B, T, d) of an encoder: the region encoder's output for layer 0 (no words needed),
    else the co-attention with the given words up to `layer`."""
    if layer == 0:
        return model.encode_images(region_features, region_mask).regions
    if tokens is None or lengths is None:
        raise ValueError(f"layer {layer} co-attends regions with words: tokens and lengths are needed")
    return model(tokens, lengths, region_features, region_mask, depth=layer).regions


def vl_assets(data: Any, name: str) -> VLAssets:
    part = family_data(data, (VLData, VLAssets))
    if part is None:
        raise ConfigError(f"tasks.{name}: needs the vl family's data too (data type datasets, both papers' "
                          f"datasets), got {type(data).__name__}")
    return part.assets if isinstance(part, VLData) else part


def token_batch(assets: VLAssets, sentences: Sequence[Sequence[str]]) -> tuple[Tensor, Tensor]:
    """Padded token ids and lengths of tokenised sentences (at least one token each: <unk> for none)."""
    return pad_tokens([assets.encode_words(list(words) or ["<unk>"]) for words in sentences])


# -- recognition ------------------------------------------------------------------------------------


@dataclass
class ComposedRecognitionBatch:
    """M Genome regions (targets as `RecognitionBatch`) and the pictures they come from: every
    region of those B pictures, so the encoder sees each region with its neighbours."""

    recognition: RecognitionBatch
    image_features: Tensor  # (B, T, D)
    image_mask: Tensor  # (B, T) bool
    pick: Tensor  # (M, 2) long: (picture, row) of each region

    def to(self, device: torch.device | str) -> ComposedRecognitionBatch:
        return ComposedRecognitionBatch(self.recognition.to(device), self.image_features.to(device),
                                        self.image_mask.to(device), self.pick.to(device))


class ComposedRecognitionTask(SVLRRecognitionTask):
    """SVLR recognition (Eq. 1-2) on the encoder's region outputs of layer `config.layer`."""

    kind = "composed_recognition"

    def __init__(self, *, name: str, config: ComposedRecognitionConfig, data: Any, seed: int):
        super().__init__(name=name, config=config, data=need_data(data, f"tasks.{name}"), seed=seed)
        self.vl = vl_assets(data, name)
        self.prompt_words = caption_tokens(config.prompt)

    def checked_model(self, model: Any) -> Any:
        return need_composed(model, self.name, self.config.layer)

    def batch(self, split: str, rows: Sequence[int] | np.ndarray) -> ComposedRecognitionBatch:
        """The batch of the regions `rows` of `split`: their targets from the split's columns
        (`RecognitionColumns`, no `GenomeRegion` per region) and their pictures, in the order each
        is first needed, with every region of each (`padded_regions`)."""
        columns = self.columns(split)
        index = np.asarray(rows, dtype=np.int64)
        base = columns(index)
        found, first, inverse = np.unique(columns.image_ids[index], return_index=True, return_inverse=True)
        order = np.argsort(first, kind="stable")  # the pictures, first needed first
        slot = np.empty(len(found), dtype=np.int64)
        slot[order] = np.arange(len(found))
        padded = padded_regions(self.data.store, found[order].tolist())  # each picture's regions, widened once
        pick = np.stack([slot[inverse.reshape(-1)], columns.rows[index]], axis=1)
        return ComposedRecognitionBatch(base, padded["region_features"], padded["region_mask"], torch.from_numpy(pick))

    def batches(self, split: str, *, start: int = 0, rank: int = 0,  # type: ignore[override]
                world_size: int = 1) -> Iterator[ComposedRecognitionBatch]:
        size = self.config.batch_size if split == "train" else self.config.eval_batch_size
        for rows in index_batches(self.num_examples(split), size, split=split, seed=self.seed, start=start,
                                  rank=rank, world_size=world_size):
            yield self.batch(split, rows)

    def encode_images(self, model: Any, features: Tensor, mask: Tensor) -> Tensor:
        """I_layer (B, T, d) of pictures' regions (with the prompt as words at layer >= 1)."""
        if self.config.layer == 0:
            return regions_at(model, 0, features, mask)
        tokens, lengths = token_batch(self.vl, [self.prompt_words] * features.shape[0])
        return regions_at(model, self.config.layer, features, mask, tokens=tokens.to(features.device),
                                lengths=lengths.to(features.device))

    def _rows(self, model: Any, batch: ComposedRecognitionBatch) -> Tensor:
        regions = self.encode_images(model, batch.image_features, batch.image_mask)
        return regions[batch.pick[:, 0], batch.pick[:, 1]]  # (M, d)

    def forward(self, model: Any, batch: ComposedRecognitionBatch) -> dict[str, Tensor]:  # type: ignore[override]
        inner = dataclasses.replace(batch.recognition, region_features=self._rows(model, batch))
        return super().forward(aligner(model), inner)

    @torch.no_grad()
    def scores(self, model: Any, split: str, *, device: torch.device
               ) -> tuple[np.ndarray, np.ndarray, list[GenomeRegion]]:
        regions = split_items(self.data.genome, split, f"tasks.{self.name}")
        objs, atrs = [], []
        with EvalMode(model, self):
            for chunk in index_batches(len(regions), self.config.eval_batch_size, split="eval", seed=0):
                rows = self._rows(model, self.batch(split, chunk).to(device))
                o, a = recognition_scores(aligner(model), rows)
                objs.append(o.float().cpu().numpy())
                atrs.append(a.float().cpu().numpy())
        return np.concatenate(objs), np.concatenate(atrs), regions

    @torch.no_grad()
    def scores_for_image(self, model: Any, features: Tensor) -> tuple[Tensor, Tensor]:
        with EvalMode(model, self):
            mask = torch.ones(1, features.shape[0], dtype=torch.bool, device=features.device)
            rows = self.encode_images(model, features[None], mask)[0]
            return recognition_scores(aligner(model), rows)


@register_task("composed_recognition")
@dataclass
class ComposedRecognitionConfig(SVLRRecognitionConfig):
    """`svlr_recognition` on the composed model's encoder: `layer` 0..L is the region output it
    reads (0: the region encoder), `prompt` the words the encoder co-attends the regions with at
    layers >= 1."""

    layer: int = 0
    prompt: str = "what is in the picture"

    def validate(self) -> str | None:
        if self.layer < 0:
            return f"layer must be >= 0, got {self.layer}"
        return None if caption_tokens(self.prompt) or self.layer == 0 else "prompt: needs at least one word"

    def build(self, *, name: str, data: Any, model: Any, seed: int) -> ComposedRecognitionTask:
        need_composed(model, name, self.layer)
        return ComposedRecognitionTask(name=name, config=self, data=data, seed=seed)


# -- multiple-choice and zero-shot VQA --------------------------------------------------------------


@dataclass
class ComposedVQAInputs:
    """SVLR's multiple-choice inputs and the questions as token ids for the encoder."""

    svlr: SVLRVQAInputs
    tokens: Tensor  # (P, N)
    lengths: Tensor  # (P,)

    @property
    def choice_mask(self) -> Tensor:
        return self.svlr.choice_mask

    def to(self, device: torch.device | str) -> ComposedVQAInputs:
        return ComposedVQAInputs(self.svlr.to(device), self.tokens.to(device), self.lengths.to(device))


class QuestionTokens:
    """The encoder's token ids of every question of a split (`MCQuestions`), tokenised once and
    kept as one id array with offsets: a batch's padded tokens and lengths (`token_batch`'s, bit
    for bit) are two gathers, not a tokenisation per question per batch."""

    def __init__(self, assets: VLAssets, questions: MCQuestions):
        lists = [assets.encode_words(question_tokens(questions.question_text(i)) or ["<unk>"])
                 for i in range(len(questions))]
        self.offsets = np.zeros(len(lists) + 1, dtype=np.int64)
        self.offsets[1:] = np.cumsum([len(x) for x in lists])
        self.ids = np.concatenate(lists).astype(np.int64, copy=False) if lists else np.zeros(0, dtype=np.int64)

    def __call__(self, rows: Sequence[int] | np.ndarray) -> tuple[Tensor, Tensor]:
        """(P, N) token ids padded with 0 and (P,) lengths of the questions `rows`."""
        index = np.asarray(rows, dtype=np.int64)
        starts = self.offsets[index]
        lengths = self.offsets[index + 1] - starts
        at = np.arange(int(lengths.max(initial=0)))
        tokens = np.where(at < lengths[:, None], self.ids[np.minimum(starts[:, None] + at, len(self.ids) - 1)], 0)
        return torch.from_numpy(tokens.astype(np.int64, copy=False)), torch.from_numpy(lengths)


class ComposedQuestions:
    """What the multiple-choice tasks on the composed model share: batches with the question's tokens,
    and SVLR's inputs with R replaced by I_layer."""

    name: str
    config: Any
    vl: VLAssets
    data: SVLRData
    assets: SVLRAssets

    def batch_of(self, questions: list[MCQuestion], features: list[Any] | None = None) -> VQAMCBatch:
        base = vqa_batch(self.data if features is None else self.assets, questions, features=features)
        tokens, lengths = token_batch(self.vl, [question_tokens(q.question) for q in questions])
        return VQAMCBatch(inputs=ComposedVQAInputs(base.inputs, tokens, lengths), correct=base.correct)  # type: ignore[arg-type]

    def batch_of_rows(self, split: str, questions: Sequence[MCQuestion], rows: list[int]) -> VQAMCBatch:
        """`batch_of` the questions at `rows` of `split`: from a built dataset's columns (`MCBatches`
        and the questions' token ids, worked out once per split) when it has them."""
        if not isinstance(questions, MCQuestions):
            return self.batch_of([questions[i] for i in rows])
        builders: dict[str, tuple[MCBatches, QuestionTokens]] = self.__dict__.setdefault("_composed_batches", {})
        built = builders.get(split)
        if built is None or built[0].questions is not questions:
            built = builders[split] = (MCBatches(self.data, questions), QuestionTokens(self.vl, questions))
        base = built[0](rows)
        tokens, lengths = built[1](rows)
        return VQAMCBatch(inputs=ComposedVQAInputs(base.inputs, tokens, lengths), correct=base.correct)  # type: ignore[arg-type]

    def checked_model(self, model: Any) -> Any:
        return need_composed(model, self.name, self.config.layer)

    def choice_scores(self, model: Any, inputs: Any) -> Tensor:
        """(P, C) score of every choice of every question (each task's own)."""
        raise NotImplementedError

    def encoded(self, model: Any, inputs: ComposedVQAInputs) -> SVLRVQAInputs:
        regions = regions_at(model, self.config.layer, inputs.svlr.region_features, inputs.svlr.region_mask,
                                   tokens=inputs.tokens, lengths=inputs.lengths)
        return dataclasses.replace(inputs.svlr, region_features=regions)


class ComposedVQATask(ComposedQuestions, SVLRVQATask):
    """SVLR's multiple-choice VQA (Eq. 3-8) on I_layer, the encoder reading the question."""

    kind = "composed_vqa_mc"

    def __init__(self, *, name: str, config: ComposedVQAConfig, data: Any, model: Any, seed: int):
        super().__init__(name=name, config=config, data=need_data(data, f"tasks.{name}"), model=aligner(model),
                         seed=seed)
        self.vl = vl_assets(data, name)

    def pictures(self, model: Any, split: str, *, count: int, out: Path, peers: Mapping[str, Any]) -> list[Picture]:
        """None: Fig. 4 is drawn from SVLR's own encoder; the composed encoder's pictures are its
        hierarchical tasks' (Fig. 2)."""
        return []

    def choice_scores(self, model: Any, inputs: ComposedVQAInputs) -> Tensor:  # type: ignore[override]
        encoded = self.encoded(model, inputs)
        return self.head(encode_vqa(aligner(model), encoded), encoded).scores


@register_task("composed_vqa_mc")
@dataclass
class ComposedVQAConfig(SVLRVQAConfig):
    """`svlr_vqa_mc` on the composed model's encoder: `layer` is the region output it reads."""

    layer: int = 0

    def build(self, *, name: str, data: Any, model: Any, seed: int) -> ComposedVQATask:
        return ComposedVQATask(name=name, config=self, data=data, model=need_composed(model, name, self.layer),
                               seed=seed)


class ComposedZeroShotTask(ComposedQuestions, SVLRZeroShotTask):
    """Zero-shot multiple choice (Eq. 9) on I_layer: no parameters, no loss."""

    kind = "composed_zero_shot"

    def __init__(self, *, name: str, config: ComposedZeroShotConfig, data: Any):
        super().__init__(name=name, config=config, data=need_data(data, f"tasks.{name}"))
        self.vl = vl_assets(data, name)

    def choice_scores(self, model: Any, inputs: ComposedVQAInputs) -> Tensor:  # type: ignore[override]
        return zero_shot_scores(aligner(model), self.encoded(model, inputs))[0]

@register_task("composed_zero_shot")
@dataclass
class ComposedZeroShotConfig(SVLRZeroShotConfig):
    """`svlr_zero_shot` on the composed model's encoder; evaluation only (leave it out of
    schedule.order). `layer`: the region output it reads (the recognition task's, to use what
    recognition trained)."""

    layer: int = 0

    def build(self, *, name: str, data: Any, model: Any, seed: int) -> ComposedZeroShotTask:
        need_composed(model, name, self.layer)
        return ComposedZeroShotTask(name=name, config=self, data=data)
