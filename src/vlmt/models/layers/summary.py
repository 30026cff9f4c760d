"""Summary attention (H Eq. 4-6): a two-layer MLP scores every position K times, each of the K
score maps is normalised by a softmax over the positions, the K maps are averaged, and the
summary is the map-weighted sum of the features. Used by the retrieval and VQA decoders."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from vlmt.models.layers.masking import at_least_fp32, masked_fill_value


class SummaryAttention(nn.Module):
    """(B, L, d) features + (B, L) mask -> (B, d) summary and its (B, L) attention map."""

    def __init__(self, *, dim: int, heads: int = 4, hidden: int | None = None, dropout: float = 0.3):
        super().__init__()
        hidden = dim if hidden is None else hidden  # "d hidden units" (H Sec. 3.3.1)
        self.score = nn.Sequential(
            nn.Linear(dim, hidden), nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden, heads)
        )
        for module in self.score:
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                nn.init.zeros_(module.bias)

    def attention(self, features: Tensor, mask: Tensor) -> Tensor:
        """Eq. 4-5: head-averaged attention over positions, (B, L); padded positions get 0."""
        scores = at_least_fp32(self.score(features))  # (B, L, K), c_{k,t}
        scores = scores.masked_fill(~mask.bool()[..., None], masked_fill_value(scores.dtype))
        return torch.softmax(scores, dim=1).mean(dim=-1)  # softmax over L, mean over K

    def forward(self, features: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        alpha = self.attention(features, mask)  # (B, L)
        # Eq. 6: v = sum_t alpha_t x_t, one batched matvec with the averaged map.
        summary = torch.matmul(alpha.to(features.dtype).unsqueeze(1), features).squeeze(1)  # (B, d)
        return summary, alpha
