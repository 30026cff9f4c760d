"""Region feature store: per image, T boxes (pixel x1, y1, x2, y2) and T feature vectors.

The files (`vlmt.data.features.format`) are read through read-only memory maps, so opening costs
nothing and a lookup touches only the pages it needs. Lookup by image id is O(1) on the
memory-mapped hash table (`vlmt.data.features.index`). Nothing proportional to the number of images
is ever loaded into the process, so memory stays constant however large the store. A
`FeatureStore` opens its maps lazily in each process and pickles as its path, so DataLoader workers
and several processes can share one store. Stores are read-only; `FeatureStoreWriter`
(`vlmt.data.features.writer`) builds one atomically, `validate_store`
(`vlmt.data.features.validate`) checks every byte of one.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from vlmt.data.features.format import (
    BOXES_FILE,
    EMPTY,
    FEATURES_FILE,
    FLOAT_DTYPE,
    FORMAT_NAME,
    HEADER_FILE,
    INDEX_DTYPE,
    INDEX_FILE,
    RECORD_DTYPE,
    RECORDS_FILE,
    MissingImageError,
    RegionFeatures,
    feature_dtype,
    map_file,
    read_header,
    size_problems,
)
from vlmt.data.features.index import as_image_id, home_slot
from vlmt.errors import DataError

# ----------------------------------------------------------------------------- reader

class FeatureStore:
    """Read-only, memory-mapped region features keyed by integer image id.

    `store[image_id]` -> RegionFeatures (copies, safe to hand to torch); `image_id in store`;
    `len(store)`; `store.image_ids()`; `store.feature_dim`.
    Opening checks the header and file sizes and raises DataError naming the bad file.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.folder = os.path.realpath(self.path)  # the store's identity across processes and spellings
        self._header = read_header(self.path)
        problems = size_problems(self.path, self._header)
        if problems:
            bad, message = problems[0]
            raise DataError(bad, message)
        self._arrays: dict[str, np.ndarray] | None = None
        self._pid: int | None = None
        self._sorted: tuple[np.ndarray, np.ndarray] | None = None  # (sorted image ids, their records): `spans`
        self._sorted_pid: int | None = None

    # pickles as its path: each process maps the files itself
    def __getstate__(self) -> dict[str, Any]:
        return {"path": str(self.path)}

    def __setstate__(self, state: dict[str, Any]) -> None:
        type(self).__init__(self, state["path"])

    def __repr__(self) -> str:
        return f"FeatureStore({str(self.path)!r}, images={len(self)}, feature_dim={self.feature_dim})"

    @property
    def feature_dim(self) -> int:
        return int(self._header["feature_dim"])

    @property
    def dtype(self) -> str:
        """How the features are stored on disk: "float32" or "float16" (read as float32 either way)."""
        return str(self._header["dtype"])

    @property
    def num_regions(self) -> int:
        """Total number of regions over all images."""
        return int(self._header["num_regions"])

    @property
    def header(self) -> dict[str, Any]:
        return dict(self._header)

    def __len__(self) -> int:
        return int(self._header["num_images"])

    def _maps(self) -> dict[str, np.ndarray]:
        if self._arrays is None or self._pid != os.getpid():
            h = self._header
            try:
                self._arrays = self._open_maps(h)
            except (OSError, ValueError) as e:  # a file changed since the store was opened
                problems = size_problems(self.path, h)
                bad, message = problems[0] if problems else (self.path, f"cannot map the store: {e}")
                raise DataError(bad, message) from None
            self._bits = int(h["index_slots"]).bit_length() - 1
            self._pid = os.getpid()
        return self._arrays

    def _open_maps(self, h: dict[str, Any]) -> dict[str, np.ndarray]:
        return {
            "records": map_file(self.path / RECORDS_FILE, RECORD_DTYPE, (h["num_images"],)),
            "boxes": map_file(self.path / BOXES_FILE, FLOAT_DTYPE, (h["num_regions"], 4)),
            "features": map_file(self.path / FEATURES_FILE, feature_dtype(h), (h["num_regions"], h["feature_dim"])),
            "index": map_file(self.path / INDEX_FILE, INDEX_DTYPE, (h["index_slots"], 2)),
        }

    def close(self) -> None:
        """Drop the memory maps (they reopen on the next access)."""
        self._arrays = None

    def _find(self, image_id: int) -> int:
        index = self._maps()["index"]
        mask = len(index) - 1
        pos = home_slot(image_id, self._bits)
        for _ in range(len(index)):
            key, row = index[pos].tolist()
            if row == EMPTY:
                return EMPTY
            if key == image_id:
                return row
            pos = (pos + 1) & mask
        return EMPTY

    def __contains__(self, image_id: object) -> bool:
        try:
            key = as_image_id(image_id)
        except TypeError:
            return False
        return self._find(key) != EMPTY

    def _record(self, image_id: object) -> tuple[int, np.void]:
        key = as_image_id(image_id)
        row = self._find(key)
        if row == EMPTY:
            raise MissingImageError(self.path, key, len(self))
        return key, self._maps()["records"][row]

    def read(self, image_id: object, *, copy: bool = True) -> RegionFeatures:
        """The regions of `image_id`, float32. `copy=False` returns read-only views of the maps where
        it can: a float16 store's features are always converted (a copy)."""
        key, rec = self._record(image_id)
        _, start, count, width, height, _ = rec.item()
        if count <= 0 or start < 0 or start + count > self.num_regions:
            raise DataError(self.path / RECORDS_FILE, f"damaged record: regions {start}..{start + count - 1} of "
                                                      f"{self.num_regions} (run validate())", record=key,
                            field="count")
        maps = self._maps()
        boxes = maps["boxes"][start:start + count]
        features = maps["features"][start:start + count]
        if copy:
            boxes = np.array(boxes, dtype=np.float32)
            features = np.array(features, dtype=np.float32) if features.dtype == np.float32 else \
                as_float32(features)
        elif features.dtype != np.float32:
            features = as_float32(features)
        return RegionFeatures(image_id=key, width=width, height=height, boxes=boxes, features=features)

    def __getitem__(self, image_id: object) -> RegionFeatures:
        return self.read(image_id)

    def boxes(self, image_id: object) -> np.ndarray:
        """(T, 4) float32 boxes of one image (a read-only view of the map), without touching its
        features: matching annotated boxes to regions then never pages in the feature file."""
        key, rec = self._record(image_id)
        start, count = int(rec["start"]), int(rec["count"])
        if count <= 0 or start < 0 or start + count > self.num_regions:
            raise DataError(self.path / RECORDS_FILE, f"damaged record: regions {start}..{start + count - 1} of "
                                                      f"{self.num_regions} (run validate())", record=key,
                            field="count")
        return self._maps()["boxes"][start:start + count]

    def region_span(self, image_id: object) -> tuple[int, int]:
        """(first row in the maps, region count) of one image: a batch that gathers single regions of
        many images computes their rows in the maps once, then reads them with `feature_rows`."""
        key, rec = self._record(image_id)
        start, count = int(rec["start"]), int(rec["count"])
        if count <= 0 or start < 0 or start + count > self.num_regions:
            raise DataError(self.path / RECORDS_FILE, f"damaged record: regions {start}..{start + count - 1} of "
                                                      f"{self.num_regions} (run validate())", record=key,
                            field="count")
        return start, count

    def feature_rows(self, rows: np.ndarray) -> np.ndarray:
        """(len(rows), D) float32 features of rows of the maps (from `region_span`), gathered in one
        indexing of the map and widened from float16 once."""
        features = self._maps()["features"][rows]
        return features if features.dtype == np.float32 else as_float32(features)

    def spans(self, image_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(first rows, region counts), int64, of many images at once: what a batch of row indices
        into the maps (`vlmt.data.features.resident`) needs. One binary search of a sorted copy of
        the store's image ids, made on first use (16 bytes an image: 5 MB for 312,798 images), where
        probing the hash table for a batch's 180 pictures took about a millisecond of numpy calls.
        A missing image raises MissingImageError, a damaged record DataError, as `region_span`."""
        ids = np.asarray(image_ids, dtype=np.int64)
        maps = self._maps()
        if self._sorted is None or self._sorted_pid != self._pid:
            keys = maps["records"]["image_id"]
            order = np.argsort(keys, kind="stable")
            self._sorted, self._sorted_pid = (np.ascontiguousarray(keys[order]), order), self._pid
        keys, order = self._sorted
        if not len(keys):
            if len(ids):
                raise MissingImageError(self.path, int(ids[0]), 0)
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        at = np.minimum(np.searchsorted(keys, ids), len(keys) - 1)
        missing = keys[at] != ids
        if missing.any():
            raise MissingImageError(self.path, int(ids[int(np.argmax(missing))]), len(self))
        rec = maps["records"][order[at]]
        starts, counts = rec["start"].astype(np.int64), rec["count"].astype(np.int64)
        bad = np.flatnonzero((counts <= 0) | (starts < 0) | (starts + counts > self.num_regions))
        if len(bad):
            self.region_span(int(ids[bad[0]]))  # raises the DataError naming the record
        return starts, counts

    def box_map(self) -> np.ndarray:
        """The whole (num_regions, 4) float32 box map (a read-only memory map)."""
        return self._maps()["boxes"]

    def feature_map(self) -> np.ndarray:
        """The whole (num_regions, D) feature map in the store's dtype (a read-only memory map)."""
        return self._maps()["features"]

    @property
    def table_key(self) -> str:
        """The store's folder and its feature file's identity (inode, size, change time): a store
        rewritten in place (`atomic_path`) gets a new key, so a table of the old one is not used."""
        st = os.stat(self.path / FEATURES_FILE)
        return f"{self.folder}:{st.st_ino}:{st.st_size}:{st.st_mtime_ns}"

    def views(self, image_id: object) -> tuple[np.ndarray, np.ndarray]:
        """(boxes (T, 4) float32, features (T, D) in the store's dtype) of one image: read-only views
        of the maps, for a batch that converts the features straight into its own array (one pass
        over them instead of two; `vlmt.tasks.collate.padded_regions`)."""
        key, rec = self._record(image_id)
        start, count = int(rec["start"]), int(rec["count"])
        if count <= 0 or start < 0 or start + count > self.num_regions:
            raise DataError(self.path / RECORDS_FILE, f"damaged record: regions {start}..{start + count - 1} of "
                                                      f"{self.num_regions} (run validate())", record=key,
                            field="count")
        maps = self._maps()
        return maps["boxes"][start:start + count], maps["features"][start:start + count]

    def region_count(self, image_id: object) -> int:
        """T of one image, without touching its features."""
        return int(self._record(image_id)[1]["count"])

    def image_size(self, image_id: object) -> tuple[int, int]:
        """(width, height) of one image, without touching its features."""
        rec = self._record(image_id)[1]
        return int(rec["width"]), int(rec["height"])

    def image_ids(self) -> np.ndarray:
        """All image ids in insertion order: a read-only int64 view of the records (not a copy)."""
        return self._maps()["records"]["image_id"]

    def __iter__(self) -> Iterator[int]:
        ids = self.image_ids()
        for i in range(0, len(ids), 65536):
            yield from (int(x) for x in ids[i:i + 65536])

def as_float32(values: np.ndarray) -> np.ndarray:
    """A float32 copy of float16 `values` (exact: every float16 is a float32), converted by torch,
    whose vectorised conversion measured 10x numpy's `astype` here (0.17 against 1.7 ns a value);
    the conversion was half of an SVLR multiple-choice batch's CPU time."""
    import torch

    out = np.empty(values.shape, dtype=np.float32)
    with warnings.catch_warnings():  # the store's map is read-only; torch only reads it here
        warnings.simplefilter("ignore", UserWarning)
        torch.from_numpy(out).copy_(torch.from_numpy(values))
    return out


def is_feature_store(path: str | os.PathLike) -> bool:
    """Whether `path` is a directory whose header names this format (for finding stores under a
    folder; says nothing about whether the store is valid)."""
    try:
        header = json.loads((Path(path) / HEADER_FILE).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return False
    return isinstance(header, dict) and header.get("format") == FORMAT_NAME
