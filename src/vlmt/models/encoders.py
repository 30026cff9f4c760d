"""What tasks read of an encoder: a small protocol, so a task works on any encoder that offers it,
not on one class.

`WordRegionEncoder` is what the tasks on words and regions (VQA, retrieval, grounding, and any
task built on `vlmt.tasks.encoder_task.EncoderTask`) ask of a model: the outputs (S_l, I_l) of
its layers 0..depth for a batch of sentences and pictures (`Encoded`), and the same split in two
for all-pairs scoring (per-picture work `encode_images`, per-sentence work `encode_captions`,
then `encode_pairs`). `vlmt.models.hierarchical.HierarchicalVL` is one; a new encoder is another
module under `models/` with these methods, and the shipped tasks train on it unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import torch
from torch import Tensor

from vlmt.models.layers.fused import SideInput


@dataclass
class Encoded:
    """What the encoder gives the heads: `layers[l] = (S_l, I_l)` for l = 0..depth, words (B, N, d)
    and regions (B, T, d), and the boolean masks (True = real) of words (B, N) and regions (B, T)."""

    layers: list[tuple[Tensor, Tensor]]
    word_mask: Tensor
    region_mask: Tensor

    @property
    def words(self) -> Tensor:
        """S_depth, the words of the deepest layer computed."""
        return self.layers[-1][0]

    @property
    def regions(self) -> Tensor:
        """I_depth."""
        return self.layers[-1][1]


@dataclass
class ImageCache:
    """Per-image work reused across captions: I_0 (n, T, d), its mask and layer 1's region side
    (None with the paper layer, which recomputes it)."""

    regions: Tensor
    mask: Tensor
    first_side: SideInput | None

    @staticmethod
    def cat(blocks: list[ImageCache]) -> ImageCache:
        """One cache of every block's images, in order (blocks share T)."""
        sides = [b.first_side for b in blocks if b.first_side is not None]
        first = SideInput(torch.cat([s.projected for s in sides]), torch.cat([s.own for s in sides]),
                          sides[0].nulls) if len(sides) == len(blocks) else None
        return ImageCache(torch.cat([b.regions for b in blocks]), torch.cat([b.mask for b in blocks]), first)


@dataclass
class CaptionCache:
    """Per-caption work reused across images: S_0 (n, N, d), its mask and layer 1's word side."""

    words: Tensor
    mask: Tensor
    first_side: SideInput | None


@runtime_checkable
class WordRegionEncoder(Protocol):
    """An encoder of sentences and pictures with layers 0..num_layers. `config` gives the width of
    its outputs (`dim`) and the heads' defaults (`heads`, `fc_dropout`)."""

    config: Any
    training: bool

    @property
    def num_layers(self) -> int: ...

    def train(self, mode: bool = True) -> Any: ...

    def eval(self) -> Any: ...

    def __call__(self, tokens: Tensor, lengths: Tensor, region_features: Tensor, region_mask: Tensor, *,
                 depth: int | None = None) -> Encoded:
        """Token ids (B, N), lengths (B,), region features (B, T, D) and their mask (B, T) -> the
        outputs of layers 0..depth (default: all)."""
        ...

    def encode_images(self, region_features: Tensor, region_mask: Tensor) -> ImageCache:
        """Per-picture work of all-pairs scoring (I_0 and whatever the first layer can reuse)."""
        ...

    def encode_captions(self, tokens: Tensor, lengths: Tensor) -> CaptionCache:
        """Per-sentence work of all-pairs scoring (S_0 and whatever the first layer can reuse)."""
        ...

    def encode_pairs(self, images: ImageCache, captions: CaptionCache, image_index: Tensor, caption_index: Tensor,
                     *, depth: int) -> Encoded:
        """The layers up to `depth` on the pairs (images[image_index[p]], captions[caption_index[p]])."""
        ...


def is_word_region_encoder(model: Any) -> bool:
    """Whether `model` offers what the tasks on words and regions read (`WordRegionEncoder`)."""
    return isinstance(model, torch.nn.Module) and isinstance(model, WordRegionEncoder)


@runtime_checkable
class WordRegionAligner(Protocol):
    """Word and region embeddings in one space, as SVLR's g, f_o and f_a (S Sec. 3.1), with the
    vectors its label sets are scored with: what the SVLR scorers (`vlmt.models.heads.word_region`)
    and tasks read. `vlmt.models.svlr.SVLR` is one; a composed model carries one as `alignment`
    over its encoder's region outputs."""

    @property
    def embed_dim(self) -> int:
        """E, the width of the shared space."""
        ...

    @property
    def labels_are_words(self) -> bool:
        """Whether a label is scored with the word embedding of its word (any word can then be scored)."""
        ...

    def embed_words(self, vectors: Tensor) -> Tensor:
        """g(w): word vectors (..., V) -> (..., E)."""
        ...

    def embed_regions(self, features: Tensor, mask: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """(f_o(R), f_a(R)): region features (..., D) -> two (..., E); padded rows are zeros."""
        ...

    def label_embeddings(self) -> tuple[Tensor, Tensor]:
        """The vectors the object labels O (K_o, E) and attribute labels T (K_a, E) are scored with."""
        ...


def is_word_region_aligner(model: Any) -> bool:
    """Whether `model` offers what SVLR's scorers read (`WordRegionAligner`)."""
    return isinstance(model, torch.nn.Module) and isinstance(model, WordRegionAligner)


def alignment_of(model: Any) -> WordRegionAligner | None:
    """The aligner a model scores words against regions with: the model itself (SVLR) or the one it
    carries as `alignment` over an encoder's region outputs (the composed model); None if neither."""
    if is_word_region_aligner(model):
        return model
    alignment = getattr(model, "alignment", None)
    return alignment if is_word_region_aligner(alignment) else None
