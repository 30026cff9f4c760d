"""Visual recognition metrics on Visual Genome regions (SVLR Sec. 5.3, Fig. 5).

- Object accuracy: top-1 over the object label set; a region is correct when its best-scoring
  label is one of its annotated names that are in the label set (Genome regions may carry more
  than one name). Regions with no name in the label set are not scorable and must be left out
  by the caller (they raise here rather than count as errors).
- Hypernym-aware object accuracy: the same, but the best-scoring label may also be a hypernym of
  one of the region's names that is in the label set (a square predicted as "rectangle"). Eq. 1
  trains hypernyms as positives, so the strict metric counts what the loss asks for as an error;
  both are reported.
- Attribute accuracy: Genome annotates which attributes a region has, never which it lacks, so
  a missing attribute is not a wrong one. For a region with k >= 1 annotated attributes we count
  how many of its k best-scoring attributes are annotated ones (top-k precision, which here
  equals top-k recall) and average over regions; regions without attributes are left out. It
  needs no threshold and is 100 only when every region's annotated attributes are its top ones.
- Per-class accuracy: object accuracy restricted to the regions carrying a class, for the
  frequency analysis of Fig. 5 (`frequency_grid` bins the per-class change between two models
  by the classes' training frequencies in two datasets).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np


def _labels(targets: Sequence[Sequence[int]], num_classes: int, what: str) -> list[np.ndarray]:
    out = []
    for i, labels in enumerate(targets):
        t = np.unique(np.asarray(list(labels), dtype=np.int64))
        if t.size == 0:
            raise ValueError(f"region {i} has no {what} in the label set; leave it out")
        if t.min() < 0 or t.max() >= num_classes:
            raise ValueError(f"region {i} has a {what} index outside 0..{num_classes - 1}")
        out.append(t)
    return out


def object_correct(scores: np.ndarray, targets: Sequence[Sequence[int]]) -> np.ndarray:
    """Per region: is the top-1 label one of the region's labels? (R,) bool.

    `scores` is (R, C); ties in the top score are broken against the model: a region counts as
    correct only when every label sharing the top score is a true label."""
    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim != 2 or len(scores) != len(targets):
        raise ValueError("scores must be (regions, classes) with one target list per region")
    labels = _labels(targets, scores.shape[1], "object label")
    top = scores.max(axis=1, keepdims=True)
    out = np.empty(len(labels), dtype=bool)
    for i, t in enumerate(labels):
        at_top = np.flatnonzero(scores[i] == top[i, 0])
        out[i] = np.isin(at_top, t).all()
    return out


def object_accuracy(scores: np.ndarray, targets: Sequence[Sequence[int]]) -> float:
    """Top-1 object accuracy in percent."""
    return 100.0 * float(object_correct(scores, targets).mean())


def object_accuracy_hypernym(scores: np.ndarray, targets: Sequence[Sequence[int]],
                             hypernyms: Sequence[Sequence[int]]) -> float:
    """Top-1 object accuracy in percent where a region's labels or their hypernyms in the label set
    (`hypernyms`, one list per region, may be empty) count as correct; ties as in `object_correct`."""
    if len(hypernyms) != len(targets):
        raise ValueError("one hypernym list per region is needed")
    accepted = [[*t, *h] for t, h in zip(targets, hypernyms)]
    return 100.0 * float(object_correct(scores, accepted).mean())


def attribute_precision(scores: np.ndarray, targets: Sequence[Sequence[int]]) -> np.ndarray:
    """Per region with k annotated attributes: fraction of its k best-scoring attributes that
    are annotated, (R,) in [0, 1]. A competitor tying with the k-th score is ranked first."""
    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim != 2 or len(scores) != len(targets):
        raise ValueError("scores must be (regions, attributes) with one target list per region")
    labels = _labels(targets, scores.shape[1], "attribute")
    out = np.empty(len(labels))
    for i, t in enumerate(labels):
        k = len(t)
        is_true = np.zeros(scores.shape[1], dtype=bool)
        is_true[t] = True
        # sort by score descending, false attributes before true ones on equal scores
        order = np.lexsort((is_true, -scores[i]))
        out[i] = is_true[order[:k]].sum() / k
    return out


def attribute_accuracy(scores: np.ndarray, targets: Sequence[Sequence[int]]) -> float:
    """Mean top-k attribute precision over regions, in percent."""
    return 100.0 * float(attribute_precision(scores, targets).mean())


def per_class_accuracy(scores: np.ndarray, targets: Sequence[Sequence[int]]) -> dict[int, float]:
    """Class -> object accuracy (percent) over the regions annotated with that class; classes
    without regions are absent."""
    correct = object_correct(scores, targets)
    hits: dict[int, list[bool]] = {}
    for ok, t in zip(correct, targets):
        for c in set(int(x) for x in t):
            hits.setdefault(c, []).append(bool(ok))
    return {c: 100.0 * sum(v) / len(v) for c, v in sorted(hits.items())}


@dataclass(frozen=True)
class FrequencyGrid:
    """Fig. 5 grid: cell [i, j] holds classes with row-dataset frequency in row_edges[i:i+2]
    and column-dataset frequency in col_edges[j:j+2] (lower edge inclusive)."""

    row_edges: tuple[float, ...]
    col_edges: tuple[float, ...]
    baseline_mean: np.ndarray    # mean accuracy of the baseline model per cell (nan if empty)
    mean_change: np.ndarray      # mean (model - baseline) accuracy per cell (nan if empty)
    counts: np.ndarray           # classes per cell


def frequency_grid(baseline: Mapping[int, float], model: Mapping[int, float],
                   row_frequency: Mapping[int, int], col_frequency: Mapping[int, int],
                   row_edges: Sequence[float], col_edges: Sequence[float]) -> FrequencyGrid:
    """Bin classes by two training frequencies (e.g. rows: VQA occurrences, columns: Genome
    examples) and average per-class accuracy and its change in each cell. Classes must have an
    accuracy under both models; classes outside the edges are left out."""
    rows, cols = len(row_edges) - 1, len(col_edges) - 1
    if rows < 1 or cols < 1:
        raise ValueError("need at least two edges per axis")
    sums = np.zeros((rows, cols))
    base = np.zeros((rows, cols))
    counts = np.zeros((rows, cols), dtype=np.int64)
    for c, acc in baseline.items():
        if c not in model:
            raise ValueError(f"class {c} has no accuracy under the second model")
        i = np.searchsorted(row_edges, row_frequency.get(c, 0), side="right") - 1
        j = np.searchsorted(col_edges, col_frequency.get(c, 0), side="right") - 1
        if 0 <= i < rows and 0 <= j < cols:
            sums[i, j] += model[c] - acc
            base[i, j] += acc
            counts[i, j] += 1
    with np.errstate(invalid="ignore", divide="ignore"):
        return FrequencyGrid(tuple(row_edges), tuple(col_edges), base / counts, sums / counts, counts)
