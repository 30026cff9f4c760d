"""The feature store's on-disk format: file names, record layout, the header and its checks, and
the errors readers and writers raise.

A store is a directory of flat little-endian binary arrays plus a small JSON header:

    header.json    format, version, feature_dim D, num_images N, num_regions R, index_slots S, dtype
    records.bin    N x 32 bytes: image_id <i8, start <i8, count <i4, width <i4, height <i4, 0 <i4
    boxes.bin      R x 4 <f4   (rows start .. start+count-1 belong to one image)
    features.bin   R x D <f4, or <f2 when the header's dtype is "float16"
    index.bin      S x 2 <i8   open-addressing hash table: (image_id, record number), -1 = empty

`dtype` names the features' storage type only: boxes are always float32 (pixel coordinates of
large images need more than float16's 11 bits), and readers hand out float32 either way. A
float16 store halves the features (36 x 2048 regions: 147 KB per image instead of 295 KB), as
bottom-up features are commonly kept.
"""

from __future__ import annotations

import json
import math
import mmap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vlmt.errors import DataError

FORMAT_NAME = "vlmt-feature-store"
FORMAT_VERSION = 1
HEADER_FILE = "header.json"
RECORDS_FILE = "records.bin"
BOXES_FILE = "boxes.bin"
FEATURES_FILE = "features.bin"
INDEX_FILE = "index.bin"

RECORD_DTYPE = np.dtype(
    [("image_id", "<i8"), ("start", "<i8"), ("count", "<i4"), ("width", "<i4"), ("height", "<i4"),
     ("reserved", "<i4")]
)
FLOAT_DTYPE = np.dtype("<f4")
# the header's "dtype" -> how features.bin holds the values
FEATURE_DTYPES: dict[str, np.dtype] = {"float32": np.dtype("<f4"), "float16": np.dtype("<f2")}
INDEX_DTYPE = np.dtype("<i8")
EMPTY = -1  # record number of an empty index slot
MIN_INDEX_BITS = 3
# Boxes may reach this far (pixels) past the image border before they count as outside: extractors
# differ on whether x2 is inclusive (W - 1) or exclusive (W), and rescaling adds rounding.
BOX_TOLERANCE = 0.5



@dataclass(frozen=True, eq=False)
class RegionFeatures:
    """The regions of one image: `boxes` (T, 4) float32 pixel xyxy, `features` (T, D) float32."""

    image_id: int
    width: int
    height: int
    boxes: np.ndarray
    features: np.ndarray

    @property
    def num_regions(self) -> int:
        return int(self.boxes.shape[0])


class MissingImageError(DataError, KeyError):
    """An image id that the store does not hold (a KeyError, and a DataError for the CLI)."""

    def __init__(self, store_path: object, image_id: object, num_images: int):
        self.image_id = image_id
        super().__init__(store_path, f"no region features for image id {image_id} "
                                     f"(the store holds {num_images} images)")

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class FeatureRecordError(ValueError):
    """`FeatureStoreWriter.add` refused an image; `field` names the offending argument."""

    def __init__(self, image_id: object, field: str, message: str):
        self.image_id = image_id
        self.field = field
        self.reason = message
        super().__init__(f"image id {image_id}: field {field!r}: {message}")


class DuplicateImageError(FeatureRecordError):
    """The same image id was added twice."""


class StoreExistsError(DataError, FileExistsError):
    """The writer's target already exists and `overwrite` was not asked for."""

    def __str__(self) -> str:
        return str(self.args[0])


# ----------------------------------------------------------------------------- header

BOXES_LAYOUT = "pixel x1, y1, x2, y2"  # what the header says the boxes are


def read_header(root: Path) -> dict[str, Any]:
    """The checked header of the store at `root`; DataError naming the file and field otherwise."""
    path = root / HEADER_FILE
    if not root.is_dir():
        raise DataError(root, "not a feature store directory (missing or not a directory)")
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DataError(path, "missing: not a feature store (no header)") from None
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(path, f"unreadable header: {e}") from None
    try:
        header = json.loads(text)
    except json.JSONDecodeError as e:
        raise DataError(path, f"header is not valid JSON ({e.msg} at line {e.lineno})") from None
    if not isinstance(header, dict):
        raise DataError(path, "header must be a JSON object")
    if header.get("format") != FORMAT_NAME:
        raise DataError(path, f"not a {FORMAT_NAME} header (format={header.get('format')!r})", field="format")
    if header.get("version") != FORMAT_VERSION:
        raise DataError(path, f"unsupported version {header.get('version')!r}; this vlmt reads {FORMAT_VERSION}",
                        field="version")
    for key, low in (("feature_dim", 1), ("num_images", 0), ("num_regions", 0), ("index_slots", 1 << MIN_INDEX_BITS)):
        value = header.get(key)
        if not isinstance(value, int) or isinstance(value, bool) or value < low:
            raise DataError(path, f"must be an integer >= {low}, got {value!r}", field=key)
    slots = header["index_slots"]
    if slots & (slots - 1) or slots < 2 * header["num_images"]:
        raise DataError(path, f"must be a power of two >= 2 x num_images, got {slots}", field="index_slots")
    if not isinstance(header.get("dtype"), str) or header["dtype"] not in FEATURE_DTYPES:
        raise DataError(path, f"must be one of {', '.join(map(repr, FEATURE_DTYPES))}, got {header.get('dtype')!r}",
                        field="dtype")
    for key, want in (("byte_order", "little"), ("boxes", BOXES_LAYOUT)):
        if header.get(key) != want:
            raise DataError(path, f"must be {want!r}, got {header.get(key)!r}", field=key)
    fields = list(RECORD_DTYPE.names or ())
    if "record_fields" in header and header["record_fields"] != fields:  # stores written before this check lack it
        raise DataError(path, f"must be {fields} (the record layout this vlmt reads), got {header['record_fields']!r}",
                        field="record_fields")
    return header


def feature_dtype(header: dict[str, Any]) -> np.dtype:
    """The on-disk dtype of features.bin that a checked header names."""
    return FEATURE_DTYPES[header["dtype"]]


def expected_sizes(header: dict[str, Any]) -> dict[str, int]:
    """Byte size of each array file that `header` implies."""
    n, r, d, s = header["num_images"], header["num_regions"], header["feature_dim"], header["index_slots"]
    return {
        RECORDS_FILE: n * RECORD_DTYPE.itemsize,
        BOXES_FILE: r * 4 * FLOAT_DTYPE.itemsize,
        FEATURES_FILE: r * d * feature_dtype(header).itemsize,
        INDEX_FILE: s * 2 * INDEX_DTYPE.itemsize,
    }


def size_problems(root: Path, header: dict[str, Any]) -> list[tuple[Path, str]]:
    """(file, problem) for every array file missing or of the wrong size."""
    problems = []
    for name, want in expected_sizes(header).items():
        path = root / name
        try:
            have = path.stat().st_size
        except FileNotFoundError:
            problems.append((path, "missing"))
            continue
        if have < want:
            problems.append((path, f"truncated: {have} bytes, the header says {want}"))
        elif have > want:
            problems.append((path, f"{have} bytes, longer than the {want} the header says"))
    return problems


def map_file(path: Path, dtype: np.dtype, shape: tuple[int, ...]) -> np.ndarray:
    """A read-only memory map of `path` as an ndarray (what np.memmap does, minus its slow scalar
    indexing). Kernel read-ahead stays on: measured, turning it off (MADV_RANDOM) made cold reads
    3x slower for the few MB of RSS it saves."""
    count = math.prod(shape)
    if count == 0:  # mmap refuses empty files
        return np.zeros(shape, dtype=dtype)
    with open(path, "rb") as f:
        mm = mmap.mmap(f.fileno(), count * dtype.itemsize, access=mmap.ACCESS_READ)
    return np.frombuffer(mm, dtype=dtype, count=count).reshape(shape)


def nonfinite_message(a: np.ndarray, what: str) -> str:
    """How many NaN / inf values an (N, ...) array holds, in how many of its rows."""
    nan = int(np.isnan(a).sum())
    inf = int(np.isinf(a).sum())
    rows = int((~np.isfinite(a)).any(axis=1).sum())
    kinds = " and ".join(x for x in (f"{nan} NaN" if nan else "", f"{inf} inf" if inf else "") if x)
    return f"{kinds} values in {rows} of {len(a)} regions' {what}"


def format_box(b: np.ndarray) -> str:
    """A box as "(x1, y1, x2, y2)" for messages."""
    return "(" + ", ".join(f"{float(v):g}" for v in b) + ")"
