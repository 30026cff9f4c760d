"""Writing a feature store atomically: records are appended to files in a temporary directory
beside the target, which is renamed into place on `commit` (or removed on `abort`)."""

from __future__ import annotations

import contextlib
import json
import operator
import os
import shutil
import tempfile
import weakref
from pathlib import Path

import numpy as np

from vlmt.data.features.format import (
    BOX_TOLERANCE,
    BOXES_FILE,
    BOXES_LAYOUT,
    EMPTY,
    FEATURE_DTYPES,
    FEATURES_FILE,
    FLOAT_DTYPE,
    FORMAT_NAME,
    FORMAT_VERSION,
    HEADER_FILE,
    INDEX_DTYPE,
    INDEX_FILE,
    MIN_INDEX_BITS,
    RECORD_DTYPE,
    RECORDS_FILE,
    DuplicateImageError,
    FeatureRecordError,
    StoreExistsError,
    format_box,
    map_file,
    nonfinite_message,
)
from vlmt.data.features.index import as_image_id, fill_table, home_slot


class FeatureStoreWriter:
    """Builds a store in a temporary directory beside `path`; it appears at `path` only when the
    writer is closed without an error (`with` block or `commit()`), and not at all otherwise.

    Memory stays constant while writing: arrays are appended to files as they come and the id
    index grows on disk. `add` checks shapes, dtypes, values and duplicates, and raises
    FeatureRecordError (a ValueError) naming the field.
    """

    def __init__(self, path: str | os.PathLike, *, feature_dim: int, overwrite: bool = False,
                 dtype: str = "float32"):
        if isinstance(feature_dim, bool) or not isinstance(feature_dim, (int, np.integer)) or feature_dim < 1:
            raise ValueError(f"feature_dim must be a positive integer, got {feature_dim!r}")
        if dtype not in FEATURE_DTYPES:
            raise ValueError(f"dtype must be one of {', '.join(FEATURE_DTYPES)}, got {dtype!r}")
        self.path = Path(path)
        self.feature_dim = int(feature_dim)
        self.dtype = dtype
        self._feature_dtype = FEATURE_DTYPES[dtype]
        self.overwrite = overwrite
        if self.path.exists() and not overwrite:
            raise StoreExistsError(self.path, "already exists; choose another path or overwrite it "
                                              "(--overwrite, overwrite=True)")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._tmp = Path(tempfile.mkdtemp(prefix=f".{self.path.name}.", suffix=".tmp", dir=self.path.parent))
        self._cleanup = weakref.finalize(self, shutil.rmtree, str(self._tmp), True)
        self._records = open(self._tmp / RECORDS_FILE, "wb")
        self._boxes = open(self._tmp / BOXES_FILE, "wb")
        self._features = open(self._tmp / FEATURES_FILE, "wb")
        self._num_images = 0
        self._num_regions = 0
        self._bits = MIN_INDEX_BITS
        self._index: np.memmap | None = self._new_index(self._bits, self._tmp / INDEX_FILE)
        self._state = "open"

    # -- index on disk
    @staticmethod
    def _new_index(bits: int, path: Path) -> np.memmap:
        table = np.memmap(path, dtype=INDEX_DTYPE, mode="w+", shape=(1 << bits, 2))
        table[:] = EMPTY
        return table

    def _grow_index(self) -> None:
        self._records.flush()
        ids = np.array(map_file(self._tmp / RECORDS_FILE, RECORD_DTYPE, (self._num_images,))["image_id"])
        bits = self._bits + 1
        new_path = self._tmp / (INDEX_FILE + ".grow")
        table = self._new_index(bits, new_path)
        fill_table(table, ids, np.arange(len(ids), dtype=np.int64), bits)
        table.flush()
        del self._index
        os.replace(new_path, self._tmp / INDEX_FILE)
        self._index, self._bits = table, bits

    def _lookup(self, image_id: int) -> int:
        mask = (1 << self._bits) - 1
        pos = home_slot(image_id, self._bits)
        index = self._index
        assert index is not None, f"writer for {self.path} is {self._state}"
        while True:
            key, row = index[pos].tolist()
            if row == EMPTY:
                return -1 - pos  # the free slot where it would go
            if key == image_id:
                return row
            pos = (pos + 1) & mask

    def __contains__(self, image_id: object) -> bool:
        return self._lookup(as_image_id(image_id)) >= 0

    def __len__(self) -> int:
        return self._num_images

    @property
    def num_regions(self) -> int:
        """Regions added so far."""
        return self._num_regions

    # -- adding
    def add(self, image_id: int, *, boxes: np.ndarray, features: np.ndarray, width: int, height: int) -> None:
        """Append one image. boxes (T, 4) and features (T, feature_dim) float32, T >= 1, finite;
        boxes pixel xyxy, not inverted, inside width x height (within BOX_TOLERANCE pixels). A
        float16 store rounds the features to nearest and refuses values beyond float16's range."""
        if self._state != "open":
            raise RuntimeError(f"writer for {self.path} is {self._state}")
        try:
            key = as_image_id(image_id)
        except TypeError as e:
            raise FeatureRecordError(image_id, "image_id", str(e)) from None
        size = {}
        for name, value in (("width", width), ("height", height)):
            try:
                size[name] = operator.index(value)
            except TypeError:
                raise FeatureRecordError(key, name, f"must be an integer, got {value!r}") from None
            if not 0 < size[name] < (1 << 31):
                raise FeatureRecordError(key, name, f"must be a positive pixel count, got {size[name]}")
        boxes = _check_array(key, "boxes", boxes, 4)
        features = _check_array(key, "features", features, self.feature_dim)
        if len(boxes) != len(features):
            raise FeatureRecordError(key, "features", f"{len(features)} feature rows for {len(boxes)} boxes")
        _check_boxes(key, boxes, size["width"], size["height"])
        with np.errstate(over="ignore"):  # overflow becomes inf, refused just below
            stored = features.astype(self._feature_dtype, copy=False)
        if not np.isfinite(stored).all():
            k = int(np.flatnonzero(~np.isfinite(stored).all(axis=1))[0])
            raise FeatureRecordError(key, "features", f"region {k} has values beyond {self.dtype}'s range "
                                                      f"(|x| > {float(np.finfo(self._feature_dtype).max):g})")
        slot = self._lookup(key)
        if slot >= 0:
            raise DuplicateImageError(key, "image_id", f"added twice (first as image number {slot})")
        count = len(boxes)
        rec = np.zeros((), dtype=RECORD_DTYPE)
        rec["image_id"], rec["start"], rec["count"] = key, self._num_regions, count
        rec["width"], rec["height"] = size["width"], size["height"]
        self._boxes.write(boxes.astype(FLOAT_DTYPE, copy=False).tobytes())
        self._features.write(stored.tobytes())
        self._records.write(rec.tobytes())
        pos = -1 - slot
        assert self._index is not None  # open
        self._index[pos, 0], self._index[pos, 1] = key, self._num_images
        self._num_images += 1
        self._num_regions += count
        if 2 * self._num_images > (1 << self._bits):
            self._grow_index()

    # -- finishing
    def commit(self) -> Path:
        """Write the header, sync, and move the finished store to `path`."""
        if self._state != "open":
            raise RuntimeError(f"writer for {self.path} is {self._state}")
        for f in (self._records, self._boxes, self._features):
            f.flush()
            os.fsync(f.fileno())
            f.close()
        assert self._index is not None  # open
        self._index.flush()
        del self._index
        record_fields = RECORD_DTYPE.names
        assert record_fields is not None  # a structured dtype
        header = {
            "format": FORMAT_NAME,
            "version": FORMAT_VERSION,
            "feature_dim": self.feature_dim,
            "num_images": self._num_images,
            "num_regions": self._num_regions,
            "index_slots": 1 << self._bits,
            "dtype": self.dtype,
            "byte_order": "little",
            "boxes": BOXES_LAYOUT,
            "record_fields": list(record_fields),
        }
        with open(self._tmp / HEADER_FILE, "w", encoding="utf-8") as hf:
            json.dump(header, hf, indent=2)
            hf.write("\n")
            hf.flush()
            os.fsync(hf.fileno())
        _fsync_dir(self._tmp)
        if self.path.exists():
            if not self.overwrite:
                self.abort()
                raise StoreExistsError(self.path, "appeared while writing; nothing was replaced")
            old = Path(tempfile.mkdtemp(prefix=f".{self.path.name}.", suffix=".old", dir=self.path.parent))
            os.replace(self.path, old / self.path.name)
            os.replace(self._tmp, self.path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(self._tmp, self.path)
        _fsync_dir(self.path.parent)
        self._cleanup.detach()
        self._state = "committed"
        return self.path

    def abort(self) -> None:
        """Throw the partial store away; nothing appears at `path`."""
        if self._state != "open":
            return
        for f in (self._records, self._boxes, self._features):
            with contextlib.suppress(Exception):
                f.close()
        self._index = None
        self._cleanup()
        self._state = "aborted"

    def __enter__(self) -> FeatureStoreWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.abort()


def _check_array(image_id: int, name: str, value: object, width: int) -> np.ndarray:
    a = np.asarray(value)
    if a.dtype != np.float32:
        raise FeatureRecordError(image_id, name, f"must be float32, got {a.dtype} (convert with .astype(np.float32))")
    if a.ndim != 2 or a.shape[1] != width:
        raise FeatureRecordError(image_id, name, f"must have shape (T, {width}), got {tuple(a.shape)}")
    if a.shape[0] < 1:
        raise FeatureRecordError(image_id, name, "an image needs at least one region (T >= 1)")
    if not np.isfinite(a).all():
        raise FeatureRecordError(image_id, name, nonfinite_message(a, name))
    return a


def _check_boxes(image_id: int, boxes: np.ndarray, width: int, height: int) -> None:
    inverted = (boxes[:, 2] < boxes[:, 0]) | (boxes[:, 3] < boxes[:, 1])
    if inverted.any():
        k = int(np.flatnonzero(inverted)[0])
        raise FeatureRecordError(image_id, "boxes", f"box {k} is inverted (x2 < x1 or y2 < y1): {format_box(boxes[k])}")
    t = BOX_TOLERANCE
    outside = (boxes[:, 0] < -t) | (boxes[:, 1] < -t) | (boxes[:, 2] > width + t) | (boxes[:, 3] > height + t)
    if outside.any():
        k = int(np.flatnonzero(outside)[0])
        raise FeatureRecordError(image_id, "boxes",
                                 f"box {k} {format_box(boxes[k])} lies outside the {width}x{height} image")


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
