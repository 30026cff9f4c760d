"""Caption files: Karpathy split files (dataset_coco.json, dataset_flickr30k.json, dataset_flickr8k.json)
and raw COCO captions_{train,val}2014.json.

Karpathy layout: {dataset, images: [{filepath (COCO only), filename, imgid, split, cocoid (COCO only),
sentids, sentences: [{tokens, raw, imgid, sentid}]}]}; split is train, restval, val or test.
COCO layout: {info, licenses, images: [{id, file_name, width, height, ...}],
annotations: [{id, image_id, caption}]}.

Both are streamed record by record (`_stream.ArrayStream`): dataset_coco.json is about 150 MB of
JSON, several times that once parsed whole.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from typing import Any, Iterator

from vlmt.data.examples import CaptionedImage
from vlmt.data.readers._common import Report, Skip, raise_problem, require, require_text
from vlmt.data.readers._stream import ArrayStream

KARPATHY_SPLITS = ("train", "restval", "val", "test")
KARPATHY_RE = re.compile(r"^dataset_[A-Za-z0-9]+\.json$")
COCO_CAPTIONS_RE = re.compile(r"^captions_(\w+?)(\d{4})?\.json$")


def _stream_list(path: Path, key: str, report: Report, skip: tuple[str, ...] = ()) -> Iterator[Any]:
    """The records of the top-level list `key`, streamed; reports what `top_list` would: a top level
    that is not an object, a missing key, a key that is not a list."""
    stream = ArrayStream(path, key, skip=skip)
    yield from stream
    if stream.top_level_type != "object":
        kind = {"list": "list"}.get(str(stream.top_level_type), "other")
        report(path, f"top level must be a JSON object with {key!r}, got {kind}")
    elif not stream.found:
        if key in stream.header:
            report(path, f"must be a list, got {type(stream.header[key]).__name__}", field=key)
        else:
            report(path, "missing", field=key)


def read_karpathy(path: str | os.PathLike, *, report: Report = raise_problem) -> list[CaptionedImage]:
    """Images with their raw captions and tokens. `image_id` is `cocoid` when present (COCO), else
    the number in the file name (Flickr30k, e.g. 1000092795.jpg), else `imgid`."""
    path = Path(path)
    out: list[CaptionedImage] = []
    seen_ids: set[int] = set()
    seen_sentids: set[int] = set()
    for i, im in enumerate(_stream_list(path, "images", report)):
        record = f"images[{i}]"
        try:
            imgid = require(im, "imgid", int, path, record, report)
            filename = require_text(im, "filename", path, record, report)
            record = f"images[{i}] ({filename})"
            split = require(im, "split", str, path, record, report)
            if split not in KARPATHY_SPLITS:
                report(path, f"unknown split name {split!r}; expected one of {', '.join(KARPATHY_SPLITS)}",
                       record=record, field="split")
                raise Skip
            if "cocoid" in im:
                image_id = require(im, "cocoid", int, path, record, report)
            else:
                stem = Path(filename).stem
                image_id = int(stem) if stem.isdigit() else imgid
            sentences = require(im, "sentences", list, path, record, report)
            if not sentences:
                report(path, "no sentences", record=record, field="sentences")
                raise Skip
            sentids = require(im, "sentids", list, path, record, report)
            if not all(isinstance(i, int) and not isinstance(i, bool) for i in sentids):
                report(path, "must be a list of integer sentence ids", record=record, field="sentids")
                raise Skip
            raws, tokens = [], []
            for j, s in enumerate(sentences):
                srec = f"{record} sentences[{j}]"
                raws.append(require_text(s, "raw", path, srec, report))
                toks = require(s, "tokens", list, path, srec, report)
                if not toks or not all(isinstance(t, str) and t for t in toks):
                    report(path, "must be a non-empty list of non-empty strings", record=srec, field="tokens")
                    raise Skip
                tokens.append(tuple(map(sys.intern, toks)))  # 6 M tokens of a 30 k vocabulary
                sentid = require(s, "sentid", int, path, srec, report)
                if require(s, "imgid", int, path, srec, report) != imgid:
                    report(path, f"is {s['imgid']} but the image's imgid is {imgid}", record=srec, field="imgid")
                    raise Skip
                if sentid in seen_sentids:
                    report(path, f"duplicate sentence id {sentid}", record=srec, field="sentid")
                    raise Skip
                seen_sentids.add(sentid)
            if sorted(sentids) != sorted(s["sentid"] for s in sentences):
                report(path, "does not list the sentid of each sentence", record=record, field="sentids")
                raise Skip
        except Skip:
            continue
        if image_id in seen_ids:
            report(path, f"duplicate image id {image_id}", record=record,
                   field="cocoid" if "cocoid" in im else "filename")
            continue
        seen_ids.add(image_id)
        out.append(CaptionedImage(image_id, filename, split, tuple(raws), tuple(tokens)))
    return out


def read_coco_captions(path: str | os.PathLike, *, split: str | None = None,
                       report: Report = raise_problem) -> list[CaptionedImage]:
    """COCO captions grouped per image (in image order). `split` defaults to the one in the file
    name (captions_val2014.json -> val2014). Every annotation must name a listed image and every
    image must have a caption."""
    path = Path(path)
    if split is None:
        m = COCO_CAPTIONS_RE.match(path.name)
        split = (m.group(1) + (m.group(2) or "")) if m else ""
    images: dict[int, str] = {}
    for i, im in enumerate(_stream_list(path, "images", report, skip=("annotations",))):
        record = f"images[{i}]"
        try:
            image_id = require(im, "id", int, path, record, report)
            images[image_id] = require_text(im, "file_name", path, f"image id {image_id}", report)
            for key in ("width", "height"):
                if key in im and (require(im, key, int, path, f"image id {image_id}", report) <= 0):
                    report(path, "must be positive", record=f"image id {image_id}", field=key)
        except Skip:
            continue
    captions: dict[int, list[str]] = {i: [] for i in images}
    seen: set[int] = set()
    for i, a in enumerate(_stream_list(path, "annotations", report, skip=("images",))):
        record = f"annotations[{i}]"
        try:
            ann_id = require(a, "id", int, path, record, report)
            record = f"annotation id {ann_id}"
            image_id = require(a, "image_id", int, path, record, report)
            text = require_text(a, "caption", path, record, report)
        except Skip:
            continue
        if ann_id in seen:
            report(path, "duplicate annotation id", record=record, field="id")
            continue
        seen.add(ann_id)
        if image_id not in captions:
            report(path, f"refers to image {image_id}, not listed in 'images'", record=record, field="image_id")
            continue
        captions[image_id].append(text.strip())
    out = []
    for image_id, filename in images.items():
        if not captions[image_id]:
            report(path, "has no caption", record=f"image id {image_id}", field="annotations")
            continue
        out.append(CaptionedImage(image_id, filename, split, tuple(captions[image_id])))
    return out
