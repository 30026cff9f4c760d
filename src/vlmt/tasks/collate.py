"""Batch building shared by the vision-language tasks: padded token ids and padded region
features gathered from the memory-mapped feature store, with boolean masks (True = real).

Token ids are computed once per example when a task is built; a batch only pads them. Region
features are read per batch from the store's memory maps (no copy of the store in memory), so
a DataLoader worker or a second process maps the same files.
"""

from __future__ import annotations

from typing import Iterator, Sequence

import numpy as np
import torch
from torch import Tensor

from vlmt.data.features.store import FeatureStore
from vlmt.tasks.base import EpochBatchSampler


def pad_tokens(sequences: Sequence[np.ndarray], pad: int = 0) -> tuple[Tensor, Tensor]:
    """(B, N) int64 token ids padded with `pad` and (B,) lengths; N = the longest sequence."""
    lengths = np.fromiter((len(s) for s in sequences), dtype=np.int64, count=len(sequences))
    if len(lengths) and lengths.min() < 1:
        raise ValueError("every sentence needs at least one token")
    out = np.full((len(sequences), int(lengths.max()) if len(lengths) else 0), pad, dtype=np.int64)
    for row, s in enumerate(sequences):
        out[row, :len(s)] = s
    return torch.from_numpy(out), torch.from_numpy(lengths)


def gather_regions(store: FeatureStore, image_ids: Sequence[int]) -> dict[str, Tensor]:
    """Region features (B, T, D), boxes (B, T, 4) and mask (B, T) of `image_ids`, padded to the
    largest region count of the batch. A missing image raises the store's MissingImageError."""
    records = [store.read(int(i), copy=False) for i in image_ids]
    t = max(r.num_regions for r in records)
    d = store.feature_dim
    features = np.zeros((len(records), t, d), dtype=np.float32)
    boxes = np.zeros((len(records), t, 4), dtype=np.float32)
    mask = np.zeros((len(records), t), dtype=bool)
    for row, r in enumerate(records):
        n = r.num_regions
        features[row, :n] = r.features
        boxes[row, :n] = r.boxes
        mask[row, :n] = True
    return {"region_features": torch.from_numpy(features), "region_boxes": torch.from_numpy(boxes),
            "region_mask": torch.from_numpy(mask)}


def index_batches(num_examples: int, batch_size: int, *, split: str, seed: int, start: int = 0, rank: int = 0,
                  world_size: int = 1) -> Iterator[list[int]]:
    """Example indices per batch: the endless resumable training order (`EpochBatchSampler`,
    this process's slice under DDP) for "train", one ordered pass for other splits."""
    if split == "train":
        yield from EpochBatchSampler(num_examples, batch_size, seed=seed, start=start, rank=rank,
                                     world_size=world_size)
        return
    for first in range(0, num_examples, batch_size):
        yield list(range(first, min(first + batch_size, num_examples)))
