"""The store's image-id index: an open-addressing hash table of (image id, record number) pairs
with Fibonacci hashing into 2^k slots (load <= 1/2) and linear probing, built and probed with
vectorised numpy so neither costs a Python loop per image."""

from __future__ import annotations

import operator
from typing import SupportsIndex, cast

import numpy as np

from vlmt.data.features.format import EMPTY

_MASK64 = (1 << 64) - 1
_GOLDEN = 0x9E3779B97F4A7C15  # 2^64 / golden ratio: Fibonacci hashing spreads sequential ids


def home_slot(image_id: int, bits: int) -> int:
    """Slot of `image_id` in a table of 2^bits slots before probing."""
    return (((image_id & _MASK64) * _GOLDEN) & _MASK64) >> (64 - bits)


def home_slots(ids: np.ndarray, bits: int) -> np.ndarray:
    """`home_slot` of many ids at once."""
    with np.errstate(over="ignore"):
        h = ids.astype(np.int64).view(np.uint64) * np.uint64(_GOLDEN)  # wraps mod 2^64
    return (h >> np.uint64(64 - bits)).astype(np.int64)


def fill_table(table: np.ndarray, ids: np.ndarray, rows: np.ndarray, bits: int) -> None:
    """Insert (ids[i] -> rows[i]) into an empty table by linear probing, all keys at once.

    A key moves past a slot only when that slot is taken, so every probe path is unbroken and
    lookups find each key exactly as if it had been inserted alone.
    """
    mask = (1 << bits) - 1
    pos = home_slots(ids, bits)
    pending = np.arange(len(ids))
    while len(pending):
        free = table[pos, 1] == EMPTY
        cand = np.flatnonzero(free)
        # several keys may want the same free slot: the first one takes it
        _, first = np.unique(pos[cand], return_index=True)
        win = cand[first]
        table[pos[win], 0] = ids[pending[win]]
        table[pos[win], 1] = rows[pending[win]]
        keep = np.ones(len(pending), dtype=bool)
        keep[win] = False
        pending, pos = pending[keep], pos[keep]
        moved = ~free[keep]
        pos[moved] = (pos[moved] + 1) & mask


def probe_many(table: np.ndarray, ids: np.ndarray, bits: int) -> np.ndarray:
    """Record numbers of `ids` in `table` (EMPTY where absent), vectorised probing."""
    mask = (1 << bits) - 1
    pos = home_slots(ids, bits)
    out = np.full(len(ids), EMPTY, dtype=np.int64)
    active = np.arange(len(ids))
    for _ in range(len(table) + 1):
        if not len(active):
            break
        slot = table[pos]  # (A, 2)
        hit = (slot[:, 1] != EMPTY) & (slot[:, 0] == ids[active])
        out[active[hit]] = slot[hit, 1]
        go_on = (slot[:, 1] != EMPTY) & ~hit
        active, pos = active[go_on], (pos[go_on] + 1) & mask
    return out


def as_image_id(image_id: object) -> int:
    """`image_id` as a 64-bit integer; TypeError for anything else (bools included)."""
    if isinstance(image_id, (bool, np.bool_)):
        raise TypeError(f"image id must be an integer, got {image_id!r}")
    try:
        value = operator.index(cast(SupportsIndex, image_id))  # raises TypeError when it is not one
    except TypeError:
        raise TypeError(f"image id must be an integer, got {type(image_id).__name__} {image_id!r}") from None
    if not -(1 << 63) <= value < (1 << 63):
        raise TypeError(f"image id {value} does not fit in 64 bits")
    return value
