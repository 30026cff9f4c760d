"""Two-stage retrieval: shortlist every query's k best candidates by a cheap dual-encoder
similarity, re-score only those pairs with the cross-attention model (not in either paper).

Both directions share one pair set: image i's k most similar captions (i2t queries) and caption
j's k' most similar images (t2i queries; k' = k unless given). The result is one images x captions matrix that the
official metrics (`vlmt.metrics.retrieval`) rank as usual: a re-scored pair always ranks above
a pair that was not re-scored (in its row and in its column), re-scored pairs rank by the model's
score and the rest by the similarity. So Recall@K for K <= k differs from exhaustive scoring only
where the true item missed the shortlist - the recall loss, which `benchmarks/retrieval_rerank.py`
measures - and median ranks beyond k come from the first stage.
"""

from __future__ import annotations

import numpy as np


def shortlist_mask(similarity: np.ndarray, k: int, k_images: int | None = None) -> np.ndarray:
    """(n_images, n_captions) bool: True for the pairs to re-score - the top-k captions of every
    image and the top-`k_images` (default k) images of every caption (each capped at its side's
    size). A larger k for the image queries, which are 5x fewer, buys their recall cheaply."""
    sim = np.asarray(similarity)
    if sim.ndim != 2 or sim.size == 0:
        raise ValueError(f"similarity must be a non-empty 2-D matrix, got shape {sim.shape}")
    k_images = k if k_images is None else k_images
    if k < 1 or k_images < 1:
        raise ValueError(f"k must be >= 1, got {k} / {k_images}")
    n_img, n_cap = sim.shape
    mask = np.zeros(sim.shape, dtype=bool)
    k_cap, k_img = min(k, n_cap), min(k_images, n_img)
    top_captions = np.argpartition(-sim, k_cap - 1, axis=1)[:, :k_cap]  # (n_img, k)
    mask[np.arange(n_img)[:, None], top_captions] = True
    top_images = np.argpartition(-sim, k_img - 1, axis=0)[:k_img, :]  # (k, n_cap)
    mask[top_images, np.arange(n_cap)[None, :]] = True
    return mask


def reranked_scores(similarity: np.ndarray, mask: np.ndarray, cross: np.ndarray) -> np.ndarray:
    """The matrix to rank: `cross` (one score per True entry of `mask`, in row-major order) on the
    re-scored pairs, lifted above every first-stage similarity; the similarity elsewhere."""
    sim = np.asarray(similarity, dtype=np.float64)
    mask = np.asarray(mask, dtype=bool)
    cross = np.asarray(cross, dtype=np.float64).reshape(-1)
    if mask.shape != sim.shape:
        raise ValueError(f"mask {mask.shape} and similarity {sim.shape} differ")
    if cross.shape[0] != int(mask.sum()):
        raise ValueError(f"{cross.shape[0]} re-scored pairs for a mask of {int(mask.sum())}")
    if not (np.isfinite(sim).all() and np.isfinite(cross).all()):
        raise ValueError("scores must be finite")
    out = sim.copy()
    if cross.size:
        lift = sim.max() - cross.min() + 1.0  # every re-scored pair > every similarity
        out[mask] = cross + lift
    return out
