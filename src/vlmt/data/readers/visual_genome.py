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
"""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path
from typing import Iterable, Iterator

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
