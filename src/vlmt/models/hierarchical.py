"""The shared encoder of the hierarchical multi-task model (H: Nguyen & Okatani, "Multi-task
Learning of Hierarchical Vision-Language Representation", CVPR 2019).

Words and regions go in; the output of every dense co-attention layer comes out:

    S_0 = LanguageEncoder(tokens)             (B, N, d)   GloVe -> 2-layer BiLSTM -> linear
    I_0 = RegionEncoder(region features)      (B, T, d)   linear -> L2 normalisation
    (S_l, I_l) = DCL_l(S_{l-1}, I_{l-1})      l = 1..L    (Eq. 1-3)

The task decoders (H Sec. 3.3) are not part of it: each task builds its own head
(`vlmt.models.heads`) and asks the encoder for the layer it reads (`depth`), so a call runs only
the layers that task needs (Algorithm 1: the sub-network E_{l(i)}).

Retrieval over all image x caption pairs cannot be factorised (the layers mix the two modalities
from layer 1 on), so `encode_images` / `encode_captions` compute once what depends on one
modality only - I_0 or S_0, and layer 1's own-side projections - and `encode_pairs` runs the
layers on any list of (image, caption) pairs of those caches.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal

from torch import Tensor, nn

from vlmt.config import ModelConfig, family_of, from_data, register_model
from vlmt.errors import ConfigError
from vlmt.models.encoders import CaptionCache, Encoded, ImageCache
from vlmt.models.layers.co_attention import DenseCoAttentionLayer
from vlmt.models.layers.fused import FusedDenseCoAttentionLayer, SideInput
from vlmt.models.layers.language import LanguageEncoder
from vlmt.models.layers.masking import lengths_to_mask
from vlmt.models.layers.regions import RegionEncoder

CO_ATTENTION_LAYERS: dict[str, type[nn.Module]] = {"fused": FusedDenseCoAttentionLayer,
                                                   "paper": DenseCoAttentionLayer}


@register_model("hierarchical")
@dataclass(frozen=True)
class HierarchicalConfig(ModelConfig):
    """`model: {type: hierarchical, ...}` and the constructor arguments of `HierarchicalVL`.

    dim: d (paper 1024); num_layers: L dense co-attention layers; heads: K attention maps
    (co-attention and summaries); null_slots: m "nowhere to attend" slots; fc_dropout /
    lstm_dropout: 0.3 / 0.1 in the paper; word_dim: width of a learned word embedding (the width of
    the word vectors when the data section gives them); co_attention: the fused fast layer or the
    paper layer written as the equations read (same numbers). freeze_word_vectors: null (default)
    keeps the data section's word vectors (GloVe) fixed, as H's "GloVe embedding vectors of the
    input words" reads; false fine-tunes them; without word vectors the embedding is learned. The
    built model stores the resolved value (true only when vectors were given and kept fixed), so a
    model rebuilt without its data keeps its frozen state. vocab_size, region_feature_dim and
    padding_idx come from the data section.
    """

    dim: int = 1024
    num_layers: int = 5
    heads: int = 4
    null_slots: int = 3
    fc_dropout: float = 0.3
    lstm_dropout: float = 0.1
    word_dim: int = 300
    co_attention: Literal["fused", "paper"] = "fused"
    vocab_size: int | None = from_data()
    region_feature_dim: int | None = from_data()
    padding_idx: int = from_data(0)
    freeze_word_vectors: bool | None = None

    def validate(self) -> str | None:
        for key in ("dim", "num_layers", "heads", "null_slots", "word_dim"):
            if getattr(self, key) < 1:
                return f"{key} must be >= 1, got {getattr(self, key)}"
        if self.dim % self.heads or self.dim % 2:
            return f"dim {self.dim} must be even and divisible by heads {self.heads}"
        for key in ("fc_dropout", "lstm_dropout"):
            if not 0.0 <= getattr(self, key) < 1.0:
                return f"{key} must be in [0, 1), got {getattr(self, key)}"
        for key in ("vocab_size", "region_feature_dim"):
            value = getattr(self, key)
            if value is not None and value < 1:
                return f"{key} must be >= 1, got {value}"
        return None

    def build(self, *, data: Any) -> HierarchicalVL:
        """The model for a data section that gives a vocabulary, region features and optional word
        vectors: the `vl` family's data of a `datasets` section (`vlmt.tasks.vl_data`)."""
        config, vectors = self.with_data(family_of(data, "vl"))
        return HierarchicalVL(config, word_vectors=vectors)

    def with_data(self, data: Any) -> tuple[Any, Tensor | None]:
        """This config with the sizes the data gives filled in, and the data's word vectors (or None)."""
        needed = ("vocab_size", "padding_idx", "region_feature_dim", "word_vectors")
        if not all(hasattr(data, key) for key in needed):
            raise ConfigError(f"model type hierarchical needs a data section with words and region features "
                              f"(the vl family of a `datasets` section), got {type(data).__name__}")
        vectors = data.word_vectors
        frozen = vectors is not None and self.freeze_word_vectors is not False
        config = dataclasses.replace(
            self, vocab_size=data.vocab_size, region_feature_dim=data.region_feature_dim,
            padding_idx=data.padding_idx, freeze_word_vectors=frozen,
            word_dim=int(vectors.shape[1]) if vectors is not None else self.word_dim)
        return config, vectors

    def create(self) -> HierarchicalVL:
        return HierarchicalVL(self)


class HierarchicalVL(nn.Module):
    """Language encoder, region encoder and L dense co-attention layers (H Sec. 3.1-3.2)."""

    def __init__(self, config: HierarchicalConfig, *, word_vectors: Tensor | None = None):
        super().__init__()
        c = config
        if c.vocab_size is None or c.region_feature_dim is None:
            raise ValueError("HierarchicalConfig.vocab_size and region_feature_dim are needed (build the model "
                             "from a data section with HierarchicalConfig.build, or set them)")
        problem = c.validate()
        if problem:
            raise ValueError(f"HierarchicalConfig: {problem}")
        self.config = config
        self.language = LanguageEncoder(
            vocab_size=c.vocab_size,
            dim=c.dim,
            word_dim=c.word_dim,
            padding_idx=c.padding_idx,
            dropout=c.lstm_dropout,
            word_vectors=word_vectors,
            freeze_word_vectors=c.freeze_word_vectors,  # None: frozen when word_vectors are given
        )
        self.regions = RegionEncoder(feature_dim=c.region_feature_dim, dim=c.dim)
        layer = CO_ATTENTION_LAYERS[c.co_attention]
        self.layers = nn.ModuleList(
            layer(dim=c.dim, heads=c.heads, null_slots=c.null_slots, dropout=c.fc_dropout) for _ in range(c.num_layers)
        )

    @property
    def num_layers(self) -> int:
        return len(self.layers)

    def forward(self, tokens: Tensor, lengths: Tensor, region_features: Tensor, region_mask: Tensor, *,
                depth: int | None = None) -> Encoded:
        """Token ids (B, N), lengths (B,), region features (B, T, D) and region mask (B, T)
        -> the outputs of layers 0..depth (default: all L)."""
        words = self.language(tokens, lengths)  # S_0: (B, N, d)
        word_mask = lengths_to_mask(lengths.to(tokens.device), tokens.shape[1])
        region_mask = region_mask.bool()
        if not bool(region_mask.any(dim=1).all()):
            raise ValueError("every image needs at least one real region")
        regions = self.regions(region_features, region_mask)  # I_0: (B, T, d)
        return self.co_attend(words, regions, word_mask, region_mask, depth=depth)

    def co_attend(self, words: Tensor, regions: Tensor, word_mask: Tensor, region_mask: Tensor, *,
                  depth: int | None = None, first_word_side: SideInput | None = None,
                  first_region_side: SideInput | None = None) -> Encoded:
        """(S_0, I_0) through the first `depth` co-attention layers (Eq. 1). The first layer may
        take own-side work computed earlier (`encode_images` / `encode_captions`)."""
        depth = self.num_layers if depth is None else depth
        if not 0 <= depth <= self.num_layers:
            raise ValueError(f"depth {depth} outside 0..{self.num_layers}")
        layers = [(words, regions)]
        for index, layer in enumerate(self.layers[:depth]):
            if index == 0 and (first_word_side is not None or first_region_side is not None):
                words, regions = layer(words, regions, word_mask, region_mask,
                                       word_side=first_word_side, region_side=first_region_side)
            else:
                words, regions = layer(words, regions, word_mask, region_mask)
            layers.append((words, regions))
        return Encoded(layers, word_mask, region_mask)

    # -- all-pairs encoding ------------------------------------------------------------------------
    def encode_images(self, region_features: Tensor, region_mask: Tensor) -> ImageCache:
        """Per-image work for `encode_pairs`: I_0 and layer 1's region-only GEMM."""
        mask = region_mask.bool()
        regions = self.regions(region_features, mask)
        first = self.layers[0]
        side = first.region_side(regions) if isinstance(first, FusedDenseCoAttentionLayer) else None
        return ImageCache(regions, mask, side)

    def encode_captions(self, tokens: Tensor, lengths: Tensor) -> CaptionCache:
        """Per-caption work for `encode_pairs`: S_0 (embedding + BiLSTM) and layer 1's word-only GEMM."""
        words = self.language(tokens, lengths)
        mask = lengths_to_mask(lengths.to(tokens.device), tokens.shape[1])
        first = self.layers[0]
        side = first.word_side(words) if isinstance(first, FusedDenseCoAttentionLayer) else None
        return CaptionCache(words, mask, side)

    def encode_pairs(self, images: ImageCache, captions: CaptionCache, image_index: Tensor, caption_index: Tensor,
                     *, depth: int) -> Encoded:
        """The layers up to `depth` on the pairs (images[image_index[p]], captions[caption_index[p]])."""
        if image_index.shape != caption_index.shape or image_index.dim() != 1:
            raise ValueError(f"image_index {tuple(image_index.shape)} and caption_index "
                             f"{tuple(caption_index.shape)} must be equal-length vectors")
        word_side = captions.first_side.select(caption_index) if captions.first_side is not None else None
        region_side = images.first_side.select(image_index) if images.first_side is not None else None
        return self.co_attend(captions.words[caption_index], images.regions[image_index],
                              captions.mask[caption_index], images.mask[image_index], depth=depth,
                              first_word_side=word_side, first_region_side=region_side)
