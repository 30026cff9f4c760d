"""Visual Genome: image_data.json, objects.json and attributes.json.

  image_data.json: [{image_id (v1.4; "id" in v1.2), width, height, url, coco_id, flickr_id}]
  objects.json:    [{image_id (or "id", or an "image" object holding it), objects:
                     [{object_id (or "id"), x, y, w, h, names (or "name"), synsets, merged_object_ids}]}]
  attributes.json: [{image_id, attributes: [{object_id, x, y, w, h, names, synsets, attributes}]}]
Boxes are converted from x, y, w, h to x1, y1, x2, y2. Field-name variants of the releases are all
accepted. The SVLR overlap rule (`drop_vqa_overlap`) removes images that also occur in VQA.

The files are streamed entry by entry (objects.json is about 0.4 GB for 3.8 M objects): memory holds
the result, never the parsed file. Attributes are merged into the objects as they are read, and
`scan_visual_genome` checks the three files while keeping only ids and counts.

`read_visual_genome` returns Python objects (one `GenomeObject` per object: fine for a world, some
0.7 KB per object); `read_genome_table` reads the same files with the same checks into a
`GenomeTable` of numpy columns (about 0.1 KB per object), which is what a full-size build holds.
"""

from __future__ import annotations

import hashlib
import os
import sys
from array import array
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np

from vlmt.data.examples import GenomeImage, GenomeObject
from vlmt.data.readers._common import Report, Skip, check_box, optional, raise_problem, require
from vlmt.data.readers._stream import ArrayStream

_TYPE_NAMES = {"object": "dict", "other": "a scalar"}


def _list_file(path: Path, report: Report) -> Iterator:
    """The entries of a file whose top level is a JSON list, streamed one at a time."""
    stream = ArrayStream(path, None)
    yield from stream
    if stream.top_level_type != "list":
        report(path, f"top level must be a JSON list, got {_TYPE_NAMES.get(str(stream.top_level_type), 'other')}")


def _intern_all(values: list) -> tuple[str, ...]:
    # names, synsets and attributes repeat across millions of objects: share one copy of each
    return tuple(sys.intern(v.strip()) for v in values)


def _image_id(entry: dict, path: Path, record: str, report: Report) -> int:
    if (isinstance(entry, dict) and "image_id" not in entry and "id" not in entry
            and isinstance(entry.get("image"), dict)):
        entry = entry["image"]
    key = "image_id" if isinstance(entry, dict) and "image_id" in entry else "id"
    return require(entry, key, int, path, record, report)


def read_image_data(path: str | os.PathLike, *, report: Report = raise_problem) -> dict[int, GenomeImage]:
    """Images by id (without objects)."""
    path = Path(path)
    out: dict[int, GenomeImage] = {}
    for i, im in enumerate(_list_file(path, report)):
        try:
            image_id = _image_id(im, path, f"[{i}]", report)
            record = f"image_id {image_id}"
            width = require(im, "width", int, path, record, report)
            height = require(im, "height", int, path, record, report)
            for key, value in (("width", width), ("height", height)):
                if value <= 0:
                    report(path, f"must be positive, got {value}", record=record, field=key)
                    raise Skip
            coco_id = optional(im, "coco_id", int, path, record, report)
            url = optional(im, "url", str, path, record, report)
        except Skip:
            continue
        if image_id in out:
            report(path, "duplicate image id", record=record, field="image_id")
            continue
        out[image_id] = GenomeImage(image_id, width, height, coco_id, url)
    return out


_NUMBER = (int, float)


def _fast_fields(obj: object) -> tuple | None:
    """(object_id, x, y, w, h, names, synsets, attributes) of an object whose fields all pass the
    checks of `_iter_regions` in their usual spelling, else None (the caller then finds and
    reports the problem field by field). Three quarters of a full-size read went to those checks."""
    if type(obj) is not dict:
        return None
    object_id, names = obj.get("object_id"), obj.get("names")
    x, y, w, h = obj.get("x"), obj.get("y"), obj.get("w"), obj.get("h")
    synsets, attributes = obj.get("synsets"), obj.get("attributes")
    synsets = [] if synsets is None else synsets
    attributes = [] if attributes is None else attributes
    if type(object_id) is not int or type(x) not in _NUMBER or type(y) not in _NUMBER or \
            type(w) not in _NUMBER or type(h) not in _NUMBER or type(names) is not list or not names or \
            type(synsets) is not list or type(attributes) is not list:
        return None
    for n in names:
        if type(n) is not str or not n.strip():
            return None
    for v in synsets:
        if type(v) is not str:
            return None
    for v in attributes:
        if type(v) is not str:
            return None
    return object_id, x, y, w, h, names, synsets, attributes


def _iter_regions(path: Path, list_key: str, images: dict[int, GenomeImage] | None,
                  report: Report) -> Iterator[tuple[int, dict[int, GenomeObject]]]:
    """(image id, its checked objects by object id), one file entry at a time."""
    for i, entry in enumerate(_list_file(path, report)):
        try:
            image_id = _image_id(entry, path, f"[{i}]", report)
            record = f"image_id {image_id}"
            objects = require(entry, list_key, list, path, record, report)
        except Skip:
            continue
        image = images.get(image_id) if images is not None else None
        if images is not None and image is None:
            report(path, "refers to an image missing from image_data.json", record=record, field="image_id")
            continue
        found: dict[int, GenomeObject] = {}
        for j, obj in enumerate(objects):
            fast = _fast_fields(obj)  # the common, well-formed object without building messages
            if fast is not None:
                object_id, x, y, w, h, names, synsets, attributes = fast
            else:
                orec = f"image_id {image_id} {list_key}[{j}]"
                try:
                    id_key = "object_id" if isinstance(obj, dict) and "object_id" in obj else "id"
                    object_id = require(obj, id_key, int, path, orec, report)
                    orec = f"image_id {image_id} object_id {object_id}"
                    x, y, w, h = (require(obj, k, (int, float), path, orec, report) for k in ("x", "y", "w", "h"))
                    if "names" in obj or "name" not in obj:
                        names = require(obj, "names", list, path, orec, report)
                    else:
                        names = [require(obj, "name", str, path, orec, report)]
                    if not names or not all(isinstance(n, str) and n.strip() for n in names):
                        report(path, "must be a non-empty list of non-empty strings", record=orec, field="names")
                        raise Skip
                    synsets = optional(obj, "synsets", list, path, orec, report, default=[])
                    attributes = optional(obj, "attributes", list, path, orec, report, default=[])
                    if not all(isinstance(s, str) for s in synsets + attributes):
                        report(path, "must be a list of strings", record=orec,
                               field="synsets" if not all(isinstance(s, str) for s in synsets) else "attributes")
                        raise Skip
                except Skip:
                    continue
            box = (float(x), float(y), float(x + w), float(y + h))
            if image is None or not (-1.0 <= box[0] <= box[2] <= image.width + 1.0
                                     and -1.0 <= box[1] <= box[3] <= image.height + 1.0):
                # the full check, which reports (NaN and inf fail the comparisons above)
                if not check_box(box, path, f"image_id {image_id} object_id {object_id}", "x/y/w/h", report,
                                 width=image.width if image else None, height=image.height if image else None):
                    continue
            found[object_id] = GenomeObject(object_id, box, _intern_all(names), tuple(map(sys.intern, synsets)),
                                            _intern_all(attributes))
        yield image_id, found


def _read_regions(path: Path, list_key: str, images: dict[int, GenomeImage] | None,
                  report: Report) -> dict[int, dict[int, GenomeObject]]:
    out: dict[int, dict[int, GenomeObject]] = {}
    for image_id, found in _iter_regions(path, list_key, images, report):
        out.setdefault(image_id, {}).update(found)
    return out


def _merge_attributes(objs: dict[int, dict[int, GenomeObject]], image_id: int, attrs: dict[int, GenomeObject],
                      attributes: str | os.PathLike, objects: str | os.PathLike, report: Report) -> None:
    for object_id, a in attrs.items():
        known = objs.get(image_id, {}).get(object_id)
        if known is None:
            report(attributes, f"object {object_id} is not in {Path(objects).name}",
                   record=f"image_id {image_id}", field="object_id")
            continue
        objs[image_id][object_id] = GenomeObject(known.object_id, known.box, known.names,
                                                 known.synsets or a.synsets, a.attributes)


def read_visual_genome(image_data: str | os.PathLike, objects: str | os.PathLike,
                       attributes: str | os.PathLike | None = None, *,
                       report: Report = raise_problem) -> list[GenomeImage]:
    """Images with their objects; attributes (when given) are joined by object id and must refer
    to objects of the same image."""
    images = read_image_data(image_data, report=report)
    objs = _read_regions(Path(objects), "objects", images, report)
    if attributes is not None:  # merged entry by entry: the attribute file is never held whole
        for image_id, attrs in _iter_regions(Path(attributes), "attributes", images, report):
            _merge_attributes(objs, image_id, attrs, attributes, objects, report)
    out = []
    for image_id, image in images.items():
        found = tuple(objs.pop(image_id, {}).values())
        out.append(GenomeImage(image.image_id, image.width, image.height, image.coco_id, image.url, found))
    return out


@dataclass
class GenomeTable:
    """Visual Genome as columns (what `read_genome_table` returns): images in image_data.json
    order; their objects grouped by image, each image's in the order of objects.json (first
    appearance of an object id); names and attributes as id lists (CSR: `name_offsets[k]` to
    `name_offsets[k + 1]` into `name_ids`) over the string tables `names` / `attributes` (stripped).
    Synsets and urls are not kept."""

    image_ids: np.ndarray           # (N,) int64
    widths: np.ndarray              # (N,) int32
    heights: np.ndarray             # (N,) int32
    coco_ids: np.ndarray            # (N,) int64, -1 for none
    image_starts: np.ndarray        # (N + 1,) int64: objects of image i are rows image_starts[i]:image_starts[i + 1]
    object_ids: np.ndarray          # (M,) int64
    boxes: np.ndarray               # (M, 4) float64 x1, y1, x2, y2
    name_offsets: np.ndarray        # (M + 1,) int64
    name_ids: np.ndarray            # int32 into `names`
    attribute_offsets: np.ndarray   # (M + 1,) int64
    attribute_ids: np.ndarray       # int32 into `attributes`
    names: list[str]
    attributes: list[str]

    @property
    def num_images(self) -> int:
        return len(self.image_ids)

    @property
    def num_objects(self) -> int:
        return len(self.object_ids)

    def object_names(self, k: int) -> tuple[str, ...]:
        return tuple(self.names[i] for i in self.name_ids[self.name_offsets[k]:self.name_offsets[k + 1]].tolist())

    def object_attributes(self, k: int) -> tuple[str, ...]:
        lo, hi = self.attribute_offsets[k], self.attribute_offsets[k + 1]
        return tuple(self.attributes[i] for i in self.attribute_ids[lo:hi].tolist())

    def image(self, i: int) -> GenomeImage:
        """Image row `i` as a `GenomeImage` with its objects (synsets and url left empty)."""
        objects = tuple(GenomeObject(int(self.object_ids[k]), tuple(self.boxes[k].tolist()),
                                     self.object_names(k), (), self.object_attributes(k))
                        for k in range(int(self.image_starts[i]), int(self.image_starts[i + 1])))
        coco = int(self.coco_ids[i])
        return GenomeImage(int(self.image_ids[i]), int(self.widths[i]), int(self.heights[i]),
                           None if coco < 0 else coco, None, objects)


class _Strings:
    """Strings -> dense int ids (first seen, first numbered)."""

    def __init__(self) -> None:
        self.ids: dict[str, int] = {}

    def add(self, values: Sequence[str], out: array) -> None:
        ids = self.ids
        for v in values:
            k = ids.get(v)
            if k is None:
                k = ids[v] = len(ids)
            out.append(k)

    def table(self) -> list[str]:
        return list(self.ids)


def gather_lists(offsets: np.ndarray, values: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The CSR lists of `rows` (in that order): (new offsets, new values)."""
    lengths = offsets[rows + 1] - offsets[rows]
    new_offsets = np.zeros(len(rows) + 1, dtype=np.int64)
    np.cumsum(lengths, out=new_offsets[1:])
    starts = np.repeat(offsets[rows] - new_offsets[:-1], lengths)
    return new_offsets, values[starts + np.arange(int(new_offsets[-1]), dtype=np.int64)]


def read_genome_table(image_data: str | os.PathLike, objects: str | os.PathLike,
                      attributes: str | os.PathLike | None = None, *,
                      report: Report = raise_problem) -> GenomeTable:
    """`read_visual_genome` into columns: the same checks and messages, the same images, objects,
    names and attributes in the same order (an object id repeated for an image keeps its first
    place and its last content; the attributes of attributes.json replace those of objects.json,
    the last entry of an object winning), at about a seventh of the memory."""
    images = read_image_data(image_data, report=report)
    row_of = {image_id: k for k, image_id in enumerate(images)}
    names, attrs = _Strings(), _Strings()
    obj_image, obj_id, obj_box = array("i"), array("q"), array("d")
    name_off, name_ids = array("q", [0]), array("i")
    rec_off, rec_ids = array("q", [0]), array("i")  # attribute lists: one per object row, then attributes.json's
    for image_id, found in _iter_regions(Path(objects), "objects", images, report):
        r = row_of[image_id]
        for o in found.values():
            obj_image.append(r)
            obj_id.append(o.object_id)
            obj_box.extend(o.box)
            names.add(o.names, name_ids)
            name_off.append(len(name_ids))
            attrs.add(o.attributes, rec_ids)
            rec_off.append(len(rec_ids))
    img = np.frombuffer(obj_image, dtype=np.int32)
    oid = np.frombuffer(obj_id, dtype=np.int64)
    m = len(oid)
    # one row per (image, object id): its first place, its last content (as the dict-based reader)
    order = np.lexsort((np.arange(m), oid, img))
    new = np.ones(m, dtype=bool)
    new[1:] = (img[order][1:] != img[order][:-1]) | (oid[order][1:] != oid[order][:-1])
    first, last = order[new], order[np.append(new[1:], True)[:m]]
    place = np.lexsort((first, img[first]))
    content = last[place]
    del order, new, first, last, place
    final_img = img[content]
    final_oid = oid[content]
    boxes = np.frombuffer(obj_box, dtype=np.float64).reshape(-1, 4)[content]
    name_offsets, name_values = gather_lists(np.frombuffer(name_off, dtype=np.int64), np.frombuffer(name_ids, np.int32),
                                        content)
    record = content.astype(np.int64)  # each object's attribute list: its own from objects.json ...
    del obj_image, obj_id, obj_box, name_off, name_ids, img, oid
    image_starts = np.searchsorted(final_img, np.arange(len(images) + 1)).astype(np.int64)
    if attributes is not None:  # ... replaced by attributes.json's, entry by entry (never held whole)
        by_id = np.lexsort((final_oid, final_img))
        sorted_oid = final_oid[by_id]
        for image_id, found in _iter_regions(Path(attributes), "attributes", images, report):
            r = row_of[image_id]
            lo, hi = int(image_starts[r]), int(image_starts[r + 1])
            for object_id, a in found.items():
                pos = lo + int(np.searchsorted(sorted_oid[lo:hi], object_id))
                if pos >= hi or sorted_oid[pos] != object_id:
                    report(attributes, f"object {object_id} is not in {Path(objects).name}",
                           record=f"image_id {image_id}", field="object_id")
                    continue
                record[by_id[pos]] = len(rec_off) - 1
                attrs.add(a.attributes, rec_ids)
                rec_off.append(len(rec_ids))
        del by_id, sorted_oid
    attribute_offsets, attribute_values = gather_lists(np.frombuffer(rec_off, dtype=np.int64),
                                                  np.frombuffer(rec_ids, dtype=np.int32), record)
    ims = list(images.values())
    return GenomeTable(
        image_ids=np.array([im.image_id for im in ims], dtype=np.int64),
        widths=np.array([im.width for im in ims], dtype=np.int32),
        heights=np.array([im.height for im in ims], dtype=np.int32),
        coco_ids=np.array([-1 if im.coco_id is None else im.coco_id for im in ims], dtype=np.int64),
        image_starts=image_starts, object_ids=final_oid, boxes=boxes, name_offsets=name_offsets,
        name_ids=name_values, attribute_offsets=attribute_offsets, attribute_ids=attribute_values,
        names=names.table(), attributes=attrs.table())


def scan_visual_genome(image_data: str | os.PathLike, objects: str | os.PathLike,
                       attributes: str | os.PathLike | None = None, *,
                       report: Report = raise_problem) -> tuple[list[GenomeImage], int]:
    """The checks of `read_visual_genome` at a fraction of its memory: (the images without their
    objects, the number of objects). Only each image's object ids are kept (as an int64 array) to
    check the attribute file against, so a full-size release validates in a few hundred MB."""
    images = read_image_data(image_data, report=report)
    ids: dict[int, np.ndarray] = {}
    for image_id, found in _iter_regions(Path(objects), "objects", images, report):
        have = np.fromiter(found.keys(), dtype=np.int64, count=len(found))
        ids[image_id] = np.union1d(ids[image_id], have) if image_id in ids else np.unique(have)
    if attributes is not None:
        for image_id, attrs in _iter_regions(Path(attributes), "attributes", images, report):
            known = ids.get(image_id, np.empty(0, dtype=np.int64))
            for object_id in attrs:
                row = int(np.searchsorted(known, object_id))
                if row >= len(known) or known[row] != object_id:
                    report(attributes, f"object {object_id} is not in {Path(objects).name}",
                           record=f"image_id {image_id}", field="object_id")
    return list(images.values()), sum(len(v) for v in ids.values())


def file_digest(path: str | os.PathLike) -> str:
    """SHA-256 of a file's bytes (images are compared by content, whatever their names)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def drop_vqa_overlap(images: Iterable[GenomeImage], vqa_image_ids: Iterable[int], *,
                     genome_image_files: dict[int, str | os.PathLike] | None = None,
                     vqa_image_files: Iterable[str | os.PathLike] = ()) -> tuple[list[GenomeImage], list[GenomeImage]]:
    """The SVLR rule: Genome images that are also VQA (COCO) images are removed, so the VQA test
    images are never seen through recognition training. An image is dropped when its coco_id is a
    VQA image id, or, when image files are given, when its bytes equal a VQA image's bytes.
    Returns (kept, dropped)."""
    coco = set(vqa_image_ids)
    digests = {file_digest(p) for p in vqa_image_files}
    kept: list[GenomeImage] = []
    dropped: list[GenomeImage] = []
    for im in images:
        same = im.coco_id is not None and im.coco_id in coco
        if not same and digests and genome_image_files and im.image_id in genome_image_files:
            same = file_digest(genome_image_files[im.image_id]) in digests
        (dropped if same else kept).append(im)
    return kept, dropped
