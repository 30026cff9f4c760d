"""A new encoder written outside the package, without subclassing the hierarchical one: it offers
the calls of `vlmt.models.encoders.WordRegionEncoder`, and the shipped VQA, retrieval and grounding
tasks train on it, evaluate, and answer from `vlmt.load` unchanged; carrying SVLR's alignment
(`with_alignment`), it also takes the composed SVLR tasks. No file of vlmt changes."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

import vlmt
from vlmt import config as C
from vlmt.config import ModelConfig, family_of, from_data, register_model
from vlmt.models.composed import with_alignment
from vlmt.models.encoders import CaptionCache, Encoded, ImageCache, alignment_of, is_word_region_encoder
from vlmt.models.svlr import SVLRConfig
from vlmt.training import build  # noqa: F401  (registers the shipped task types)
from vlmt.training.trainer import train

CONFIG = Path(__file__).resolve().parents[2] / "configs" / "tiny.yaml"


@register_model("mean_mixing_test")
@dataclass(frozen=True)
class MeanMixingConfig(ModelConfig):
    dim: int = 16
    num_layers: int = 2
    heads: int = 2
    fc_dropout: float = 0.0
    vocab_size: int | None = from_data()
    region_feature_dim: int | None = from_data()
    padding_idx: int = from_data(0)

    def build(self, *, data: Any) -> MeanMixing:
        data = family_of(data, "vl")  # the sizes of the vl family's data, built on first use
        return MeanMixing(dataclasses.replace(self, vocab_size=data.vocab_size, padding_idx=data.padding_idx,
                                              region_feature_dim=data.region_feature_dim))

    def create(self) -> MeanMixing:
        return MeanMixing(self)


class MeanMixing(nn.Module):
    """Word embeddings and projected regions; each layer mixes every word with the mean region and
    every region with the mean word (no attention at all)."""

    def __init__(self, config: MeanMixingConfig):
        super().__init__()
        self.config = config
        self.embed = nn.Embedding(config.vocab_size, config.dim, padding_idx=config.padding_idx)
        self.project = nn.Linear(config.region_feature_dim, config.dim)
        self.mix = nn.ModuleList(nn.Linear(2 * config.dim, config.dim) for _ in range(config.num_layers))

    @property
    def num_layers(self) -> int:
        return len(self.mix)

    @staticmethod
    def _mean(x: Tensor, mask: Tensor) -> Tensor:
        m = mask[..., None].float()
        return (x * m).sum(1) / m.sum(1).clamp(min=1.0)

    def _layers(self, words: Tensor, regions: Tensor, word_mask: Tensor, region_mask: Tensor,
                depth: int | None) -> Encoded:
        layers = [(words, regions)]
        for mix in self.mix[:self.num_layers if depth is None else depth]:
            w_mean, r_mean = self._mean(words, word_mask), self._mean(regions, region_mask)
            words = words + torch.relu(mix(torch.cat([words, r_mean[:, None].expand_as(words)], -1)))
            regions = regions + torch.relu(mix(torch.cat([regions, w_mean[:, None].expand_as(regions)], -1)))
            layers.append((words, regions))
        return Encoded(layers, word_mask, region_mask)

    def _words(self, tokens: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        mask = torch.arange(tokens.shape[1], device=tokens.device)[None] < lengths.to(tokens.device)[:, None]
        return self.embed(tokens), mask

    def forward(self, tokens: Tensor, lengths: Tensor, region_features: Tensor, region_mask: Tensor, *,
                depth: int | None = None) -> Encoded:
        words, word_mask = self._words(tokens, lengths)
        return self._layers(words, self.project(region_features), word_mask, region_mask.bool(), depth)

    def encode_images(self, region_features: Tensor, region_mask: Tensor) -> ImageCache:
        return ImageCache(self.project(region_features), region_mask.bool(), None)

    def encode_captions(self, tokens: Tensor, lengths: Tensor) -> CaptionCache:
        words, mask = self._words(tokens, lengths)
        return CaptionCache(words, mask, None)

    def encode_pairs(self, images: ImageCache, captions: CaptionCache, image_index: Tensor, caption_index: Tensor,
                     *, depth: int) -> Encoded:
        return self._layers(captions.words[caption_index], images.regions[image_index], captions.mask[caption_index],
                            images.mask[image_index], depth)


def test_the_shipped_tasks_train_on_an_encoder_that_only_offers_the_protocol(tmp_path):
    torch.set_num_threads(1)
    raw = C.read_yaml(CONFIG)
    raw["model"] = {"type": "mean_mixing_test", "dim": 16, "num_layers": 2}
    for task, layer in (("retrieval", 2), ("vqa", 2), ("grounding", 1)):
        raw["tasks"][task].update(layer=layer, iterations=20, step=20)
    raw["train"].update(max_iters=60, eval_every=60, checkpoint_every=60, progress=False)
    summary = train(C.from_dict(raw, source="tiny.yaml on a mean-mixing encoder"), tmp_path / "run")
    val = summary["val"]
    assert {"vqa/accuracy", "retrieval/rsum", "grounding/r1"} <= set(val)
    model = vlmt.load(tmp_path / "run")
    assert is_word_region_encoder(model.model) and type(model.model).__mro__[1] is nn.Module  # no vlmt base class
    regions = torch.rand(5, model.feature_dim).numpy()
    answers = model.answer(question="what color is the square?", regions=regions, top_k=3)
    assert len(answers) == 3 and answers == model.answer(question="what color is the square?", regions=regions,
                                                         top_k=3)
    assert model.retrieve([], ["a red square"], regions=[(regions, None)]).shape == (1, 1)


@register_model("mean_mixing_composed_test")
@dataclass(frozen=True)
class MeanMixingComposedConfig(MeanMixingConfig):
    """The same encoder carrying SVLR's alignment over its region outputs: a composed model made by
    configuration (`with_alignment`), no composed class."""

    align_word_dim: int | None = from_data()
    num_objects: int | None = from_data()
    num_attributes: int | None = from_data()

    def build(self, *, data: Any) -> MeanMixing:
        vl, svlr = family_of(data, "vl"), family_of(data, "svlr")
        config = dataclasses.replace(self, vocab_size=vl.vocab_size, padding_idx=vl.padding_idx,
                                     region_feature_dim=vl.region_feature_dim, align_word_dim=svlr.word_dim,
                                     num_objects=len(svlr.object_labels), num_attributes=len(svlr.attribute_labels))
        model = config.create()
        objects, attributes = svlr.label_vectors()
        model.alignment.set_label_vectors(objects=torch.from_numpy(objects), attributes=torch.from_numpy(attributes))
        return model

    def create(self) -> MeanMixing:
        aligner = SVLRConfig(embed_dim=8, word_hidden=8, region_hidden=16, word_dim=self.align_word_dim,
                             region_dim=self.dim, num_objects=self.num_objects,
                             num_attributes=self.num_attributes).create()
        return with_alignment(MeanMixing(self), aligner)


def test_svlr_tasks_train_on_a_new_encoder_that_carries_an_alignment(tmp_path):
    torch.set_num_threads(1)
    raw = C.read_yaml(CONFIG.with_name("composed_tiny.yaml"))
    raw["model"] = {"type": "mean_mixing_composed_test", "dim": 16, "num_layers": 3}
    raw["tasks"]["mc"] = {"type": "composed_vqa_mc", "layer": 1, "batch_size": 16, "fusion_dim": 16}
    order = [name for name, task in raw["tasks"].items() if task.get("type") != "composed_zero_shot"]
    for name in order:
        raw["tasks"][name].update(iterations=20, step=20)
    raw["schedule"]["stages"] = [order]
    raw["train"].update(max_iters=20 * len(order), eval_every=20 * len(order), checkpoint_every=20 * len(order),
                        progress=False)
    summary = train(C.from_dict(raw, source="composed_tiny.yaml on a mean-mixing encoder"), tmp_path / "run")
    assert {"recognition/object_accuracy", "mc/accuracy", "zero_shot/accuracy", "vqa/accuracy"} <= set(summary["val"])
    model = vlmt.load(tmp_path / "run")
    assert type(model.model) is MeanMixing and alignment_of(model.model) is model.model.alignment
    regions = torch.rand(4, model.feature_dim).numpy()
    for zero_shot in (False, True):
        ranked = model.details("choose", question="what color is the square?", choices=["red", "blue"],
                               regions=regions, zero_shot=zero_shot)
        assert ranked["variant"] == ("zero_shot" if zero_shot else "multiple_choice")
    assert len(model.recognize(regions=regions)) == 4
