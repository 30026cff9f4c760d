"""Agreement of model attention with human attention (SVLR Table 2, VQA-HAT protocol).

Both maps are resized to 14 x 14 and compared with Spearman's rank correlation; the score of a
model is the mean over question-image pairs. The centre baseline is a map that decreases with
the distance from the image centre; as Spearman's rho only sees the order of the values, any
such map (Gaussian of any width, negative distance, ...) gives the same score.

Region-based models attend over boxes, not pixels: `regions_to_map` spreads each region's weight
over the grid cells its box covers (by overlap area) so it can be compared like a pixel map.
"""

from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

GRID = 14


def resize_map(attention: np.ndarray, size: int = GRID) -> np.ndarray:
    """Resize a 2-D map to size x size: adaptive average pooling when shrinking (each cell is
    the mean of the source pixels under it), bilinear interpolation when enlarging a coarser
    map (e.g. a 7 x 7 grid attention)."""
    a = np.asarray(attention, dtype=np.float64)
    if a.ndim != 2 or a.size == 0:
        raise ValueError(f"attention map must be a non-empty 2-D array, got shape {a.shape}")
    if not np.isfinite(a).all():
        raise ValueError("attention map has non-finite values")
    if a.shape == (size, size):
        return a.copy()
    t = torch.from_numpy(a)[None, None]
    if a.shape[0] >= size and a.shape[1] >= size:
        out = F.adaptive_avg_pool2d(t, (size, size))
    else:
        out = F.interpolate(t, size=(size, size), mode="bilinear", align_corners=False)
    return out[0, 0].numpy()


def _average_ranks(x: np.ndarray) -> np.ndarray:
    """Ranks 1..n with ties sharing their mean rank (what Spearman's rho needs)."""
    order = np.argsort(x, kind="stable")
    sorted_x = x[order]
    starts = np.flatnonzero(np.r_[True, sorted_x[1:] != sorted_x[:-1]])
    ends = np.r_[starts[1:], len(x)]
    ranks_sorted = np.repeat((starts + ends + 1) / 2.0, ends - starts)
    ranks = np.empty(len(x))
    ranks[order] = ranks_sorted
    return ranks


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman's rank correlation of two equally sized arrays (Pearson on average ranks);
    nan when either is constant (no order to compare)."""
    x = np.asarray(x, dtype=np.float64).ravel()
    y = np.asarray(y, dtype=np.float64).ravel()
    if x.shape != y.shape or x.size < 2:
        raise ValueError("need two arrays of the same size, at least 2 values")
    rx, ry = _average_ranks(x), _average_ranks(y)
    rx -= rx.mean()
    ry -= ry.mean()
    denom = np.sqrt((rx * rx).sum() * (ry * ry).sum())
    return float((rx * ry).sum() / denom) if denom > 0 else float("nan")


def rank_correlation(model_map: np.ndarray, human_map: np.ndarray, size: int = GRID) -> float:
    """Spearman's rho between two attention maps after resizing both to size x size."""
    return spearman(resize_map(model_map, size), resize_map(human_map, size))


def centre_map(size: int = GRID) -> np.ndarray:
    """The centre baseline: minus the Euclidean distance of each cell centre to the image centre."""
    c = (np.arange(size) + 0.5) - size / 2.0
    return -np.sqrt(c[:, None] ** 2 + c[None, :] ** 2)


def mean_rank_correlation(pairs: Iterable[tuple[np.ndarray, np.ndarray]], size: int = GRID) -> float:
    """Mean rho over (model map, human map) pairs. A pair where either map is constant has no
    defined rho and raises, rather than being dropped silently."""
    values = []
    for i, (m, h) in enumerate(pairs):
        rho = rank_correlation(m, h, size)
        if rho != rho:
            raise ValueError(f"pair {i}: a constant map has no rank correlation")
        values.append(rho)
    if not values:
        raise ValueError("no pairs")
    return float(np.mean(values))


def centre_baseline(human_maps: Iterable[np.ndarray], size: int = GRID) -> float:
    """Mean rho of the centre map against each human map."""
    centre = centre_map(size)
    return mean_rank_correlation(((centre, h) for h in human_maps), size)


def regions_to_map(boxes: np.ndarray, weights: np.ndarray, width: float, height: float,
                   size: int = GRID) -> np.ndarray:
    """Spread region attention over a size x size grid of the image: each cell gets the sum of
    the weights of the boxes covering it, times the covered fraction of the cell.

    boxes: (T, 4) pixel xyxy; weights: (T,) attention over regions.
    """
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    weights = np.asarray(weights, dtype=np.float64).reshape(-1)
    if len(boxes) != len(weights):
        raise ValueError("one weight per box")
    if width <= 0 or height <= 0:
        raise ValueError("image width and height must be positive")
    xs = np.linspace(0.0, width, size + 1)
    ys = np.linspace(0.0, height, size + 1)
    # covered length of each cell edge-interval by each box: (T, size)
    cover_x = np.clip(np.minimum(boxes[:, 2:3], xs[None, 1:]) - np.maximum(boxes[:, 0:1], xs[None, :-1]), 0, None)
    cover_y = np.clip(np.minimum(boxes[:, 3:4], ys[None, 1:]) - np.maximum(boxes[:, 1:2], ys[None, :-1]), 0, None)
    cell_area = (width / size) * (height / size)
    # (T, rows=y, cols=x) covered fractions, weighted and summed over regions
    frac = cover_y[:, :, None] * cover_x[:, None, :] / cell_area
    return np.einsum("t,tyx->yx", weights, frac)


def agreement_by_threshold(model_rhos: Sequence[float], centre_rhos: Sequence[float],
                           thresholds: Sequence[float]) -> tuple[list[float | None], list[int]]:
    """SVLR Fig. 7: for each threshold t, the mean of `model_rhos` over the pairs whose human map
    correlates with the centre map at most t (`centre_rhos`, the same pairs in the same order)
    and how many pairs that is; (means, counts), a mean is None for an empty subset."""
    m = np.asarray(model_rhos, dtype=np.float64)
    c = np.asarray(centre_rhos, dtype=np.float64)
    if m.shape != c.shape:
        raise ValueError("one centre correlation per model correlation")
    means: list[float | None] = []
    counts: list[int] = []
    for t in thresholds:
        keep = c <= t
        counts.append(int(keep.sum()))
        means.append(float(m[keep].mean()) if keep.any() else None)
    return means, counts
