"""Visual grounding decoder (H Sec. 3.3.3, Eq. 9-10): a phrase vector is the mean of the word
features in its span, and each region is scored by sigma(p_h^T W i_t)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from vlmt.models.layers.masking import at_least_fp32, masked_fill_value


def phrase_pooling_weights(spans: Tensor, num_words: int) -> Tensor:
    """(B, H, 2) inclusive 0-based [begin, end] word spans -> (B, H, N) average-pooling weights
    (1/len inside the span, 0 elsewhere): Eq. 9 as an attention map, applied with one matmul."""
    positions = torch.arange(num_words, device=spans.device)  # (N,)
    begin, end = spans[..., :1], spans[..., 1:]  # (B, H, 1)
    inside = (positions >= begin) & (positions <= end)  # (B, H, N)
    counts = inside.sum(dim=-1, keepdim=True).clamp_min(1)
    return inside.float() / counts


class GroundingHead(nn.Module):
    """(S_l, I_l) + phrase spans -> (B, H, T) region logits; padded regions get a very low logit."""

    def __init__(self, *, dim: int):
        super().__init__()
        self.bilinear = nn.Linear(dim, dim, bias=False)  # W of Eq. 10
        nn.init.xavier_uniform_(self.bilinear.weight)

    def forward(self, words: Tensor, regions: Tensor, spans: Tensor, region_mask: Tensor) -> Tensor:
        weights = phrase_pooling_weights(spans, words.shape[1]).to(words.dtype)  # (B, H, N)
        phrases = torch.matmul(weights, words)  # (B, H, d): Eq. 9
        logits = at_least_fp32(torch.matmul(self.bilinear(phrases), regions.transpose(1, 2)))  # (B, H, T)
        return logits.masked_fill(~region_mask.bool()[:, None, :], masked_fill_value(logits.dtype))
