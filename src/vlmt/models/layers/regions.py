"""Image input of the hierarchical model: region features (T, D) -> linear map to d -> L2
normalisation, so regions enter the encoder at the words' width d."""

from __future__ import annotations

from torch import Tensor, nn
from torch.nn import functional as F

from vlmt.models.layers.masking import at_least_fp32


class RegionEncoder(nn.Module):
    """(B, T, D) detector features -> (B, T, d) unit-norm region vectors I_0."""

    def __init__(self, *, feature_dim: int, dim: int):
        super().__init__()
        self.proj = nn.Linear(feature_dim, dim)
        nn.init.xavier_uniform_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(self, features: Tensor, mask: Tensor | None = None) -> Tensor:
        regions = F.normalize(at_least_fp32(self.proj(features)), dim=-1, eps=1e-6)
        if mask is not None:  # padded regions become exact zeros
            regions = regions * mask.to(regions.dtype)[..., None]
        return regions
