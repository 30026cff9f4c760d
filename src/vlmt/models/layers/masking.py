"""Masks and the arithmetic around them, shared by every layer and head.

Convention: a mask is boolean and True at real positions (words, regions, choices), False at
padding. Scores that a softmax must ignore are filled with `masked_fill_value`, a large finite
negative number (not -inf, so a row whose every entry is padding stays finite).
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor


def at_least_fp32(x: Tensor) -> Tensor:
    """x in fp32 when it is a lower precision (autocast), unchanged when fp32 or fp64."""
    return x if x.dtype in (torch.float32, torch.float64) else x.float()


def masked_fill_value(dtype: torch.dtype) -> float:
    """A large negative score that exp() turns into exactly 0 but stays finite in `dtype`."""
    return torch.finfo(dtype).min / 2


def lengths_to_mask(lengths: Tensor, max_len: int) -> Tensor:
    """(B,) lengths -> (B, max_len) boolean mask, True at real positions."""
    return torch.arange(max_len, device=lengths.device)[None, :] < lengths[:, None]


def masked_rows(module: Callable[[Tensor], Tensor], x: Tensor, mask: Tensor | None) -> Tensor:
    """Apply a row-wise module to the rows of `x` (..., F) where `mask` (...) is True.

    Padded rows are never seen by the module (so BatchNorm statistics come from real rows only)
    and come back as zeros.
    """
    lead = x.shape[:-1]
    flat = x.reshape(-1, x.shape[-1])
    if mask is None:
        return module(flat).reshape(*lead, -1)
    keep = mask.reshape(-1)
    out_rows = module(flat[keep])
    out = flat.new_zeros(flat.shape[0], out_rows.shape[-1])
    out = out.index_put((keep.nonzero(as_tuple=True)[0],), out_rows)
    return out.reshape(*lead, -1)


def masked_max(values: Tensor, mask: Tensor, dim: int) -> tuple[Tensor, Tensor]:
    """Max over `dim` of the unmasked entries; returns (max, any) with max = 0 where none."""
    filled = values.masked_fill(~mask, float("-inf"))
    best = filled.max(dim=dim).values
    present = mask.any(dim=dim)
    return torch.where(present, best, torch.zeros_like(best)), present


def masked_mean(values: Tensor, mask: Tensor, dim: int) -> Tensor:
    """Mean over `dim` (of a (..., L, E) tensor) of unmasked rows; zeros where all are masked."""
    weights = mask.to(values.dtype).unsqueeze(-1)
    total = (values * weights).sum(dim=dim)
    count = weights.sum(dim=dim).clamp(min=1.0)
    return total / count
