"""Batch building shared by the vision-language tasks: padded token ids and padded region
features gathered from the memory-mapped feature store, with boolean masks (True = real).

Token ids are computed once per example when a task is built; a batch only pads them. Region
features are read per batch from the store's memory maps (no copy of the store in memory), so
a DataLoader worker or a second process maps the same files. With `data.features_on_device` a
batch carries the features' rows in the store instead (`vlmt.data.features.resident.StoreRows`),
gathered on the device by `.to(device)`.
"""

from __future__ import annotations

import warnings
from typing import Any, Iterator, Sequence, TypeVar

import numpy as np
import torch
from torch import Tensor

from vlmt.data.features.resident import StoreRows, on_device
from vlmt.data.features.store import FeatureStore
from vlmt.tasks.base import EpochBatchSampler

T = TypeVar("T")


def pad_tokens(sequences: Sequence[np.ndarray], pad: int = 0) -> tuple[Tensor, Tensor]:
    """(B, N) int64 token ids padded with `pad` and (B,) lengths; N = the longest sequence."""
    lengths = np.fromiter((len(s) for s in sequences), dtype=np.int64, count=len(sequences))
    if len(lengths) and lengths.min() < 1:
        raise ValueError("every sentence needs at least one token")
    out = np.full((len(sequences), int(lengths.max()) if len(lengths) else 0), pad, dtype=np.int64)
    for row, s in enumerate(sequences):
        out[row, :len(s)] = s
    return torch.from_numpy(out), torch.from_numpy(lengths)


def pad_regions(features: Sequence[np.ndarray], dim: int, boxes: Sequence[np.ndarray] | None = None
                ) -> dict[str, Tensor]:
    """The one padding of pictures' regions: features (B, T, D) float32 with zeros after each picture's
    regions, mask (B, T) (True = real) and, when given, boxes (B, T, 4); T = the most regions."""
    t = max(len(f) for f in features)
    out = np.zeros((len(features), t, dim), dtype=np.float32)
    mask = np.zeros((len(features), t), dtype=bool)
    for row, f in enumerate(features):
        out[row, :len(f)] = f
        mask[row, :len(f)] = True
    padded = {"region_features": torch.from_numpy(out)}
    if boxes is not None:
        box = np.zeros((len(features), t, 4), dtype=np.float32)
        for row, b in enumerate(boxes):
            box[row, :len(b)] = b
        padded["region_boxes"] = torch.from_numpy(box)
    padded["region_mask"] = torch.from_numpy(mask)
    return padded


def gather_regions(store: FeatureStore, image_ids: Sequence[int]) -> dict[str, Any]:
    """Region features (B, T, D), boxes (B, T, 4) and mask (B, T) of `image_ids`, padded to the
    largest region count of the batch. A missing image raises the store's MissingImageError.
    The features are a `StoreRows` where the store is kept on the device (`padded_regions`)."""
    return padded_regions(store, image_ids, boxes=True)


def padded_regions(store: FeatureStore, image_ids: Sequence[int], *, boxes: bool = False) -> dict[str, Any]:
    """`pad_regions` of the images' store records (boxes too with `boxes`), the same tensors, with
    each image's features converted from the map straight into the batch (a float16 store's
    features are widened once, not into a copy first); T = the most regions of the batch.

    Where the store is kept on the device (`data.features_on_device`), "region_features" is a
    `StoreRows` of the (B, T) rows instead (padding: the zero row), whose `.to(device)` gives
    the same (B, T, D) float32 tensor; mask and boxes are the same tensors either way."""
    if on_device(store):
        return _padded_rows(store, image_ids, boxes=boxes)
    views = [store.views(int(i)) for i in image_ids]
    t = max(len(f) for _, f in views)
    out_np = np.empty((len(views), t, store.feature_dim), dtype=np.float32)  # numpy's allocation: torch.empty's
    out = torch.from_numpy(out_np)  # of this size page-faulted on every batch here (about 450 faults each)
    mask = np.zeros((len(views), t), dtype=bool)
    box = np.zeros((len(views), t, 4), dtype=np.float32) if boxes else None
    with warnings.catch_warnings():  # the maps are read-only; torch only reads them here
        warnings.simplefilter("ignore", UserWarning)
        for row, (b, f) in enumerate(views):
            out[row, :len(f)].copy_(torch.from_numpy(f))
            if len(f) < t:
                out[row, len(f):].zero_()
            mask[row, :len(f)] = True
            if box is not None:
                box[row, :len(b)] = b
    padded = {"region_features": out}
    if box is not None:
        padded["region_boxes"] = torch.from_numpy(box)
    padded["region_mask"] = torch.from_numpy(mask)
    return padded


def _padded_rows(store: FeatureStore, image_ids: Sequence[int], *, boxes: bool) -> dict[str, Any]:
    """`padded_regions` as row indices into the store's maps: no feature is read here."""
    starts, counts = store.spans(np.asarray(image_ids, dtype=np.int64))
    t = int(counts.max())
    mask = np.arange(t) < counts[:, None]  # (B, T)
    rows = np.where(mask, starts[:, None] + np.arange(t), store.num_regions)
    padded: dict[str, Any] = {"region_features": StoreRows.of(store, rows)}
    if boxes:
        box = np.zeros((len(counts), t, 4), dtype=np.float32)
        box[mask] = store.box_map()[rows[mask]]
        padded["region_boxes"] = torch.from_numpy(box)
    padded["region_mask"] = torch.from_numpy(mask)
    return padded


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


def item_batches(items: Sequence[T], batch_size: int, *, split: str, seed: int = 0, start: int = 0, rank: int = 0,
                 world_size: int = 1) -> Iterator[list[T]]:
    """The items of each batch, in the order of `index_batches` (the one batch order of every task)."""
    for rows in index_batches(len(items), batch_size, split=split, seed=seed, start=start, rank=rank,
                              world_size=world_size):
        yield [items[i] for i in rows]
