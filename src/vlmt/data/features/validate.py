"""Checking a feature store byte by byte (`vlmt data validate`): header, file sizes, every
record, the index, every box and every feature value, with memory bounded by chunked reads."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from vlmt.data.features.format import (
    BOX_TOLERANCE,
    BOXES_FILE,
    EMPTY,
    FEATURES_FILE,
    FLOAT_DTYPE,
    INDEX_DTYPE,
    INDEX_FILE,
    RECORD_DTYPE,
    RECORDS_FILE,
    feature_dtype,
    format_box,
    map_file,
    nonfinite_message,
    read_header,
    size_problems,
)
from vlmt.data.features.index import probe_many
from vlmt.errors import DataError, format_problem

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

    def report(file: object, message: str, *, record: object = None, field: str | None = None) -> None:
        out.append(format_problem(file, message, record=record, field=field))
        if max_problems is not None and len(out) >= max_problems:
            raise _Enough

    try:
        try:
            header = read_header(root)
        except DataError as e:
            report(e.file, e.reason, record=e.record, field=e.field)
            return out
        for file, message in size_problems(root, header):
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
    records = map_file(rec_path, RECORD_DTYPE, (min(n, size // RECORD_DTYPE.itemsize),))
    boxes = _Rows(box_path, FLOAT_DTYPE, 4, r)
    feats = _Rows(feat_path, feature_dtype(header), d, r)

    ids = np.asarray(records["image_id"])  # 8 bytes per image: the one O(N) array, for duplicates
    uniq, first, counts = np.unique(ids, return_index=True, return_counts=True)
    duplicated = set(uniq[counts > 1].tolist())
    if duplicated:
        seen_first = {int(uniq[i]): int(first[i]) for i in np.flatnonzero(counts > 1)}
        for j in np.flatnonzero(np.isin(ids, uniq[counts > 1])):
            if seen_first[int(ids[j])] != j:
                report(rec_path, f"duplicate image id (first at record number {seen_first[int(ids[j])]})",
                       record=int(ids[j]), field="image_id")

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
    bad_rows = _nonfinite_rows(a)  # one pass; NaN and inf are counted only where found
    for k in np.flatnonzero(np.add.reduceat(bad_rows.astype(np.int64), first)):
        rows_k = a[int(first[k]):int(first[k] + count[k])]
        report(path, nonfinite_message(rows_k, field), record=int(ids[k]), field=field)
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
            span_k = slice(int(first[k]), int(first[k] + count[k]))
            example = format_box(a[span_k][int(np.flatnonzero(flags[span_k])[0])])
            what = ("inverted (x2 < x1 or y2 < y1)" if kind == "inverted" else
                    f"outside the {int(chunk['width'][k])}x{int(chunk['height'][k])} image")
            report(path, f"{per_record[k]} of {count[k]} boxes {what}, first {example}", record=int(ids[k]),
                   field="boxes")


def _nonfinite_rows(a: np.ndarray) -> np.ndarray:
    """Rows of `a` holding a NaN or inf. float16 is checked on its bits (exponent all ones):
    numpy's isfinite on float16 runs about 10x slower than this."""
    if a.dtype == np.float16:
        return np.max(a.view(np.uint16) & np.uint16(0x7FFF), axis=1) >= 0x7C00
    return ~np.isfinite(a).all(axis=1)


def _validate_index(idx_path: Path, header: dict[str, Any], ids: np.ndarray, duplicated: set[int], report) -> None:
    slots = header["index_slots"]
    if _Rows(idx_path, INDEX_DTYPE, 2, slots).available < slots:
        return  # already reported as truncated
    table = map_file(idx_path, INDEX_DTYPE, (slots, 2))
    bits = slots.bit_length() - 1
    occupied = 0
    for i in range(0, slots, 1 << 20):
        occupied += int((np.asarray(table[i:i + (1 << 20), 1]) != EMPTY).sum())
    if occupied != len(ids):
        report(idx_path, f"holds {occupied} image ids, the records hold {len(ids)}", field="index")
    for i in range(0, len(ids), 65536):
        chunk = ids[i:i + 65536]
        found = probe_many(table, chunk, bits)
        for k in np.flatnonzero(found != np.arange(i, i + len(chunk))):
            image_id = int(chunk[k])
            if image_id in duplicated:
                continue
            where = "is missing" if found[k] == EMPTY else f"points to record number {int(found[k])}"
            report(idx_path, f"image id {where}, expected record number {i + int(k)} (rebuild the store)",
                   record=image_id, field="index")
