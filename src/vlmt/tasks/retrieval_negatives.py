"""Hard negatives for retrieval training (not in the paper): mismatched examples whose pictures
are described like the anchor's.

The paper trains Eq. 7 without saying which mismatched pairs it scores. Negatives drawn at random
from the batch mostly differ from the positive in many ways (other shapes, other colours, another
background), so a model can rank them below the positive without learning counts or relations.
A *companion* is an example of another training picture whose captions share the anchor picture's
words: its caption is a hard negative for the anchor's picture, its picture a hard negative for the
anchor's caption. Nothing here reads a scene annotation, so the same mining applies to COCO or
Flickr30k captions.

Picture similarity is the cosine between TF-IDF bags of words over all of a picture's captions
(`caption_neighbours`); a companion is drawn from the anchor picture's `pool` nearest pictures,
skipping a picture that has the anchor's own caption word for word (it would be a certain false
negative) and companion captions that the anchor picture also has (`draw_companions`).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch


def caption_neighbours(captions: Sequence[Sequence[np.ndarray]], pool: int, *, block: int = 1024) -> np.ndarray:
    """(P, k) int64: for each of P pictures (given as the token-id arrays of its captions), the
    k = min(pool, P - 1) other pictures with the most similar captions, most similar first.

    Similarity: cosine of L2-normalised TF-IDF vectors (term counts over all the picture's captions
    times log(P / pictures using the word)); ties break towards the lower index. Computed a block of
    pictures at a time as a sparse x dense product, so memory stays O(P x block)."""
    p = len(captions)
    if p < 2:
        raise ValueError(f"hard negatives need at least 2 training pictures, got {p}")
    k = min(pool, p - 1)
    rows, cols, counts = [], [], []
    for i, caps in enumerate(captions):
        words, n = np.unique(np.concatenate([np.asarray(c, dtype=np.int64) for c in caps]), return_counts=True)
        rows.append(np.full(len(words), i, dtype=np.int64))
        cols.append(words)
        counts.append(n.astype(np.float64))
    row, col, tf = np.concatenate(rows), np.concatenate(cols), np.concatenate(counts)
    vocab = int(col.max()) + 1
    df = np.bincount(col, minlength=vocab)
    weight = tf * np.log(p / df[col])
    norm = np.sqrt(np.bincount(row, weights=weight ** 2, minlength=p))
    weight = weight / np.where(norm > 0, norm, 1.0)[row]
    matrix = torch.sparse_coo_tensor(torch.from_numpy(np.stack([row, col])), torch.from_numpy(weight),
                                     (p, vocab), check_invariants=True).coalesce()
    dense_rows = np.zeros((vocab, min(block, p)), dtype=np.float64)
    out = np.empty((p, k), dtype=np.int64)
    for lo in range(0, p, block):
        hi = min(lo + block, p)
        dense_rows[:] = 0.0
        sel = (row >= lo) & (row < hi)
        dense_rows[col[sel], row[sel] - lo] = weight[sel]
        sim = torch.sparse.mm(matrix, torch.from_numpy(dense_rows[:, :hi - lo])).T.numpy()  # (hi - lo, P)
        sim[np.arange(hi - lo), np.arange(lo, hi)] = -np.inf  # never itself
        # stable descending order: ties keep the lower index first
        order = np.argsort(-sim, axis=1, kind="stable")[:, :k]
        out[lo:hi] = order
    return out


def draw_companions(rng: np.random.Generator, anchors: Sequence[int], count: int, *, example_picture: np.ndarray,
                    picture_examples: Sequence[np.ndarray], neighbours: np.ndarray,
                    caption_keys: Sequence[bytes], picture_keys: Sequence[frozenset[bytes]]) -> np.ndarray:
    """(len(anchors), count) example rows: for each anchor example, `count` examples of other
    pictures drawn without replacement from its picture's neighbours (`caption_neighbours`).

    example_picture: each example's picture index; picture_examples: each picture's example rows;
    caption_keys: each example's caption as bytes (token ids); picture_keys: each picture's set of
    caption keys. A neighbour that has the anchor's caption is skipped, and so is a companion
    caption the anchor's picture also has; when the pool runs out, other pictures are drawn
    uniformly (with the same two checks, then without them)."""
    out = np.empty((len(anchors), count), dtype=np.int64)
    num_pictures = len(picture_examples)
    for a, row in enumerate(anchors):
        own = int(example_picture[row])
        chosen: list[int] = []
        used = {own}
        phases = (lambda: rng.permutation(neighbours[own]), lambda: rng.permutation(num_pictures))
        for strict, order in ((True, phases[0]), (True, phases[1]), (False, phases[1])):
            for j in (int(j) for j in order()):
                if len(chosen) == count:
                    break
                if j in used or (strict and caption_keys[row] in picture_keys[j]):
                    continue
                rows = [int(r) for r in picture_examples[j] if not strict or caption_keys[r] not in picture_keys[own]]
                if rows:
                    used.add(j)
                    chosen.append(rows[int(rng.integers(len(rows)))])
            if len(chosen) == count:
                break
        else:
            raise ValueError(f"not enough training pictures for {count} hard negatives per example")
        out[a] = chosen
    return out
