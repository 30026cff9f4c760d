"""Dense Co-attention layer (DCL) and a stack of them: the shared encoder of the hierarchical
multi-task model (H, Sec. 3.2, Eq. 1-3).

Each layer lets every word attend over the regions and every region attend over the words with
multiplicative attention, then fuses original and attended features with a residual:

    s_{l,n} = ReLU(W_S [s_{l-1,n}; î_{l-1,n}] + b_S) + s_{l-1,n}              (Eq. 2)
    i_{l,t} = ReLU(W_I [i_{l-1,t}; ŝ_{l-1,t}] + b_I) + i_{l-1,t}              (Eq. 3)

Details the hierarchical paper leaves to the authors' earlier dense co-attention work: m learned
"nowhere to attend" slots prepended to both sides; bias-free projections split into K heads;
per head S_k = P_S P_I^T / sqrt(d/K) with padded positions masked; softmax over regions (one map
per word) and over words (one map per region); the K maps are averaged and applied once to the
*unprojected* features of the other side (null slots included as values, null rows dropped as
queries). Dropout (FC rate) sits on the fusion branch before the residual sum.

Layout for speed: everything a side needs from its own features alone - the attention projection
P x and the first half of the fusion W[:, :d] x - is one GEMM with a (2d, d) weight (`*_in`);
the second half W[:, d:] x̂ is a second GEMM (`*_attended`). W_S of Eq. 2 is therefore
[word_in.weight[d:], word_attended.weight] and b_S is word_attended.bias.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.nn import functional as F


def masked_fill_value(dtype: torch.dtype) -> float:
    """A large negative score that exp() turns into exactly 0 but stays finite in `dtype`."""
    return torch.finfo(dtype).min / 2


@dataclass
class SideInput:
    """Per-modality work of one layer that does not depend on the other modality:
    `hidden` (B, L, 2d) = [P x ; W[:, :d] x], reusable across every pair the side appears in."""

    hidden: Tensor


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
        self.word_nulls = nn.Parameter(torch.empty(null_slots, dim))
        self.region_nulls = nn.Parameter(torch.empty(null_slots, dim))
        # rows [:d]: bias-free attention projection; rows [d:]: W[:, :d] of Eq. 2 / Eq. 3
        self.word_in = nn.Linear(dim, 2 * dim, bias=False)
        self.region_in = nn.Linear(dim, 2 * dim, bias=False)
        # W[:, d:] and b of Eq. 2 / Eq. 3, applied to the attended features
        self.word_attended = nn.Linear(dim, dim)
        self.region_attended = nn.Linear(dim, dim)
        self.dropout = nn.Dropout(dropout)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Glorot uniform (H Sec. 5.2) with the fan of each paper matrix: P is (d, d), W is (d, 2d)."""
        d = self.dim
        bound_p = math.sqrt(6.0 / (d + d))
        bound_w = math.sqrt(6.0 / (d + 2 * d))
        with torch.no_grad():
            for lin_in, lin_att in ((self.word_in, self.word_attended), (self.region_in, self.region_attended)):
                lin_in.weight[:d].uniform_(-bound_p, bound_p)
                lin_in.weight[d:].uniform_(-bound_w, bound_w)
                lin_att.weight.uniform_(-bound_w, bound_w)
                lin_att.bias.zero_()
            nn.init.xavier_uniform_(self.word_nulls)
            nn.init.xavier_uniform_(self.region_nulls)

    # -- per-modality part ---------------------------------------------------------------------
    def word_side(self, words: Tensor) -> SideInput:
        """[P_S s ; W_S[:, :d] s] for every word: (B, N, d) -> (B, N, 2d)."""
        return SideInput(self.word_in(words))

    def region_side(self, regions: Tensor) -> SideInput:
        """[P_I i ; W_I[:, :d] i] for every region: (B, T, d) -> (B, T, 2d)."""
        return SideInput(self.region_in(regions))

    # -- cross-modal part ----------------------------------------------------------------------
    def attention_maps(
        self, word_hidden: Tensor, region_hidden: Tensor, word_mask: Tensor, region_mask: Tensor
    ) -> tuple[Tensor, Tensor]:
        """Head-averaged attention maps with the null slots first on the attended axis.

        Returns word->region (B, N, m+T) and region->word (B, T, m+N) maps; rows sum to 1.
        """
        b, n, _ = word_hidden.shape
        t = region_hidden.shape[1]
        d, m, k = self.dim, self.null_slots, self.heads
        hd = d // k
        # Null slots are shared by the batch: project them once, (m, d).
        null_w = F.linear(self.word_nulls, self.word_in.weight[:d]).to(word_hidden.dtype)
        null_r = F.linear(self.region_nulls, self.region_in.weight[:d]).to(region_hidden.dtype)
        # (B, m+N, d) -> (B, K, m+N, d/K); the 1/sqrt(d/K) scale goes on the (smaller) word side.
        pw = torch.cat([null_w.expand(b, m, d), word_hidden[..., :d]], dim=1).mul_(1.0 / math.sqrt(hd))
        pr = torch.cat([null_r.expand(b, m, d), region_hidden[..., :d]], dim=1)
        pw = pw.view(b, m + n, k, hd).transpose(1, 2)
        pr = pr.view(b, m + t, k, hd).transpose(1, 2)
        affinity = torch.matmul(pw, pr.transpose(-1, -2))  # (B, K, m+N, m+T), all heads at once
        fill = masked_fill_value(torch.float32)
        key_regions = F.pad(region_mask.bool(), (m, 0), value=True)  # (B, m+T), nulls always valid
        key_words = F.pad(word_mask.bool(), (m, 0), value=True)  # (B, m+N)
        affinity = affinity.float()  # softmax in fp32, also under autocast
        # Null rows are not queries: words over (nulls + regions), regions over (nulls + words).
        w2r = affinity[:, :, m:, :].masked_fill(~key_regions[:, None, None, :], fill)
        r2w = affinity[:, :, :, m:].masked_fill(~key_words[:, None, :, None], fill)
        w2r = torch.softmax(w2r, dim=-1).mean(dim=1)  # (B, N, m+T)
        r2w = torch.softmax(r2w, dim=-2).mean(dim=1).transpose(1, 2)  # (B, T, m+N)
        return w2r, r2w

    @staticmethod
    def _attend(maps: Tensor, nulls: Tensor, values: Tensor) -> Tensor:
        """Apply (B, L, m+V) maps to the unprojected [nulls; values] without concatenating them."""
        m = nulls.shape[0]
        maps = maps.to(values.dtype)  # no-op in fp32; autocast recasts the matmuls anyway
        out = torch.matmul(maps[..., :m], nulls)  # (B, L, d): the null slots' share
        return torch.baddbmm(out, maps[..., m:], values)  # + real positions' share

    def forward(
        self,
        words: Tensor,
        regions: Tensor,
        word_mask: Tensor,
        region_mask: Tensor,
        *,
        word_side: SideInput | None = None,
        region_side: SideInput | None = None,
    ) -> tuple[Tensor, Tensor]:
        """(B, N, d) words and (B, T, d) regions with boolean masks (True = real) -> same shapes.

        `word_side` / `region_side` may carry `word_side(words)` / `region_side(regions)` computed
        earlier (e.g. once per caption and once per image when scoring all pairs).
        """
        d = self.dim
        wh = (word_side or self.word_side(words)).hidden  # (B, N, 2d)
        rh = (region_side or self.region_side(regions)).hidden  # (B, T, 2d)
        w2r, r2w = self.attention_maps(wh, rh, word_mask, region_mask)
        attended_regions = self._attend(w2r, self.region_nulls, regions)  # î: (B, N, d)
        attended_words = self._attend(r2w, self.word_nulls, words)  # ŝ: (B, T, d)
        # Eq. 2 / 3: x + Dropout(ReLU(W[:, :d] x + W[:, d:] x̂ + b))
        fused_w = torch.relu(wh[..., d:] + self.word_attended(attended_regions))
        fused_r = torch.relu(rh[..., d:] + self.region_attended(attended_words))
        return words + self.dropout(fused_w), regions + self.dropout(fused_r)


class DenseCoAttentionStack(nn.Module):
    """L dense co-attention layers (Eq. 1); returns every layer's output so decoders can attach
    at any depth."""

    def __init__(
        self, *, num_layers: int, dim: int, heads: int = 4, null_slots: int = 3, dropout: float = 0.3
    ):
        super().__init__()
        self.layers = nn.ModuleList(
            DenseCoAttentionLayer(dim=dim, heads=heads, null_slots=null_slots, dropout=dropout)
            for _ in range(num_layers)
        )

    def forward(
        self,
        words: Tensor,
        regions: Tensor,
        word_mask: Tensor,
        region_mask: Tensor,
        *,
        depth: int | None = None,
        first_word_side: SideInput | None = None,
        first_region_side: SideInput | None = None,
    ) -> list[tuple[Tensor, Tensor]]:
        """Outputs [(S_0, I_0), (S_1, I_1), ..., (S_depth, I_depth)]; runs only `depth` layers
        (default all), as Algorithm 1 uses the sub-network E_l up to the task's layer."""
        depth = len(self.layers) if depth is None else depth
        if not 0 <= depth <= len(self.layers):
            raise ValueError(f"depth {depth} outside 0..{len(self.layers)}")
        outputs = [(words, regions)]
        for index, layer in enumerate(self.layers[:depth]):
            words, regions = layer(
                words,
                regions,
                word_mask,
                region_mask,
                word_side=first_word_side if index == 0 else None,
                region_side=first_region_side if index == 0 else None,
            )
            outputs.append((words, regions))
        return outputs
