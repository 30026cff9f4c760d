"""Region features kept on the training device (`data.features_on_device`).

At a GPU's rate the recognition tasks would read tens of GB of features a second out of the
memory-mapped store (`docs/paper_scale.md`), more than a few cores copy or a PCIe link carries. With
a store kept on the device, a batch carries only `StoreRows`: the int64 rows of its regions in the
store's feature map (padding points at a zero row appended to the map) and the store. Its
`.to(device)` gathers the rows from the store's features held once per process and device (one
tensor in the store's dtype: float16 stays float16 there) and widens them to float32 on the device:
the same numbers as the features the batch would otherwise have carried, bit for bit.

Which stores are kept on the device is set per process by the data section that reads them
(`set_on_device`, called when a `datasets` section builds): the batch builders
(`vlmt.tasks.collate.padded_regions`, the SVLR recognition batches) ask `on_device(store)`.
A `StoreRows` pickles as the store's path and its rows (never the table), so batches may cross
process boundaries; the receiving process loads the table on its first `.to()`.
"""

from __future__ import annotations

import os
import threading
from typing import TYPE_CHECKING, Iterable

import numpy as np
import torch

if TYPE_CHECKING:
    from vlmt.data.features.store import FeatureStore

_RESIDENT: set[str] = set()        # resolved folders of the stores whose batches carry rows
_TABLES: dict[tuple[str, str], torch.Tensor] = {}  # (store key, device) -> (N + 1, D) features + zero row
_LOCK = threading.Lock()
_CHUNK_BYTES = 64 << 20            # the map is copied to the device in pieces of this size


def _folder(path: str | os.PathLike) -> str:
    return os.path.realpath(path)


def set_on_device(stores: Iterable[str | os.PathLike], on: bool) -> None:
    """Keep the features of `stores` (store folders) on the device (`on`), or stop keeping them: from
    now on the batch builders hand out `StoreRows` for them, or features again."""
    folders = {_folder(p) for p in stores}
    if on:
        _RESIDENT.update(folders)
    else:
        _RESIDENT.difference_update(folders)


def kept() -> list[str]:
    """The folders of the stores kept on the device now."""
    return sorted(_RESIDENT)


def on_device(store: FeatureStore) -> bool:
    """Whether batches of `store` carry row indices (`StoreRows`) instead of features."""
    return bool(_RESIDENT) and store.folder in _RESIDENT


def release_tables() -> None:
    """Drop every table held (memory back; the next `.to()` loads its table again)."""
    with _LOCK:
        _TABLES.clear()


def held_tables() -> dict[tuple[str, str], tuple[tuple[int, ...], torch.dtype]]:
    """(store key, device) -> (shape, dtype) of each table this process holds (for tests and logs)."""
    with _LOCK:
        return {key: (tuple(t.shape), t.dtype) for key, t in _TABLES.items()}


def device_table(store: FeatureStore, device: torch.device | str) -> torch.Tensor:
    """The store's (N + 1, D) features on `device` in the store's dtype, row N zeros: loaded on first
    use from the memory map, piece by piece (never a whole host copy), then kept for the process.
    `StoreRows.to` uses it for accelerators; the CPU reads the memory map itself."""
    dev = torch.device(device)
    if dev.type == "cuda" and dev.index is None:
        dev = torch.device("cuda", torch.cuda.current_device())
    key = (store.table_key, str(dev))
    table = _TABLES.get(key)
    if table is not None:
        return table
    with _LOCK:
        table = _TABLES.get(key)
        if table is None:
            features = store.feature_map()
            n, d = features.shape
            dtype = torch.float16 if features.dtype == np.float16 else torch.float32
            table = torch.empty((n + 1, d), dtype=dtype, device=dev)
            step = max(1, _CHUNK_BYTES // max(1, d * features.itemsize))
            for lo in range(0, n, step):  # np.array: a writable host copy of one piece
                hi = min(lo + step, n)
                table[lo:hi].copy_(torch.from_numpy(np.array(features[lo:hi])))
            table[n].zero_()
            _TABLES[key] = table
    return table


def gather(table: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """(*rows.shape, D) float32 rows of a `device_table` (row N: zeros), on the table's device."""
    out = table.index_select(0, rows.reshape(-1)).view(*rows.shape, table.shape[1])
    return out.to(torch.float32)


class StoreRows:
    """Region features as rows of a store's feature map, gathered on `.to(device)`.

    rows: int64 tensor of any shape, each a row of the store's maps or `store.num_regions` (the
    zero row: padding). `shape` is the features' ((*rows.shape, D)); `.to(device)` returns them,
    float32, on `device`.
    """

    def __init__(self, store: FeatureStore, rows: torch.Tensor):
        if rows.dtype != torch.int64:
            raise TypeError(f"StoreRows: rows must be int64, got {rows.dtype}")
        self.store = store
        self.rows = rows

    @classmethod
    def of(cls, store: FeatureStore, rows: np.ndarray) -> StoreRows:
        """Rows given as a numpy int array (copied into an int64 tensor only when needed)."""
        return cls(store, torch.from_numpy(np.ascontiguousarray(rows, dtype=np.int64)))

    @property
    def shape(self) -> torch.Size:
        return torch.Size((*self.rows.shape, self.store.feature_dim))

    @property
    def dtype(self) -> torch.dtype:
        return torch.float32

    @property
    def device(self) -> torch.device:
        return self.rows.device

    def __len__(self) -> int:
        return len(self.rows)

    def __repr__(self) -> str:
        return f"StoreRows({self.store.path}, shape={tuple(self.shape)})"

    def to(self, device: torch.device | str, non_blocking: bool = False) -> torch.Tensor:
        """The features, (*rows.shape, D) float32 on `device`. On an accelerator: one gather from the
        store's table there (`device_table`, loaded on first use), widened on the device. On the
        CPU: one gather from the memory map itself (the page cache holds it; no second copy)."""
        dev = torch.device(device)
        if dev.type == "cpu":
            return self.from_map()
        table = device_table(self.store, dev)
        return gather(table, self.rows.to(table.device, non_blocking=non_blocking))

    def from_map(self) -> torch.Tensor:
        """The features on the CPU, gathered from the store's memory map and widened there."""
        features = self.store.feature_map()
        flat = self.rows.reshape(-1).numpy()
        pad = flat == len(features)
        out = self.store.feature_rows(np.where(pad, 0, flat))  # float32 (a copy), widened by torch
        out[pad] = 0.0
        return torch.from_numpy(out).view(*self.rows.shape, features.shape[1])

    def pin_memory(self) -> StoreRows:
        """Pinned rows (what a DataLoader with `pin_memory` asks of a batch's parts)."""
        return StoreRows(self.store, self.rows.pin_memory())

    def __getstate__(self) -> dict[str, object]:  # the store pickles as its path; never a table
        return {"store": self.store, "rows": self.rows}

    def __setstate__(self, state: dict[str, object]) -> None:
        self.store = state["store"]  # type: ignore[assignment]
        self.rows = state["rows"]  # type: ignore[assignment]
