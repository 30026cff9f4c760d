"""Image-caption retrieval Recall@K, median and mean rank, as the VSE++ evaluation defines them.

Scores come as one matrix S (images x captions); caption j belongs to image j // C (C captions
per image, 5 for COCO and Flickr30k). Ranks are 0-based:

- image annotation (i2t): an image's rank is the rank of its best-ranked own caption among all
  captions;
- image retrieval (t2i): a caption's rank is the rank of its own image among all images.

R@K = percentage of queries with rank < K; medr = floor(median rank) + 1; meanr = mean rank + 1;
rsum = the six recalls added. COCO "1K" evaluates K consecutive folds of 1,000 images (and their
captions) separately and averages every number, rsum included.

Ties: a competitor scoring *equal* to the true item counts as ranked above it, so ties never
help the model (a constant score matrix gets the worst ranks, not the best). VSE++ sorts with
numpy's argsort, whose order among equal scores is an implementation detail; without ties both
rules give identical ranks.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

RECALL_KS = (1, 5, 10)


@dataclass(frozen=True)
class RankMetrics:
    """Recall@1/5/10 in percent, median and mean rank (1-based, as VSE++ reports them)."""

    r1: float
    r5: float
    r10: float
    medr: float
    meanr: float

    def to_json(self) -> dict[str, float]:
        return {"r1": self.r1, "r5": self.r5, "r10": self.r10, "medr": self.medr, "meanr": self.meanr}


@dataclass(frozen=True)
class RetrievalMetrics:
    i2t: RankMetrics
    t2i: RankMetrics
    rsum: float

    def to_json(self) -> dict:
        """The object `vlmt evaluate retrieval --json` prints."""
        return {"i2t": self.i2t.to_json(), "t2i": self.t2i.to_json(), "rsum": self.rsum}


def _check(scores: np.ndarray, captions_per_image: int) -> np.ndarray:
    scores = np.asarray(scores)
    if scores.ndim != 2:
        raise ValueError(f"scores must be a 2-D images x captions matrix, got shape {scores.shape}")
    if captions_per_image < 1:
        raise ValueError("captions_per_image must be at least 1")
    n_img, n_cap = scores.shape
    if n_img == 0 or n_cap != n_img * captions_per_image:
        raise ValueError(f"a {n_img} x {n_cap} matrix does not hold {captions_per_image} captions "
                         f"per image (expected {n_img * captions_per_image} columns)")
    if not np.issubdtype(scores.dtype, np.number) or np.issubdtype(scores.dtype, np.complexfloating):
        raise ValueError(f"scores must be real numbers, got dtype {scores.dtype}")
    if np.issubdtype(scores.dtype, np.floating):
        for start in range(0, n_img, 256):             # in row blocks: no matrix-sized mask
            block = scores[start:start + 256]
            if not np.isfinite(block).all():
                bad = np.argwhere(~np.isfinite(block))[0]
                raise ValueError(f"score at image {start + bad[0]}, caption {bad[1]} is not finite")
    return scores


def i2t_ranks(scores: np.ndarray, captions_per_image: int = 5, *, chunk: int = 256) -> np.ndarray:
    """0-based rank of each image's best-ranked own caption: the number of *other* images'
    captions scoring at least as high as the image's best own caption."""
    scores = _check(scores, captions_per_image)
    n_img = scores.shape[0]
    ranks = np.empty(n_img, dtype=np.int64)
    c = captions_per_image
    for start in range(0, n_img, chunk):
        rows = scores[start:start + chunk]                                   # (b, N*C)
        idx = np.arange(start, start + rows.shape[0])
        own = rows.reshape(rows.shape[0], n_img, c)[np.arange(rows.shape[0]), idx]  # (b, C)
        best = own.max(axis=1, keepdims=True)                               # (b, 1)
        at_least = (rows >= best).sum(axis=1)                                # all captions
        own_at_least = (own >= best).sum(axis=1)                             # own captions among them
        ranks[start:start + rows.shape[0]] = at_least - own_at_least
    return ranks


def t2i_ranks(scores: np.ndarray, captions_per_image: int = 5, *, chunk: int = 2048) -> np.ndarray:
    """0-based rank of each caption's own image: the number of other images scoring at least
    as high for that caption."""
    scores = _check(scores, captions_per_image)
    n_cap = scores.shape[1]
    ranks = np.empty(n_cap, dtype=np.int64)
    for start in range(0, n_cap, chunk):
        cols = scores[:, start:start + chunk]                                # (N, b)
        j = np.arange(start, start + cols.shape[1])
        true = cols[j // captions_per_image, np.arange(cols.shape[1])]       # (b,)
        ranks[start:start + cols.shape[1]] = (cols >= true).sum(axis=0) - 1
    return ranks


def rank_metrics(ranks: np.ndarray) -> RankMetrics:
    """VSE++ summary of 0-based ranks."""
    ranks = np.asarray(ranks, dtype=np.float64)
    if ranks.size == 0:
        raise ValueError("no ranks")
    n = len(ranks)
    r1, r5, r10 = (100.0 * float((ranks < k).sum()) / n for k in RECALL_KS)
    return RankMetrics(r1=r1, r5=r5, r10=r10, medr=float(np.floor(np.median(ranks)) + 1),
                       meanr=float(ranks.mean() + 1))


def retrieval_metrics(scores: np.ndarray, captions_per_image: int = 5) -> RetrievalMetrics:
    """i2t and t2i metrics of one score matrix (e.g. the 1,000-image Flickr30k test, or COCO 5K)."""
    i2t = rank_metrics(i2t_ranks(scores, captions_per_image))
    t2i = rank_metrics(t2i_ranks(scores, captions_per_image))
    return RetrievalMetrics(i2t, t2i, rsum=i2t.r1 + i2t.r5 + i2t.r10 + t2i.r1 + t2i.r5 + t2i.r10)


def fold_metrics(scores: np.ndarray, captions_per_image: int = 5, folds: int = 5) -> RetrievalMetrics:
    """Every metric averaged over `folds` consecutive, equal blocks of images (with their own
    captions only): COCO "1K" is `folds=5` on the 5,000-image test matrix. rsum is the mean of
    the folds' rsums (the current VSE++ code prints six times the mean i2t recall instead)."""
    scores = _check(scores, captions_per_image)
    n_img = scores.shape[0]
    if folds < 1 or n_img % folds:
        raise ValueError(f"{n_img} images do not split into {folds} equal folds")
    size = n_img // folds
    per_fold = []
    for f in range(folds):
        block = scores[f * size:(f + 1) * size, f * size * captions_per_image:(f + 1) * size * captions_per_image]
        per_fold.append(retrieval_metrics(block, captions_per_image))
    if folds == 1:
        return per_fold[0]

    def mean(get) -> float:
        return float(np.mean([get(m) for m in per_fold]))

    def mean_ranks(side: str) -> RankMetrics:
        return RankMetrics(**{k: mean(lambda m, k=k: getattr(getattr(m, side), k))
                              for k in ("r1", "r5", "r10", "medr", "meanr")})

    return RetrievalMetrics(mean_ranks("i2t"), mean_ranks("t2i"), rsum=mean(lambda m: m.rsum))


def save_scores(path: str | os.PathLike, scores: np.ndarray) -> None:
    """Write an images x captions score matrix as .npy (atomically) for `vlmt evaluate retrieval`."""
    from vlmt.io import atomic_write

    with atomic_write(path, "wb") as f:
        np.save(f, np.asarray(scores), allow_pickle=False)
