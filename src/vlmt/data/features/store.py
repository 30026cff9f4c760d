"""Region feature store: per image, T boxes (pixel x1, y1, x2, y2) and T feature vectors.

A store is a directory of flat little-endian binary arrays plus a small JSON header, read through
read-only memory maps, so opening costs nothing and a lookup touches only the pages it needs:

    header.json    format, version, feature_dim D, num_images N, num_regions R, index_slots S
    records.bin    N x 32 bytes: image_id <i8, start <i8, count <i4, width <i4, height <i4, 0 <i4
    boxes.bin      R x 4 <f4   (rows start .. start+count-1 belong to one image)
    features.bin   R x D <f4
    index.bin      S x 2 <i8   open-addressing hash table: (image_id, record number), -1 = empty

Lookup by image id is O(1): Fibonacci hashing of the id into S = 2^k slots (load <= 1/2) and
linear probing, all on the memory-mapped table. Nothing proportional to N is ever loaded into
the process, so memory stays constant however large the store. A `FeatureStore` opens its maps
lazily in each process and pickles as its path, so DataLoader workers and several processes can
share one store. Stores are read-only; `FeatureStoreWriter` builds one atomically (a temporary
directory beside the target, renamed on success).
"""

from __future__ import annotations

import contextlib
import json
import math
import mmap
import operator
import os
import shutil
import tempfile
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from vlmt.errors import DataError, format_problem

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
INDEX_DTYPE = np.dtype("<i8")
EMPTY = -1  # record number of an empty index slot
MIN_INDEX_BITS = 3
# Boxes may reach this far (pixels) past the image border before they count as outside: extractors
# differ on whether x2 is inclusive (W - 1) or exclusive (W), and rescaling adds rounding.
BOX_TOLERANCE = 0.5

_MASK64 = (1 << 64) - 1
_GOLDEN = 0x9E3779B97F4A7C15  # 2^64 / golden ratio: Fibonacci hashing spreads sequential ids


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


# ----------------------------------------------------------------------------- hashing

def _home_slot(image_id: int, bits: int) -> int:
    return (((image_id & _MASK64) * _GOLDEN) & _MASK64) >> (64 - bits)


def _home_slots(ids: np.ndarray, bits: int) -> np.ndarray:
    with np.errstate(over="ignore"):
        h = ids.astype(np.int64).view(np.uint64) * np.uint64(_GOLDEN)  # wraps mod 2^64
    return (h >> np.uint64(64 - bits)).astype(np.int64)


def _fill_table(table: np.ndarray, ids: np.ndarray, rows: np.ndarray, bits: int) -> None:
    """Insert (ids[i] -> rows[i]) into an empty table by linear probing, all keys at once.

    A key moves past a slot only when that slot is taken, so every probe path is unbroken and
    lookups find each key exactly as if it had been inserted alone.
    """
    mask = (1 << bits) - 1
    pos = _home_slots(ids, bits)
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


def _probe_many(table: np.ndarray, ids: np.ndarray, bits: int) -> np.ndarray:
    """Record numbers of `ids` in `table` (EMPTY where absent), vectorised probing."""
    mask = (1 << bits) - 1
    pos = _home_slots(ids, bits)
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


def _as_image_id(image_id: object) -> int:
    if isinstance(image_id, (bool, np.bool_)):
        raise TypeError(f"image id must be an integer, got {image_id!r}")
    try:
        value = operator.index(image_id)
    except TypeError:
        raise TypeError(f"image id must be an integer, got {type(image_id).__name__} {image_id!r}") from None
    if not -(1 << 63) <= value < (1 << 63):
        raise TypeError(f"image id {value} does not fit in 64 bits")
    return value


# ----------------------------------------------------------------------------- header

def _read_header(root: Path) -> dict[str, Any]:
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
    for key, want in (("dtype", "float32"), ("byte_order", "little")):
        if header.get(key) != want:
            raise DataError(path, f"must be {want!r}, got {header.get(key)!r}", field=key)
    return header


def _expected_sizes(header: dict[str, Any]) -> dict[str, int]:
    n, r, d, s = header["num_images"], header["num_regions"], header["feature_dim"], header["index_slots"]
    return {
        RECORDS_FILE: n * RECORD_DTYPE.itemsize,
        BOXES_FILE: r * 4 * FLOAT_DTYPE.itemsize,
        FEATURES_FILE: r * d * FLOAT_DTYPE.itemsize,
        INDEX_FILE: s * 2 * INDEX_DTYPE.itemsize,
    }


def _size_problems(root: Path, header: dict[str, Any]) -> list[tuple[Path, str]]:
    problems = []
    for name, want in _expected_sizes(header).items():
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


def _map(path: Path, dtype: np.dtype, shape: tuple[int, ...]) -> np.ndarray:
    """A read-only memory map of `path` as an ndarray (what np.memmap does, minus its slow scalar
    indexing). Kernel read-ahead stays on: measured, turning it off (MADV_RANDOM) made cold reads
    3x slower for the few MB of RSS it saves."""
    count = math.prod(shape)
    if count == 0:  # mmap refuses empty files
        return np.zeros(shape, dtype=dtype)
    with open(path, "rb") as f:
        mm = mmap.mmap(f.fileno(), count * dtype.itemsize, access=mmap.ACCESS_READ)
    return np.frombuffer(mm, dtype=dtype, count=count).reshape(shape)


# ----------------------------------------------------------------------------- reader

class FeatureStore:
    """Read-only, memory-mapped region features keyed by integer image id.

    `store[image_id]` -> RegionFeatures (copies, safe to hand to torch); `image_id in store`;
    `len(store)`; `store.image_ids()`; `store.feature_dim`; `store.validate()`.
    Opening checks the header and file sizes and raises DataError naming the bad file.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self._header = _read_header(self.path)
        problems = _size_problems(self.path, self._header)
        if problems:
            bad, message = problems[0]
            raise DataError(bad, message)
        self._arrays: dict[str, np.ndarray] | None = None
        self._pid: int | None = None

    # pickles as its path: each process maps the files itself
    def __getstate__(self) -> dict[str, Any]:
        return {"path": str(self.path)}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["path"])

    def __repr__(self) -> str:
        return f"FeatureStore({str(self.path)!r}, images={len(self)}, feature_dim={self.feature_dim})"

    @property
    def feature_dim(self) -> int:
        return int(self._header["feature_dim"])

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
                problems = _size_problems(self.path, h)
                bad, message = problems[0] if problems else (self.path, f"cannot map the store: {e}")
                raise DataError(bad, message) from None
            self._bits = int(h["index_slots"]).bit_length() - 1
            self._pid = os.getpid()
        return self._arrays

    def _open_maps(self, h: dict[str, Any]) -> dict[str, np.ndarray]:
        return {
            "records": _map(self.path / RECORDS_FILE, RECORD_DTYPE, (h["num_images"],)),
            "boxes": _map(self.path / BOXES_FILE, FLOAT_DTYPE, (h["num_regions"], 4)),
            "features": _map(self.path / FEATURES_FILE, FLOAT_DTYPE, (h["num_regions"], h["feature_dim"])),
            "index": _map(self.path / INDEX_FILE, INDEX_DTYPE, (h["index_slots"], 2)),
        }

    def close(self) -> None:
        """Drop the memory maps (they reopen on the next access)."""
        self._arrays = None

    def _find(self, image_id: int) -> int:
        index = self._maps()["index"]
        mask = len(index) - 1
        pos = _home_slot(image_id, self._bits)
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
            key = _as_image_id(image_id)
        except TypeError:
            return False
        return self._find(key) != EMPTY

    def _record(self, image_id: object) -> tuple[int, np.void]:
        key = _as_image_id(image_id)
        row = self._find(key)
        if row == EMPTY:
            raise MissingImageError(self.path, key, len(self))
        return key, self._maps()["records"][row]

    def read(self, image_id: object, *, copy: bool = True) -> RegionFeatures:
        """The regions of `image_id`; `copy=False` returns read-only views of the maps."""
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
            boxes, features = np.array(boxes, dtype=np.float32), np.array(features, dtype=np.float32)
        return RegionFeatures(image_id=key, width=width, height=height, boxes=boxes, features=features)

    def __getitem__(self, image_id: object) -> RegionFeatures:
        return self.read(image_id)

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

    def validate(self, *, max_problems: int | None = None) -> list[str]:
        """Every problem found in the files, one line each (file, record, field); [] when clean."""
        return validate_store(self.path, max_problems=max_problems)


# ----------------------------------------------------------------------------- validation

def is_feature_store(path: str | os.PathLike) -> bool:
    """Whether `path` is a directory whose header names this format (for finding stores under a
    folder; says nothing about whether the store is valid)."""
    try:
        header = json.loads((Path(path) / HEADER_FILE).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return False
    return isinstance(header, dict) and header.get("format") == FORMAT_NAME


_CHUNK_BYTES = 64 << 20


def validate_store(path: str | os.PathLike, *, max_problems: int | None = None) -> list[str]:
    """Check a store directory and return one line per problem (never raises for bad data).

    Checks: header, file sizes (truncated or too long), per record: count, start, width/height,
    duplicate ids, index consistency, boxes (NaN/inf, inverted, outside the image) and features
    (NaN/inf). Memory is bounded by chunking, apart from the id list used to find duplicates.
    """
    root = Path(path)
    out: list[str] = []

    class _Enough(Exception):
        pass

    def report(file: Path, message: str, *, record: object = None, field: str | None = None) -> None:
        out.append(format_problem(file, message, record=record, field=field))
        if max_problems is not None and len(out) >= max_problems:
            raise _Enough

    try:
        try:
            header = _read_header(root)
        except DataError as e:
            report(e.file, e.reason, record=e.record, field=e.field)
            return out
        for file, message in _size_problems(root, header):
            report(file, message)
        _validate_contents(root, header, report)
    except _Enough:
        pass
    return out


class _Rows:
    """Whole rows of a flat array file, read on demand with plain reads (not mapped, so checking
    a large store does not pull it all into the process's RSS)."""

    def __init__(self, path: Path, dtype: np.dtype, row_items: int, want_rows: int):
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            size = 0
        self.path, self.dtype, self.row_items = path, dtype, row_items
        self.available = min(want_rows, size // (dtype.itemsize * row_items))

    def __len__(self) -> int:
        return self.available

    def read(self, lo: int, hi: int) -> np.ndarray:
        hi = min(hi, self.available)
        if hi <= lo:
            return np.zeros((0, self.row_items), dtype=self.dtype)
        a = np.fromfile(self.path, dtype=self.dtype, count=(hi - lo) * self.row_items,
                        offset=lo * self.row_items * self.dtype.itemsize)
        return a.reshape(hi - lo, self.row_items)


def _validate_contents(root: Path, header: dict[str, Any], report) -> None:
    n, r, d = header["num_images"], header["num_regions"], header["feature_dim"]
    rec_path, box_path, feat_path, idx_path = (root / RECORDS_FILE, root / BOXES_FILE, root / FEATURES_FILE,
                                               root / INDEX_FILE)
    try:
        size = rec_path.stat().st_size
    except FileNotFoundError:
        size = 0
    records = _map(rec_path, RECORD_DTYPE, (min(n, size // RECORD_DTYPE.itemsize),))
    boxes = _Rows(box_path, FLOAT_DTYPE, 4, r)
    feats = _Rows(feat_path, FLOAT_DTYPE, d, r)

    ids = np.asarray(records["image_id"])  # 8 bytes per image: the one O(N) array, for duplicates
    uniq, first, counts = np.unique(ids, return_index=True, return_counts=True)
    duplicated = set(uniq[counts > 1].tolist())
    if duplicated:
        seen_first = {int(uniq[i]): int(first[i]) for i in np.flatnonzero(counts > 1)}
        for i in np.flatnonzero(np.isin(ids, uniq[counts > 1])):
            if seen_first[int(ids[i])] != i:
                report(rec_path, f"duplicate image id (first at record number {seen_first[int(ids[i])]})",
                       record=int(ids[i]), field="image_id")

    # per-record fields and data, in chunks of records whose regions fit in the byte budget
    rows_per_chunk = max(1, _CHUNK_BYTES // max(1, 4 * d))
    prev_end = 0  # where the previous record's regions ended: the next must start there
    i = 0
    while i < len(records):
        chunk = np.asarray(records[i:i + 65536])
        start = chunk["start"].astype(np.int64)
        count = chunk["count"].astype(np.int64)
        valid = (count > 0) & (start >= 0) & (start + count <= r)
        # shrink the chunk so the regions of its valid records fit the budget
        fit = int(np.searchsorted(np.cumsum(np.where(valid, count, 0)), rows_per_chunk, side="right"))
        if fit < len(chunk):
            chunk, start, count, valid = (x[:max(1, fit)] for x in (chunk, start, count, valid))
        ids_c = chunk["image_id"]
        prev = np.concatenate([[prev_end], (start + count)[:-1]])
        for k in np.flatnonzero(count <= 0):
            report(rec_path, f"region count must be positive, got {int(count[k])}", record=int(ids_c[k]),
                   field="count")
        for k in np.flatnonzero((count > 0) & ~valid):
            report(rec_path, f"regions {int(start[k])}..{int(start[k] + count[k]) - 1} lie outside the {r} "
                             "regions of the store", record=int(ids_c[k]), field="start")
        for k in np.flatnonzero(valid & (start != prev)):
            report(rec_path, f"regions start at row {int(start[k])}, the previous record ends at row "
                             f"{int(prev[k])} (records overlap or leave gaps)", record=int(ids_c[k]), field="start")
        for name in ("width", "height"):
            for k in np.flatnonzero(chunk[name] <= 0):
                report(rec_path, f"image {name} must be positive, got {int(chunk[name][k])}", record=int(ids_c[k]),
                       field=name)
        _check_region_rows(chunk[valid], start[valid], count[valid], boxes, box_path, 4, "boxes", report)
        _check_region_rows(chunk[valid], start[valid], count[valid], feats, feat_path, d, "features", report)
        prev_end = int(start[-1] + count[-1])
        i += len(chunk)

    # index: every record id must lead back to its own record number
    _validate_index(idx_path, header, ids, duplicated, report)


def _check_region_rows(chunk: np.ndarray, start: np.ndarray, count: np.ndarray, rows: _Rows, path: Path,
                       width: int, field: str, report) -> None:
    """NaN/inf (and for boxes: inverted, outside the image) in the regions of `chunk`'s records,
    whose rows are start[k] .. start[k]+count[k]-1 of `rows` (all within the header's R)."""
    if not len(chunk):
        return
    ids = chunk["image_id"]
    end = start + count
    short = end > len(rows)
    for k in np.flatnonzero(short):
        report(path, f"truncated: regions {int(start[k])}..{int(end[k]) - 1} are past the end of the file",
               record=int(ids[k]), field=field)
    keep = ~short
    if not keep.any():
        return
    chunk, start, count, ids = chunk[keep], start[keep], count[keep], ids[keep]
    lo, hi = int(start.min()), int((start + count).max())
    first = np.concatenate([[0], np.cumsum(count)[:-1]])  # each record's first row in `a`
    block = rows.read(lo, hi)
    if hi - lo == int(count.sum()) and (start - lo == first).all():
        a = block  # the usual case: the records' regions are contiguous and in order
    else:
        a = block[np.arange(int(count.sum())) + np.repeat(start - lo - first, count)]
    bad_rows = ~np.isfinite(a).all(axis=1)  # one pass; NaN and inf are counted only where found
    for k in np.flatnonzero(np.add.reduceat(bad_rows.astype(np.int64), first)):
        rows_k = a[int(first[k]):int(first[k] + count[k])]
        report(path, _nonfinite_message(rows_k, field), record=int(ids[k]), field=field)
    if field != "boxes":
        return
    w = np.repeat(chunk["width"].astype(np.float64), count)
    h = np.repeat(chunk["height"].astype(np.float64), count)
    with np.errstate(invalid="ignore"):
        inverted = ~bad_rows & ((a[:, 2] < a[:, 0]) | (a[:, 3] < a[:, 1]))
        t = BOX_TOLERANCE
        outside = ~bad_rows & (w > 0) & (h > 0) & (
            (a[:, 0] < -t) | (a[:, 1] < -t) | (a[:, 2] > w + t) | (a[:, 3] > h + t))
    for flags, kind in ((inverted, "inverted"), (outside, "outside")):
        per_record = np.add.reduceat(flags.astype(np.int64), first)
        for k in np.flatnonzero(per_record):
            rows_k = slice(int(first[k]), int(first[k] + count[k]))
            example = _fmt_box(a[rows_k][int(np.flatnonzero(flags[rows_k])[0])])
            what = ("inverted (x2 < x1 or y2 < y1)" if kind == "inverted" else
                    f"outside the {int(chunk['width'][k])}x{int(chunk['height'][k])} image")
            report(path, f"{per_record[k]} of {count[k]} boxes {what}, first {example}", record=int(ids[k]),
                   field="boxes")


def _nonfinite_message(a: np.ndarray, what: str) -> str:
    nan = int(np.isnan(a).sum())
    inf = int(np.isinf(a).sum())
    rows = int((~np.isfinite(a)).any(axis=1).sum())
    kinds = " and ".join(x for x in (f"{nan} NaN" if nan else "", f"{inf} inf" if inf else "") if x)
    return f"{kinds} values in {rows} of {len(a)} regions' {what}"


def _fmt_box(b: np.ndarray) -> str:
    return "(" + ", ".join(f"{float(v):g}" for v in b) + ")"


def _validate_index(idx_path: Path, header: dict[str, Any], ids: np.ndarray, duplicated: set[int], report) -> None:
    slots = header["index_slots"]
    if _Rows(idx_path, INDEX_DTYPE, 2, slots).available < slots:
        return  # already reported as truncated
    table = _map(idx_path, INDEX_DTYPE, (slots, 2))
    bits = slots.bit_length() - 1
    occupied = 0
    for i in range(0, slots, 1 << 20):
        occupied += int((np.asarray(table[i:i + (1 << 20), 1]) != EMPTY).sum())
    if occupied != len(ids):
        report(idx_path, f"holds {occupied} image ids, the records hold {len(ids)}", field="index")
    for i in range(0, len(ids), 65536):
        chunk = ids[i:i + 65536]
        found = _probe_many(table, chunk, bits)
        for k in np.flatnonzero(found != np.arange(i, i + len(chunk))):
            image_id = int(chunk[k])
            if image_id in duplicated:
                continue
            where = "is missing" if found[k] == EMPTY else f"points to record number {int(found[k])}"
            report(idx_path, f"image id {where}, expected record number {i + int(k)} (rebuild the store)",
                   record=image_id, field="index")


# ----------------------------------------------------------------------------- writer

class FeatureStoreWriter:
    """Builds a store in a temporary directory beside `path`; it appears at `path` only when the
    writer is closed without an error (`with` block or `commit()`), and not at all otherwise.

    Memory stays constant while writing: arrays are appended to files as they come and the id
    index grows on disk. `add` checks shapes, dtypes, values and duplicates, and raises
    FeatureRecordError (a ValueError) naming the field.
    """

    def __init__(self, path: str | os.PathLike, *, feature_dim: int, overwrite: bool = False):
        if isinstance(feature_dim, bool) or not isinstance(feature_dim, (int, np.integer)) or feature_dim < 1:
            raise ValueError(f"feature_dim must be a positive integer, got {feature_dim!r}")
        self.path = Path(path)
        self.feature_dim = int(feature_dim)
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
        self._index = self._new_index(self._bits, self._tmp / INDEX_FILE)
        self._state = "open"

    # -- index on disk
    @staticmethod
    def _new_index(bits: int, path: Path) -> np.memmap:
        table = np.memmap(path, dtype=INDEX_DTYPE, mode="w+", shape=(1 << bits, 2))
        table[:] = EMPTY
        return table

    def _grow_index(self) -> None:
        self._records.flush()
        ids = np.array(_map(self._tmp / RECORDS_FILE, RECORD_DTYPE, (self._num_images,))["image_id"])
        bits = self._bits + 1
        new_path = self._tmp / (INDEX_FILE + ".grow")
        table = self._new_index(bits, new_path)
        _fill_table(table, ids, np.arange(len(ids), dtype=np.int64), bits)
        table.flush()
        del self._index
        os.replace(new_path, self._tmp / INDEX_FILE)
        self._index, self._bits = table, bits

    def _lookup(self, image_id: int) -> int:
        mask = (1 << self._bits) - 1
        pos = _home_slot(image_id, self._bits)
        while True:
            key, row = self._index[pos].tolist()
            if row == EMPTY:
                return -1 - pos  # the free slot where it would go
            if key == image_id:
                return row
            pos = (pos + 1) & mask

    def __contains__(self, image_id: object) -> bool:
        return self._lookup(_as_image_id(image_id)) >= 0

    def __len__(self) -> int:
        return self._num_images

    @property
    def num_regions(self) -> int:
        """Regions added so far."""
        return self._num_regions

    # -- adding
    def add(self, image_id: int, *, boxes: np.ndarray, features: np.ndarray, width: int, height: int) -> None:
        """Append one image. boxes (T, 4) and features (T, feature_dim) float32, T >= 1, finite;
        boxes pixel xyxy, not inverted, inside width x height (within BOX_TOLERANCE pixels)."""
        if self._state != "open":
            raise RuntimeError(f"writer for {self.path} is {self._state}")
        try:
            key = _as_image_id(image_id)
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
        slot = self._lookup(key)
        if slot >= 0:
            raise DuplicateImageError(key, "image_id", f"added twice (first as image number {slot})")
        count = len(boxes)
        rec = np.zeros((), dtype=RECORD_DTYPE)
        rec["image_id"], rec["start"], rec["count"] = key, self._num_regions, count
        rec["width"], rec["height"] = size["width"], size["height"]
        self._boxes.write(boxes.astype(FLOAT_DTYPE, copy=False).tobytes())
        self._features.write(features.astype(FLOAT_DTYPE, copy=False).tobytes())
        self._records.write(rec.tobytes())
        pos = -1 - slot
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
        self._index.flush()
        del self._index
        header = {
            "format": FORMAT_NAME,
            "version": FORMAT_VERSION,
            "feature_dim": self.feature_dim,
            "num_images": self._num_images,
            "num_regions": self._num_regions,
            "index_slots": 1 << self._bits,
            "dtype": "float32",
            "byte_order": "little",
            "boxes": "pixel x1, y1, x2, y2",
            "record_fields": list(RECORD_DTYPE.names),
        }
        with open(self._tmp / HEADER_FILE, "w", encoding="utf-8") as f:
            json.dump(header, f, indent=2)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
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
        raise FeatureRecordError(image_id, name, _nonfinite_message(a, name))
    return a


def _check_boxes(image_id: int, boxes: np.ndarray, width: int, height: int) -> None:
    inverted = (boxes[:, 2] < boxes[:, 0]) | (boxes[:, 3] < boxes[:, 1])
    if inverted.any():
        k = int(np.flatnonzero(inverted)[0])
        raise FeatureRecordError(image_id, "boxes", f"box {k} is inverted (x2 < x1 or y2 < y1): {_fmt_box(boxes[k])}")
    t = BOX_TOLERANCE
    outside = (boxes[:, 0] < -t) | (boxes[:, 1] < -t) | (boxes[:, 2] > width + t) | (boxes[:, 3] > height + t)
    if outside.any():
        k = int(np.flatnonzero(outside)[0])
        raise FeatureRecordError(image_id, "boxes",
                                 f"box {k} {_fmt_box(boxes[k])} lies outside the {width}x{height} image")


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
