"""Converters from the published region-feature formats into a `FeatureStore`.

TSV: the bottom-up-attention Faster R-CNN output. One image per line, no header, tab-separated;
`boxes` and `features` are base64 of raw little-endian float32 arrays of shape (num_boxes, 4) and
(num_boxes, D). Field orders in circulation (`TSV_LAYOUTS`):

    bottom-up   image_id image_w image_h num_boxes boxes features        (the original extractor)
    lxmert      img_id img_h img_w objects_id objects_conf attrs_id attrs_conf num_boxes boxes features
    + variants of bottom-up with trailing columns (cls_prob; classes, attributes), ignored here.

HDF5 (h5py, optional): the layouts of the widely used preprocessing scripts; see `read_hdf5`.
store: another vlmt feature store, e.g. to re-encode a float32 store as float16 (`dtype`).
Every problem raises DataError naming the file, the line or record, and the field.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

import numpy as np

from vlmt.data.features.format import FeatureRecordError, StoreExistsError
from vlmt.data.features.writer import FeatureStoreWriter
from vlmt.errors import DataError

FLOAT32_LE = np.dtype("<f4")

# field names in file order; only the names in REQUIRED_TSV_FIELDS (after aliasing) are used
TSV_LAYOUTS: dict[str, tuple[str, ...]] = {
    "bottom-up": ("image_id", "image_w", "image_h", "num_boxes", "boxes", "features"),
    "bottom-up-cls-prob": ("image_id", "image_w", "image_h", "num_boxes", "boxes", "features", "cls_prob"),
    "bottom-up-attributes": ("image_id", "image_w", "image_h", "num_boxes", "boxes", "features", "classes",
                             "attributes"),
    "lxmert": ("img_id", "img_h", "img_w", "objects_id", "objects_conf", "attrs_id", "attrs_conf", "num_boxes",
               "boxes", "features"),
}
# `auto` picks a layout from the number of columns of the first line
AUTO_LAYOUT_BY_COLUMNS = {6: "bottom-up", 10: "lxmert"}
TSV_ALIASES = {"img_id": "image_id", "img_w": "image_w", "img_h": "image_h"}
REQUIRED_TSV_FIELDS = ("image_id", "image_w", "image_h", "num_boxes", "boxes", "features")

_NAMED_ID = re.compile(r"^(?:[A-Za-z0-9]+_)*0*(\d+)$")  # COCO_val2014_000000393267 -> 393267


@dataclass(frozen=True)
class RawRecord:
    """One image as read from an input file, before it enters the store."""

    where: str  # how problems name it: "line 12 (image 5)" (TSV), "7 (image 5)" or "'5' (image 5)" (HDF5)
    image_id: int
    width: int
    height: int
    boxes: np.ndarray
    features: np.ndarray


@dataclass(frozen=True)
class ConvertSummary:
    output: str
    inputs: tuple[str, ...]
    images: int
    regions: int
    feature_dim: int
    dtype: str = "float32"

    def as_dict(self) -> dict[str, Any]:
        return {"output": self.output, "inputs": list(self.inputs), "images": self.images,
                "regions": self.regions, "feature_dim": self.feature_dim, "dtype": self.dtype}


def parse_image_id(text: str, *, file: object, where: str) -> int:
    """An integer id, or the trailing number of a COCO-style name (COCO_val2014_000000393267)."""
    text = text.strip()
    try:
        return int(text)
    except ValueError:
        pass
    m = _NAMED_ID.match(text)
    if not m:
        raise DataError(file, f"image id {text[:60]!r} is neither an integer nor a name ending in _<number>",
                        record=where, field="image_id")
    return int(m.group(1))


def _tsv_fields(spec: str | Sequence[str], first_columns: int, file: object) -> tuple[str, ...]:
    if not isinstance(spec, str):
        names = tuple(spec)
    elif spec == "auto":
        layout = AUTO_LAYOUT_BY_COLUMNS.get(first_columns)
        if layout is None:
            raise DataError(file, f"first line has {first_columns} tab-separated fields; name them with "
                                  f"--tsv-fields ({', '.join(TSV_LAYOUTS)} or a comma-separated list)",
                            record="line 1")
        names = TSV_LAYOUTS[layout]
    elif spec in TSV_LAYOUTS:
        names = TSV_LAYOUTS[spec]
    else:
        names = tuple(x.strip() for x in spec.split(","))
    canonical = tuple(TSV_ALIASES.get(n, n) for n in names)
    missing = [n for n in REQUIRED_TSV_FIELDS if n not in canonical]
    if missing or len(set(canonical)) != len(canonical):
        raise DataError(file, f"TSV field list {','.join(names)!r} must name each of "
                              f"{', '.join(REQUIRED_TSV_FIELDS)} once (missing: {', '.join(missing) or 'none'})")
    return canonical


def _strict_b64decode(raw: bytes) -> bytes:
    """base64 that refuses any character outside the alphabet (C speed on Python >= 3.11)."""
    if sys.version_info >= (3, 11):
        return binascii.a2b_base64(raw, strict_mode=True)
    return base64.b64decode(raw, validate=True)  # Python 3.10: no strict_mode


def _decode_floats(raw: bytes, *, file: object, where: str, field: str) -> np.ndarray:
    if raw[:2] in (b"b'", b'b"') and raw[-1:] == raw[1:2]:
        raw = raw[2:-1]  # Python 3 ports of the extractor that wrote str(bytes): b'AAAA...'
    try:
        data = _strict_b64decode(raw)
    except (binascii.Error, ValueError) as e:
        raise DataError(file, f"not valid base64 ({e})", record=where, field=field) from None
    if len(data) % 4:
        raise DataError(file, f"{len(data)} decoded bytes is not a whole number of float32 values",
                        record=where, field=field)
    return np.frombuffer(data, dtype=FLOAT32_LE)


def _int_field(text: bytes, *, file: object, where: str, field: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise DataError(file, f"not an integer: {text[:40].decode('utf-8', 'replace')!r}", record=where,
                        field=field) from None


def read_tsv(path: str | os.PathLike, *, fields: str | Sequence[str] = "auto") -> Iterator[RawRecord]:
    """Stream the records of one bottom-up TSV file (constant memory: one line at a time)."""
    path = Path(path)
    names: tuple[str, ...] | None = None
    try:
        f = open(path, "rb")
    except OSError as e:
        raise DataError(path, f"cannot open: {e.strerror}") from None
    with f:
        for lineno, line in enumerate(f, 1):
            line = line.rstrip(b"\r\n")
            if not line.strip():
                continue  # blank lines (e.g. a final empty line) hold no record
            cols = line.split(b"\t")
            if names is None:
                names = _tsv_fields(fields, len(cols), path)
            where = f"line {lineno}"
            if len(cols) != len(names):
                raise DataError(path, f"{len(cols)} tab-separated fields, expected {len(names)} "
                                      f"({', '.join(names)})", record=where)
            row = dict(zip(names, cols))
            image_id = parse_image_id(row["image_id"].decode("utf-8", "replace"), file=path, where=where)
            where = f"line {lineno} (image {image_id})"
            width = _int_field(row["image_w"], file=path, where=where, field="image_w")
            height = _int_field(row["image_h"], file=path, where=where, field="image_h")
            num_boxes = _int_field(row["num_boxes"], file=path, where=where, field="num_boxes")
            if num_boxes < 1:
                raise DataError(path, f"must be at least 1, got {num_boxes}", record=where, field="num_boxes")
            boxes = _decode_floats(row["boxes"], file=path, where=where, field="boxes")
            if boxes.size != 4 * num_boxes:
                raise DataError(path, f"{boxes.size} float32 values, num_boxes={num_boxes} needs {4 * num_boxes}",
                                record=where, field="boxes")
            features = _decode_floats(row["features"], file=path, where=where, field="features")
            if features.size == 0 or features.size % num_boxes:
                raise DataError(path, f"{features.size} float32 values do not split into {num_boxes} regions",
                                record=where, field="features")
            yield RawRecord(where, image_id, width, height, boxes.reshape(num_boxes, 4),
                            features.reshape(num_boxes, -1))


# ----------------------------------------------------------------------------- HDF5

_FEATURE_NAMES = ("features", "image_features", "feats", "x")
_BOX_NAMES = ("boxes", "image_bb", "bboxes", "bbox")
_ID_NAMES = ("image_id", "image_ids", "ids", "img_id", "img_ids", "coco_ids")
_WIDTH_NAMES = ("image_w", "widths", "width", "img_w", "image_width")
_HEIGHT_NAMES = ("image_h", "heights", "height", "img_h", "image_height")
_COUNT_NAMES = ("num_boxes", "num_bbox", "num_boxes_per_image")


def _import_h5py():
    try:
        import h5py
    except ImportError:
        raise DataError("h5py", "reading HDF5 needs the optional h5py package: pip install 'vlmt[hdf5]' "
                                "(or pip install h5py)") from None
    return h5py


def _first(container, names: Iterable[str]):
    for n in names:
        if n in container:
            return n
    return None


def _as_float32(a: np.ndarray, *, file: object, where: str, field: str) -> np.ndarray:
    if a.dtype.kind != "f":
        raise DataError(file, f"must hold floating-point values, got {a.dtype}", record=where, field=field)
    return a.astype(np.float32, copy=False)


def read_hdf5(path: str | os.PathLike) -> Iterator[RawRecord]:
    """Stream the images of one HDF5 feature file. Layouts recognised (by dataset names):

    stacked  `features` (N, T, D) and `boxes` (N, T, 4), or the transposed (N, D, T) / (N, 4, T)
             of the VQA-counting preprocessing; ids in `image_id`/`ids`, sizes in
             `image_w`/`widths` and `image_h`/`heights` (N,); optional `num_boxes` (N,) keeps only
             the first num_boxes rows of padded images.
    flat     `image_features` (R, D), `image_bb` (R, 4), `pos_boxes` (N, 2) start/end rows (the
             adaptive 10-100 layout), with `image_id`, `image_w`, `image_h` (N,) in the file.
    groups   one group per image named by its id, holding `features` (T, D) and `boxes` (T, 4),
             width/height as attributes or scalar datasets (`image_w`/`width`, `image_h`/`height`).
    """
    h5py = _import_h5py()
    path = Path(path)
    try:
        f = h5py.File(path, "r")
    except (OSError, ValueError) as e:
        raise DataError(path, f"cannot open as HDF5: {e}") from None
    with f:
        feat_name, box_name = _first(f, _FEATURE_NAMES), _first(f, _BOX_NAMES)
        if feat_name and box_name and isinstance(f[feat_name], h5py.Dataset):
            yield from _read_hdf5_arrays(f, path, feat_name, box_name)
        else:
            groups = [k for k in f if isinstance(f[k], h5py.Group)]
            if not groups:
                raise DataError(path, "no recognised layout: expected datasets features/boxes (or image_features/"
                                      f"image_bb) or one group per image; found {sorted(f)[:10]}")
            yield from _read_hdf5_groups(f, path, h5py)


def _need(f, names, path, what) -> str:
    name = _first(f, names)
    if name is None:
        raise DataError(path, f"no {what} dataset (looked for {', '.join(names)})", field=names[0])
    return name


def _read_hdf5_arrays(f, path: Path, feat_name: str, box_name: str) -> Iterator[RawRecord]:
    feats, boxes = f[feat_name], f[box_name]
    ids = np.asarray(f[_need(f, _ID_NAMES, path, "image id")][()]).reshape(-1)
    widths = np.asarray(f[_need(f, _WIDTH_NAMES, path, "image width")][()]).reshape(-1)
    heights = np.asarray(f[_need(f, _HEIGHT_NAMES, path, "image height")][()]).reshape(-1)
    n = len(ids)
    for name, a in (("widths", widths), ("heights", heights)):
        if len(a) != n:
            raise DataError(path, f"{len(a)} entries for {n} image ids", field=name)

    if "pos_boxes" in f:  # flat rows + [start, end) per image
        pos = np.asarray(f["pos_boxes"][()])
        if pos.shape != (n, 2):
            raise DataError(path, f"shape {pos.shape}, expected ({n}, 2)", field="pos_boxes")
        if feats.ndim != 2 or boxes.ndim != 2 or boxes.shape[1] != 4 or feats.shape[0] != boxes.shape[0]:
            raise DataError(path, f"flat layout needs {feat_name} (R, D) and {box_name} (R, 4); got "
                                  f"{feats.shape} and {boxes.shape}", field=feat_name)
        for i in range(n):
            where = str(i)
            s, e = int(pos[i, 0]), int(pos[i, 1])
            if not 0 <= s < e <= feats.shape[0]:
                raise DataError(path, f"rows {s}..{e} outside the {feats.shape[0]} rows", record=where,
                                field="pos_boxes")
            yield _record(path, where, ids[i], widths[i], heights[i], boxes[s:e], feats[s:e], box_name, feat_name)
        return

    if feats.ndim != 3 or boxes.ndim != 3 or feats.shape[0] != n or boxes.shape[0] != n:
        raise DataError(path, f"stacked layout needs {feat_name} (N, T, D) and {box_name} (N, T, 4) with N={n} "
                              f"image ids; got {feats.shape} and {boxes.shape}", field=feat_name)
    transposed = boxes.shape[2] != 4 and boxes.shape[1] == 4  # (N, 4, T) and (N, D, T)
    t = boxes.shape[2] if transposed else boxes.shape[1]
    if (feats.shape[2] if transposed else feats.shape[1]) != t or (not transposed and boxes.shape[2] != 4):
        raise DataError(path, f"{feat_name} {feats.shape} and {box_name} {boxes.shape} disagree on the regions "
                              "per image", field=feat_name)
    count_name = _first(f, _COUNT_NAMES)
    counts = np.asarray(f[count_name][()]).reshape(-1) if count_name else np.full(n, t)
    if len(counts) != n:
        raise DataError(path, f"{len(counts)} entries for {n} image ids", field=count_name)
    d = feats.shape[1] if transposed else feats.shape[2]
    block = max(1, (32 << 20) // max(1, t * d * 4))  # read ~32 MB at a time
    for lo in range(0, n, block):
        hi = min(n, lo + block)
        fb, bb = feats[lo:hi], boxes[lo:hi]
        if transposed:
            fb, bb = fb.transpose(0, 2, 1), bb.transpose(0, 2, 1)
        for k in range(hi - lo):
            i = lo + k
            where = str(i)
            c = int(counts[i])
            if not 1 <= c <= t:
                raise DataError(path, f"must be between 1 and {t}, got {c}", record=where, field=count_name)
            yield _record(path, where, ids[i], widths[i], heights[i], bb[k, :c], fb[k, :c], box_name, feat_name)


def _scalar(group, names, path, where, what):
    for n in names:
        if n in group.attrs:
            return group.attrs[n]
        if n in group:
            return group[n][()]
    raise DataError(path, f"no {what} (attribute or dataset {', '.join(names)})", record=where, field=names[0])


def _read_hdf5_groups(f, path: Path, h5py) -> Iterator[RawRecord]:
    for name in f:
        group = f[name]
        where = repr(name)
        if not isinstance(group, h5py.Group):
            raise DataError(path, "per-image layout: every top-level member must be a group", record=where)
        image_id = parse_image_id(name, file=path, where=where)
        feat_name = _need(group, _FEATURE_NAMES, path, f"features dataset in {where}")
        box_name = _need(group, _BOX_NAMES, path, f"boxes dataset in {where}")
        width = _scalar(group, _WIDTH_NAMES, path, where, "image width")
        height = _scalar(group, _HEIGHT_NAMES, path, where, "image height")
        yield _record(path, where, image_id, width, height, group[box_name][()], group[feat_name][()],
                      box_name, feat_name)


def _record(path, where, image_id, width, height, boxes, feats, box_name, feat_name) -> RawRecord:
    def as_int(v, field):
        a = np.asarray(v).reshape(-1)
        if field == "image_id" and a.size == 1 and a.dtype.kind in "SUO":  # ids stored as names
            name = a[0].decode("utf-8", "replace") if isinstance(a[0], bytes) else str(a[0])
            return parse_image_id(name, file=path, where=where)
        if a.size != 1 or a.dtype.kind not in "iuf" or float(a[0]) != int(a[0]):
            raise DataError(path, f"must be one integer, got {v!r}", record=where, field=field)
        return int(a[0])

    image_id = as_int(image_id, "image_id")
    where = f"{where} (image {image_id})"
    return RawRecord(where, image_id, as_int(width, "image_w"), as_int(height, "image_h"),
                     _as_float32(np.asarray(boxes), file=path, where=where, field=box_name),
                     _as_float32(np.asarray(feats), file=path, where=where, field=feat_name))


# ----------------------------------------------------------------------------- into a store

def read_store(path: str | os.PathLike) -> Iterator[RawRecord]:
    """The images of an existing feature store, in its order (features as float32)."""
    from vlmt.data.features.store import FeatureStore

    store = FeatureStore(path)  # checks the header and file sizes
    for image_id in store:
        r = store.read(image_id)
        yield RawRecord(f"image {image_id}", image_id, r.width, r.height, r.boxes, r.features)


READERS: dict[str, Callable[..., Iterator[RawRecord]]] = {"tsv": read_tsv, "hdf5": read_hdf5, "store": read_store}


def convert(
    source: str,
    inputs: Sequence[str | os.PathLike],
    out: str | os.PathLike,
    *,
    tsv_fields: str | Sequence[str] = "auto",
    feature_dim: int | None = None,
    overwrite: bool = False,
    progress: Callable[[int], None] | None = None,
    dtype: str = "float32",
    id_offset: int = 0,
) -> ConvertSummary:
    """Convert `inputs` (all of format `source`: "tsv", "hdf5" or "store") into one store at `out`
    whose features are kept as `dtype` ("float32" or "float16"); each image is stored under its
    id + `id_offset` (Genome's ids beside COCO's in one store).

    The store appears only if every record of every input is valid; the first bad record raises
    DataError (file, line/record, field) and leaves nothing at `out`. `feature_dim`, when given,
    is checked; otherwise the first record sets it. Duplicate image ids across inputs are an error.
    """
    if source not in READERS:
        raise DataError(source, f"unknown source format; choose one of {', '.join(READERS)}")
    if not inputs:
        raise DataError(out, "no input files given")
    if Path(out).exists() and not overwrite:
        raise StoreExistsError(out, "already exists; choose another path or overwrite it "
                                    "(--overwrite, overwrite=True)")
    writer: FeatureStoreWriter | None = None
    try:
        for file in inputs:
            records = read_tsv(file, fields=tsv_fields) if source == "tsv" else READERS[source](file)
            for rec in records:
                d = rec.features.shape[1]
                if writer is None:
                    if feature_dim is not None and d != feature_dim:
                        raise DataError(file, f"{d} values per region, expected --feature-dim {feature_dim}",
                                        record=rec.where, field="features")
                    writer = FeatureStoreWriter(out, feature_dim=d, overwrite=overwrite, dtype=dtype)
                elif d != writer.feature_dim:
                    raise DataError(file, f"{d} values per region, earlier records have {writer.feature_dim}",
                                    record=rec.where, field="features")
                try:
                    writer.add(rec.image_id + id_offset, boxes=rec.boxes, features=rec.features, width=rec.width,
                               height=rec.height)
                except FeatureRecordError as e:
                    field = {"width": "image_w", "height": "image_h"}.get(e.field, e.field)
                    raise DataError(file, e.reason, record=rec.where, field=field) from None
                if progress is not None:
                    progress(1)
        if writer is None:
            raise DataError(inputs[0], "no records in the input files")
        images, regions, dim = len(writer), writer.num_regions, writer.feature_dim
        writer.commit()
    except BaseException:
        if writer is not None:
            writer.abort()
        raise
    return ConvertSummary(str(out), tuple(str(p) for p in inputs), images, regions, dim, dtype)


# ----------------------------------------------------------------------------- writing TSV

def encode_tsv_line(image_id: int | str, width: int, height: int, boxes: np.ndarray, features: np.ndarray,
                    *, layout: str = "bottom-up", extra: dict[str, bytes] | None = None) -> bytes:
    """One line in a TSV layout (for fixtures, the synthetic world and round-trip tests).

    Fields not in (image id, size, num_boxes, boxes, features) take `extra[name]`, default base64
    of nothing. Lines end with CRLF, as Python's csv writer used by the original extractor does.
    """
    boxes = np.ascontiguousarray(boxes, dtype=FLOAT32_LE)
    features = np.ascontiguousarray(features, dtype=FLOAT32_LE)
    values = {
        "image_id": str(image_id).encode(), "image_w": str(int(width)).encode(),
        "image_h": str(int(height)).encode(), "num_boxes": str(len(boxes)).encode(),
        "boxes": base64.b64encode(boxes.tobytes()), "features": base64.b64encode(features.tobytes()),
    }
    extra = extra or {}
    cols = [values.get(TSV_ALIASES.get(n, n), extra.get(n, b"")) for n in TSV_LAYOUTS[layout]]
    return b"\t".join(cols) + b"\r\n"
