"""The dense co-attention layer of `vlmt.models.layers.co_attention`, computed fast.

Same equations, same numbers (the tests check outputs and gradients against the paper layer),
arranged for speed:
- everything a side needs from its own features alone - the attention projection P x and the
  first half of the fusion W[:, :d] x - is one GEMM with a (2d, d) weight (`*_in`); the second
  half W[:, d:] x̂ is a second GEMM (`*_attended`) that accumulates onto the first. So W_S of
  Eq. 2 is [word_in.weight[d:], word_attended.weight] and b_S is word_bias (`paper_state_dict`
  maps the weights to the paper layer's names);
- the own-side GEMMs are a custom autograd function whose backward splits its GEMMs by half
  instead of concatenating gradients, and the K heads' maps are computed in one batched matmul
  with the null slots written straight into the head layout;
- the residual ReLU dropout is one pass forward and one backward, with a keep mask drawn from
  16 random bits per element instead of a float;
- the own-side work (`word_side` / `region_side`) can be computed once per caption and once per
  image and reused for every pair (all-pairs retrieval scoring).
Dropout draws its randomness differently from `nn.Dropout`, so the two layers agree exactly in
eval mode or without dropout, and in distribution otherwise.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from vlmt.models.layers.masking import at_least_fp32, masked_fill_value


@dataclass
class SideInput:
    """Per-modality work of one layer that does not depend on the other modality, reusable
    across every pair the side appears in: `projected` (B, L, d) = P x, `own` (B, L, d) =
    W[:, :d] x, and `nulls` (m, d) = P applied to the null slots."""

    projected: Tensor
    own: Tensor
    nulls: Tensor

    def select(self, index: Tensor) -> SideInput:
        """The rows `index` of the batch (for pairing cached sides)."""
        return SideInput(self.projected[index], self.own[index], self.nulls)


class FusedDenseCoAttentionLayer(nn.Module):
    """One dense co-attention layer, fused: (S_{l-1}, I_{l-1}) -> (S_l, I_l), both of width d."""

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
        # W[:, d:] of Eq. 2 / Eq. 3, applied to the attended features, and the fusion biases b
        self.word_attended = nn.Linear(dim, dim, bias=False)
        self.region_attended = nn.Linear(dim, dim, bias=False)
        self.word_bias = nn.Parameter(torch.zeros(dim))
        self.region_bias = nn.Parameter(torch.zeros(dim))
        self.dropout = dropout
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
            self.word_bias.zero_()
            self.region_bias.zero_()
            nn.init.xavier_uniform_(self.word_nulls)
            nn.init.xavier_uniform_(self.region_nulls)

    # -- the paper's parameters ------------------------------------------------------------------
    def paper_state_dict(self) -> dict[str, Tensor]:
        """This layer's weights under the names of the paper layer (`DenseCoAttentionLayer`):
        P_S, P_I, W_S = [W_S own half, W_S attended half], b_S, W_I, b_I and the null slots."""
        d = self.dim
        return {
            "word_nulls": self.word_nulls.detach().clone(), "region_nulls": self.region_nulls.detach().clone(),
            "word_projection.weight": self.word_in.weight[:d].detach().clone(),
            "region_projection.weight": self.region_in.weight[:d].detach().clone(),
            "word_fusion.weight": torch.cat([self.word_in.weight[d:], self.word_attended.weight], dim=1).detach(),
            "word_fusion.bias": self.word_bias.detach().clone(),
            "region_fusion.weight": torch.cat([self.region_in.weight[d:], self.region_attended.weight], dim=1).detach(),
            "region_fusion.bias": self.region_bias.detach().clone(),
        }

    def load_paper_state_dict(self, state: dict[str, Tensor]) -> None:
        """Take the weights of a paper layer (`DenseCoAttentionLayer.state_dict()`)."""
        d = self.dim
        with torch.no_grad():
            self.word_nulls.copy_(state["word_nulls"])
            self.region_nulls.copy_(state["region_nulls"])
            for side in ("word", "region"):
                fusion = state[f"{side}_fusion.weight"]  # (d, 2d)
                getattr(self, f"{side}_in").weight.copy_(torch.cat([state[f"{side}_projection.weight"], fusion[:, :d]]))
                getattr(self, f"{side}_attended").weight.copy_(fusion[:, d:])
                getattr(self, f"{side}_bias").copy_(state[f"{side}_fusion.bias"])

    # -- per-modality part ---------------------------------------------------------------------
    def word_side(self, words: Tensor) -> SideInput:
        """P_S s and W_S[:, :d] s for every word (B, N, d), and P_S of the null slots."""
        return self._side(words, self.word_nulls, self.word_in.weight)

    def region_side(self, regions: Tensor) -> SideInput:
        """P_I i and W_I[:, :d] i for every region (B, T, d), and P_I of the null slots."""
        return self._side(regions, self.region_nulls, self.region_in.weight)

    @staticmethod
    def _side(x: Tensor, nulls: Tensor, weight: Tensor) -> SideInput:
        b, n, d = x.shape
        projected, own, null = _SideProjection.apply(x.reshape(b * n, d), nulls, weight)
        return SideInput(projected.view(b, n, d), own.view(b, n, d), null)

    # -- cross-modal part ----------------------------------------------------------------------
    def attention_maps(
        self, words: SideInput, regions: SideInput, word_mask: Tensor, region_mask: Tensor
    ) -> tuple[Tensor, Tensor]:
        """Head-averaged attention maps with the null slots first on the attended axis, from the
        projected words P_S s (B, N, d) and projected regions P_I i (B, T, d).

        Returns word->region (B, N, m+T) and region->word (B, T, m+N) maps; rows sum to 1.
        """
        b, n, _ = words.projected.shape
        t = regions.projected.shape[1]
        d, m, k = self.dim, self.null_slots, self.heads
        hd = d // k
        # Straight into head layout (B, K, m+N, d/K) / (B, K, m+T, d/K), nulls first: one copy
        # each, and the result is contiguous for the batched matmul.
        pw = torch.cat(
            [
                words.nulls.view(1, m, k, hd).transpose(1, 2).expand(b, k, m, hd),
                words.projected.view(b, n, k, hd).transpose(1, 2),
            ],
            dim=2,
        )
        pr = torch.cat(
            [
                regions.nulls.view(1, m, k, hd).transpose(1, 2).expand(b, k, m, hd),
                regions.projected.view(b, t, k, hd).transpose(1, 2),
            ],
            dim=2,
        )
        # All heads in one batched matmul; the 1/sqrt(d/K) scale on the small (m+N, m+T) result.
        # (softmax in fp32, also under autocast)
        affinity = at_least_fp32(torch.matmul(pw, pr.transpose(-1, -2))).mul_(1.0 / math.sqrt(hd))
        fill = masked_fill_value(affinity.dtype)
        key_regions = F.pad(region_mask.bool(), (m, 0), value=True)  # (B, m+T), nulls always valid
        key_words = F.pad(word_mask.bool(), (m, 0), value=True)  # (B, m+N)
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
        word_side = word_side or self.word_side(words)
        region_side = region_side or self.region_side(regions)
        w2r, r2w = self.attention_maps(word_side, region_side, word_mask, region_mask)
        attended_regions = self._attend(w2r, self.region_nulls, regions)  # î: (B, N, d)
        attended_words = self._attend(r2w, self.word_nulls, words)  # ŝ: (B, T, d)
        # Eq. 2 / 3: x + Dropout(ReLU(W[:, :d] x + W[:, d:] x̂ + b)), the first sum inside the GEMM
        pre_w = _add_matmul(word_side.own, attended_regions, self.word_attended.weight).add_(self.word_bias)
        pre_r = _add_matmul(region_side.own, attended_words, self.region_attended.weight).add_(self.region_bias)
        p = self.dropout if self.training else 0.0
        return residual_relu_dropout(words, pre_w, p), residual_relu_dropout(regions, pre_r, p)


def _compute_dtype(x: Tensor) -> torch.dtype:
    device = x.device.type
    return torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else x.dtype


class _SideProjection(torch.autograd.Function):
    """Own-side work of a layer for rows x (R, d), null slots (m, d) and the fused weight
    [P; W_own] (2d, d): returns P x, W_own x (one GEMM for both) and P nulls. The backward splits
    its GEMMs by half instead of concatenating the incoming gradients into a (R, 2d) buffer, and
    folds the rank-m null term into the weight gradient in place; both save full passes over
    activation-sized memory compared with autograd's cat/split."""

    @staticmethod
    def forward(ctx, x: Tensor, nulls: Tensor, weight: Tensor):
        dtype = _compute_dtype(x)
        ctx.dtypes = (x.dtype, nulls.dtype, weight.dtype)
        with torch.autocast(x.device.type, enabled=False):
            xc, nc, wc = (t.to(dtype) for t in (x, nulls, weight))
            d = nc.shape[1]
            hidden = torch.mm(xc, wc.t())  # (R, 2d)
            null_projected = torch.mm(nc, wc[:d].t())  # (m, d)
        ctx.save_for_backward(xc, nc, wc)
        projected, own = hidden.split(d, dim=1)
        return projected, own, null_projected

    @staticmethod
    def backward(ctx, g_proj: Tensor, g_own: Tensor, g_null: Tensor):
        xc, nc, wc = ctx.saved_tensors
        d = nc.shape[1]
        dtype = xc.dtype
        g_proj = torch.zeros(xc.shape[0], d, dtype=dtype, device=xc.device) if g_proj is None else g_proj
        g_own = torch.zeros(xc.shape[0], d, dtype=dtype, device=xc.device) if g_own is None else g_own
        g_null = torch.zeros_like(nc) if g_null is None else g_null
        with torch.autocast(xc.device.type, enabled=False):
            g_proj, g_own, g_null = g_proj.to(dtype), g_own.to(dtype), g_null.to(dtype)
            w_proj, w_own = wc[:d], wc[d:]
            grad_x = torch.addmm(torch.mm(g_proj, w_proj), g_own, w_own)  # (R, d)
            grad_w = torch.empty_like(wc)
            torch.mm(g_proj.t(), xc, out=grad_w[:d])
            grad_w[:d].addmm_(g_null.t(), nc)
            torch.mm(g_own.t(), xc, out=grad_w[d:])
            grad_nulls = torch.mm(g_null, w_proj)
        dx, dn, dw = ctx.dtypes
        return grad_x.to(dx), grad_nulls.to(dn), grad_w.to(dw)


def _add_matmul(own: Tensor, attended: Tensor, weight: Tensor) -> Tensor:
    """own + attended @ weight^T as one GEMM with accumulation: (B, L, d) each -> (B, L, d)."""
    b, n, d = attended.shape
    out = torch.addmm(own.reshape(b * n, d), attended.reshape(b * n, d), weight.t())
    return out.view(b, n, d)


def dropout_keep_mask(shape: torch.Size, p: float, device: torch.device) -> tuple[Tensor, float]:
    """Bernoulli(1 - p) keep mask from 16 random bits per element (p resolved to 1/65536) and
    the matching 1/(1 - p) scale. About 8x cheaper on the CPU than `bernoulli_`, which draws a
    float per element."""
    numel = math.prod(shape)
    bits = torch.empty((numel + 3) // 4, dtype=torch.int64, device=device).random_(-(2**63), None)
    threshold = round(p * 65536)
    keep = bits.view(torch.int16)[:numel].view(shape) >= threshold - 32768
    return keep, 65536.0 / (65536 - threshold)


class _ResidualReluDropout(torch.autograd.Function):
    """x + Dropout_p(ReLU(z)) = x + z * g with g = scale * [z > 0] * keep; g is saved once and is
    also the backward (grad_z = grad * g), so forward and backward are one pass each over z."""

    @staticmethod
    def forward(ctx, x: Tensor, z: Tensor, p: float) -> Tensor:
        if p > 0.0:
            keep, scale = dropout_keep_mask(z.shape, p, z.device)
            gate = torch.where(keep, scale, 0.0).to(z.dtype).mul_(z > 0)
        else:
            gate = (z > 0).to(z.dtype)
        ctx.save_for_backward(gate)
        return torch.addcmul(x, z, gate)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, Tensor, None]:
        (gate,) = ctx.saved_tensors
        return grad, grad * gate, None


def residual_relu_dropout(x: Tensor, z: Tensor, p: float) -> Tensor:
    """x + Dropout_p(ReLU(z)); x keeps its dtype (the fp32 residual stream under autocast)."""
    if not 0.0 <= p < 1.0:
        raise ValueError(f"dropout probability {p} outside [0, 1)")
    return _ResidualReluDropout.apply(x, z, p)
