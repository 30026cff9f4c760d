"""Region proposals like a detector's: the true object boxes, jittered copies of them (partial
or loose boxes) and random boxes, always exactly `count` per image, in shuffled order."""

from __future__ import annotations

import numpy as np

from vlmt.data.synth.scene import Box, iou


def _clip(box: np.ndarray, width: int, height: int) -> np.ndarray:
    x1, y1, x2, y2 = box
    x1, x2 = np.clip([x1, x2], 0, width)
    y1, y2 = np.clip([y1, y2], 0, height)
    if x2 - x1 < 4:
        x2 = min(width, x1 + 4)
        x1 = x2 - 4
    if y2 - y1 < 4:
        y2 = min(height, y1 + 4)
        y1 = y2 - 4
    return np.array([x1, y1, x2, y2], dtype=np.float32)


def jitter(box: Box, rng: np.random.Generator, width: int, height: int, strength: float = 0.3) -> np.ndarray:
    """A box near `box`: centre shifted and sides scaled by up to `strength` of its size."""
    x1, y1, x2, y2 = box
    w, h = x2 - x1, y2 - y1
    cx = (x1 + x2) / 2 + rng.uniform(-strength, strength) * w
    cy = (y1 + y2) / 2 + rng.uniform(-strength, strength) * h
    w *= float(np.exp(rng.uniform(-strength, strength)))
    h *= float(np.exp(rng.uniform(-strength, strength)))
    return _clip(np.array([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2]), width, height)


def random_box(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    w = rng.uniform(0.1, 0.6) * width
    h = rng.uniform(0.1, 0.6) * height
    x1 = rng.uniform(0, width - w)
    y1 = rng.uniform(0, height - h)
    return _clip(np.array([x1, y1, x1 + w, y1 + h]), width, height)


def make_proposals(true_boxes: list[Box], rng: np.random.Generator, *, width: int, height: int,
                   count: int, jitter_per_object: int = 1) -> np.ndarray:
    """(count, 4) float32 boxes: every true box, `jitter_per_object` jittered copies of each
    (while room remains), then random boxes; rows in random order."""
    if len(true_boxes) > count:
        raise ValueError(f"{len(true_boxes)} objects do not fit in {count} proposals")
    boxes = [np.array(b, dtype=np.float32) for b in true_boxes]
    for _ in range(jitter_per_object):
        for b in true_boxes:
            if len(boxes) < count:
                boxes.append(jitter(b, rng, width, height))
    while len(boxes) < count:
        boxes.append(random_box(rng, width, height))
    out = np.stack(boxes).astype(np.float32)
    return out[rng.permutation(count)]


def best_match(box: Box, proposals: np.ndarray) -> tuple[int, float]:
    """Index of the proposal with the highest IoU with `box`, and that IoU."""
    ious = [iou(box, (float(p[0]), float(p[1]), float(p[2]), float(p[3]))) for p in proposals]
    k = int(np.argmax(ious))
    return k, float(ious[k])
