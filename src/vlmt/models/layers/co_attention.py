"""The Dense Co-attention layer (DCL) as the hierarchical paper writes it (Sec. 3.2, Eq. 1-3).

    (S_l, I_l) = DCL_l(S_{l-1}, I_{l-1})                                       (Eq. 1)
    s_{l,n} = ReLU(W_S [s_{l-1,n}; î_{l-1,n}] + b_S) + s_{l-1,n}              (Eq. 2)
    i_{l,t} = ReLU(W_I [i_{l-1,t}; ŝ_{l-1,t}] + b_I) + i_{l-1,t}              (Eq. 3)

î_{l-1,n} is the image attended by word n, ŝ_{l-1,t} the sentence attended by region t. The
paper takes the attention from the authors' earlier dense co-attention network; what it leaves
there, written out here:
- m learned "nowhere to attend" slots are prepended to both sides (a query may attend to none of
  the real positions);
- bias-free projections P_S, P_I split into K heads give K affinity maps per pair of sides,
  A_k = (P_S s)_k (P_I i)_k^T / sqrt(d/K), with padded positions masked;
- each word's map is a softmax over (null slots + regions), each region's over (null slots +
  words); the K maps are averaged and applied to the *unprojected* features of the other side;
- dropout (the FC rate) sits on the fusion branch, before the residual sum.

This is the reference implementation: short, and in the paper's terms. The model runs the
numerically equal fused layer by default (`vlmt.models.layers.fused`, about twice as fast on a
CPU); `model.co_attention: paper` runs this one, and the tests check that both agree on outputs
and gradients.
"""

from __future__ import annotations

import math

import torch
from einops import rearrange
from torch import Tensor, nn
from torch.nn import functional as F

from vlmt.models.layers.masking import at_least_fp32, masked_fill_value


class DenseCoAttentionLayer(nn.Module):
    """One dense co-attention layer: (S_{l-1}, I_{l-1}) -> (S_l, I_l), both of width d."""

    def __init__(self, *, dim: int, heads: int = 4, null_slots: int = 3, dropout: float = 0.3):
        super().__init__()
        if dim % heads != 0:
            raise ValueError(f"dim {dim} must be divisible by heads {heads}")
        if null_slots < 1:
            # With no null slot a query whose keys are all padding would have nothing to attend to.
            raise ValueError("null_slots must be >= 1")
        self.dim, self.heads, self.null_slots = dim, heads, null_slots
        self.word_nulls = nn.Parameter(torch.empty(null_slots, dim))  # (m, d)
        self.region_nulls = nn.Parameter(torch.empty(null_slots, dim))  # (m, d)
        self.word_projection = nn.Linear(dim, dim, bias=False)  # P_S
        self.region_projection = nn.Linear(dim, dim, bias=False)  # P_I
        self.word_fusion = nn.Linear(2 * dim, dim)  # W_S (d x 2d), b_S of Eq. 2
        self.region_fusion = nn.Linear(2 * dim, dim)  # W_I (d x 2d), b_I of Eq. 3
        self.dropout = nn.Dropout(dropout)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Glorot uniform (H Sec. 5.2), zero biases."""
        for linear in (self.word_projection, self.region_projection, self.word_fusion, self.region_fusion):
            nn.init.xavier_uniform_(linear.weight)
        nn.init.zeros_(self.word_fusion.bias)
        nn.init.zeros_(self.region_fusion.bias)
        nn.init.xavier_uniform_(self.word_nulls)
        nn.init.xavier_uniform_(self.region_nulls)

    def attention_maps(self, words: Tensor, regions: Tensor, word_mask: Tensor, region_mask: Tensor
                       ) -> tuple[Tensor, Tensor]:
        """Head-averaged maps over [null slots; other side]: word -> region (B, N, m+T) and
        region -> word (B, T, m+N); rows sum to 1. Inputs are the null-extended sides."""
        m, k = self.null_slots, self.heads
        ps = rearrange(self.word_projection(words), "b n (k h) -> b k n h", k=k)  # (B, K, m+N, d/K)
        pi = rearrange(self.region_projection(regions), "b t (k h) -> b k t h", k=k)  # (B, K, m+T, d/K)
        affinity = at_least_fp32(ps @ pi.transpose(-1, -2)) / math.sqrt(self.dim // k)  # (B, K, m+N, m+T)
        fill = masked_fill_value(affinity.dtype)
        region_keys = F.pad(region_mask.bool(), (m, 0), value=True)  # (B, m+T): null slots always valid
        word_keys = F.pad(word_mask.bool(), (m, 0), value=True)  # (B, m+N)
        # queries are the real positions: the null rows / columns are keys only
        word_to_region = affinity[:, :, m:, :].masked_fill(~region_keys[:, None, None, :], fill)  # (B, K, N, m+T)
        region_to_word = affinity[:, :, :, m:].masked_fill(~word_keys[:, None, :, None], fill)  # (B, K, m+N, T)
        word_to_region = torch.softmax(word_to_region, dim=-1).mean(dim=1)  # (B, N, m+T)
        region_to_word = torch.softmax(region_to_word, dim=-2).mean(dim=1).transpose(1, 2)  # (B, T, m+N)
        return word_to_region, region_to_word

    def forward(self, words: Tensor, regions: Tensor, word_mask: Tensor, region_mask: Tensor) -> tuple[Tensor, Tensor]:
        """S_{l-1} (B, N, d) and I_{l-1} (B, T, d) with boolean masks (True = real) -> S_l, I_l."""
        b = words.shape[0]
        s = torch.cat([self.word_nulls.expand(b, -1, -1), words], dim=1)  # (B, m+N, d)
        i = torch.cat([self.region_nulls.expand(b, -1, -1), regions], dim=1)  # (B, m+T, d)
        word_to_region, region_to_word = self.attention_maps(s, i, word_mask, region_mask)
        attended_regions = word_to_region.to(i.dtype) @ i  # î_{l-1,n}: (B, N, d)
        attended_words = region_to_word.to(s.dtype) @ s  # ŝ_{l-1,t}: (B, T, d)
        fused_words = F.relu(self.word_fusion(torch.cat([words, attended_regions], dim=-1)))  # Eq. 2
        fused_regions = F.relu(self.region_fusion(torch.cat([regions, attended_words], dim=-1)))  # Eq. 3
        return words + self.dropout(fused_words), regions + self.dropout(fused_regions)
