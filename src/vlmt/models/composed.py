"""Both papers on one encoder: the hierarchical Dense Co-attention encoder (H) with SVLR's aligned
word-region embeddings (S) reading its region outputs.

A composed model is configuration, not a class of its own: a `HierarchicalVL` (so retrieval, VQA
and grounding attach to it unchanged) carrying `alignment`, an `SVLR` aligner whose region side
takes the encoder's d-wide region outputs I_l instead of raw region features (`with_alignment`).
g(w) maps word vectors and f_o, f_a map I_l into one space; recognition, SVLR's multiple-choice
attention (Eq. 3-4) and the zero-shot score (Eq. 9) are the scorers of
`vlmt.models.heads.word_region` over it. Which layer l a task reads is the task's choice
(`vlmt.tasks.composed`); the alignment is shared by every task that uses it, as SVLR shares g,
f_o and f_a between recognition and VQA.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
from torch import nn

from vlmt.config import family_of, from_data, register_model
from vlmt.errors import ConfigError
from vlmt.models.encoders import WordRegionAligner, is_word_region_aligner
from vlmt.models.hierarchical import HierarchicalConfig, HierarchicalVL
from vlmt.models.svlr import SVLR, RecognitionVectors, SVLRConfig


@register_model("composed")
@dataclass(frozen=True)
class ComposedConfig(HierarchicalConfig):
    """`model: {type: composed, ...}`: every key of `hierarchical`, plus SVLR's alignment:
    embed_dim (the shared space), word_hidden (g's hidden width), region_hidden (f_o / f_a's
    hidden width), region_output_norm and recognition_vectors as in `svlr`. The word-vector width
    and the label-set sizes come from the data section's SVLR part."""

    embed_dim: int = 300
    word_hidden: int = 300
    region_hidden: int = 512
    region_output_norm: bool = True
    recognition_vectors: RecognitionVectors = "shared"
    align_word_dim: int | None = from_data()
    num_objects: int | None = from_data()
    num_attributes: int | None = from_data()

    def validate(self) -> str | None:
        problem = super().validate()
        if problem:
            return problem
        return self.alignment_config().validate()

    def alignment_config(self) -> SVLRConfig:
        return SVLRConfig(embed_dim=self.embed_dim, word_hidden=self.word_hidden, region_hidden=self.region_hidden,
                          region_output_norm=self.region_output_norm, recognition_vectors=self.recognition_vectors,
                          word_dim=self.align_word_dim, region_dim=self.dim, num_objects=self.num_objects,
                          num_attributes=self.num_attributes)

    def build(self, *, data: Any) -> HierarchicalVL:
        """The model for a `datasets` section read by both families: the `vl` family's data sizes the
        encoder, the `svlr` family's the alignment (word vectors and the label sets O and T)."""
        vl, svlr = family_of(data, "vl"), family_of(data, "svlr")  # models never import vlmt.data
        if not hasattr(vl, "vocab_size") or not hasattr(svlr, "label_vectors"):
            raise ConfigError(f"model type composed needs a data section with both papers' datasets (the vl and svlr "
                              f"families of a `datasets` section), got {type(data).__name__}")
        config, vectors = self.with_data(vl)
        config = dataclasses.replace(config, align_word_dim=svlr.word_dim, num_objects=len(svlr.object_labels),
                                     num_attributes=len(svlr.attribute_labels))
        encoder = HierarchicalVL(config, word_vectors=vectors)  # drawn first, then the alignment
        aligner = SVLR(config.alignment_config())
        objects, attributes = svlr.label_vectors()
        aligner.set_label_vectors(objects=torch.from_numpy(objects), attributes=torch.from_numpy(attributes))
        return with_alignment(encoder, aligner)

    def create(self) -> HierarchicalVL:
        """The encoder with SVLR's alignment over its region outputs (label vectors zero until set)."""
        encoder = HierarchicalVL(self)
        return with_alignment(encoder, SVLR(self.alignment_config()))


EncoderT = TypeVar("EncoderT", bound=nn.Module)


def with_alignment(encoder: EncoderT, aligner: WordRegionAligner) -> EncoderT:
    """`encoder` carrying `aligner` as its `alignment`, which the SVLR tasks find with
    `vlmt.models.encoders.alignment_of` (the aligner's parameters come after the encoder's, in
    the model's state and in the optimiser's groups)."""
    if not is_word_region_aligner(aligner):
        raise TypeError(f"with_alignment: {type(aligner).__name__} is not a WordRegionAligner module")
    encoder.add_module("alignment", aligner)  # type: ignore[arg-type]
    return encoder
