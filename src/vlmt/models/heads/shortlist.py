"""Dual-encoder shortlist head for fast image-caption retrieval (not in either paper).

The retrieval decoder of H scores a pair only after the co-attention layers have mixed the two
modalities, so ranking N images against M captions costs N x M encoder passes. This head embeds
each side alone - a summary attention (H Eq. 4-6) over the layer-0 features I_0 or S_0, a linear
map and L2 normalisation - so all N x M cosine similarities cost one matrix product. Evaluation
then re-scores only each query's k best candidates with the full model (`vlmt.tasks.rerank`).

By default the head reads its inputs detached: it learns on top of the shared encoder without
changing it, so the model the paper describes (and its exhaustive numbers) stays the same.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from vlmt.models.layers.summary import SummaryAttention


class ShortlistHead(nn.Module):
    """I_0 (B, T, d) or S_0 (B, N, d) with its mask -> (B, embed_dim) unit vectors."""

    def __init__(self, *, dim: int, embed_dim: int, heads: int = 4, dropout: float = 0.1, detach: bool = True):
        super().__init__()
        self.detach = detach
        self.image_summary = SummaryAttention(dim=dim, heads=heads, dropout=dropout)
        self.sentence_summary = SummaryAttention(dim=dim, heads=heads, dropout=dropout)
        self.image_proj = nn.Linear(dim, embed_dim)
        self.sentence_proj = nn.Linear(dim, embed_dim)
        for proj in (self.image_proj, self.sentence_proj):
            nn.init.xavier_uniform_(proj.weight)
            nn.init.zeros_(proj.bias)

    def _inputs(self, features: Tensor) -> Tensor:
        return features.detach() if self.detach else features

    def embed_images(self, regions: Tensor, region_mask: Tensor) -> Tensor:
        """(B, embed_dim) unit image embeddings from I_0 and its (B, T) mask."""
        summary, _ = self.image_summary(self._inputs(regions), region_mask)
        return F.normalize(self.image_proj(summary).float(), dim=-1)

    def embed_captions(self, words: Tensor, word_mask: Tensor) -> Tensor:
        """(B, embed_dim) unit caption embeddings from S_0 and its (B, N) mask."""
        summary, _ = self.sentence_summary(self._inputs(words), word_mask)
        return F.normalize(self.sentence_proj(summary).float(), dim=-1)

    @torch.no_grad()
    def similarity(self, images: Tensor, captions: Tensor) -> Tensor:
        """(n_images, n_captions) cosine similarities of precomputed embeddings."""
        return images @ captions.T
