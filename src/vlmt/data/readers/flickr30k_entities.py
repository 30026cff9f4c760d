"""Flickr30k Entities: `Sentences/<image id>.txt` (five captions, one per line, phrases marked as
`[/EN#<entity id>/<type>[/<type>...] words]`) and `Annotations/<image id>.xml` (PASCAL-VOC-like:
size/width, size/height and one <object> per box or flag, each with one or more <name> entity ids
and either a <bndbox> (xmin, ymin, xmax, ymax; 1-based pixels) or <nobndbox>/<scene> flags).
Release splits: `train.txt`, `val.txt`, `test.txt`, one image id per line.

Entity id 0 marks "notvisual" phrases, which have no boxes. An entity with several boxes is
grounded by their union (`Phrase.ground_truth_box`).
"""

from __future__ import annotations

import logging
import os
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

import defusedxml.ElementTree as safe_xml
from defusedxml import DefusedXmlException

from vlmt.data.examples import Box, GroundedSentence, Phrase
from vlmt.data.readers._common import Report, check_box, raise_problem
from vlmt.data.readers.progress import Progress
from vlmt.errors import DataError

log = logging.getLogger("vlmt.data.read")  # a training run's train.log and terminal show it

SPLITS = ("train", "val", "test")
PHRASE_RE = re.compile(r"\[/EN#(?P<id>[^/\s\]]*)(?P<types>(?:/[^/\s\]]*)*) (?P<text>[^\[\]]*)\]")
NOTVISUAL = "0"


@dataclass
class ImageAnnotation:
    """The parsed XML of one image: size, boxes per entity id, and the nobox / scene flags."""

    width: int
    height: int
    boxes: dict[str, list[Box]] = field(default_factory=dict)
    nobox: set[str] = field(default_factory=set)
    scene: set[str] = field(default_factory=set)

    def entity_ids(self) -> set[str]:
        return set(self.boxes) | self.nobox | self.scene


def parse_sentence(line: str, *, file: object = "<sentence>", record: object = None,
                   report: Report = raise_problem) -> tuple[str, list[tuple[str, tuple[str, ...], str, int]]] | None:
    """Split one marked-up line into the plain sentence and its phrases
    (entity id, types, text, index of the first word). None when the markup is malformed."""
    words: list[str] = []
    phrases = []
    pos = 0
    for m in PHRASE_RE.finditer(line):
        before = line[pos:m.start()]
        if "[" in before or "]" in before:
            report(file, f"malformed phrase markup near {before.strip()[:30]!r}", record=record, field="phrase")
            return None
        words += before.split()
        entity, types, text = m.group("id"), tuple(t for t in m.group("types").split("/") if t), m.group("text")
        if not entity.isdigit():
            report(file, f"entity id must be a number, got {entity!r}", record=record, field="phrase")
            return None
        if not types or not all(types):
            report(file, f"phrase of entity {entity} has an empty type list", record=record, field="phrase")
            return None
        if not text.split():
            report(file, f"phrase of entity {entity} has no words", record=record, field="phrase")
            return None
        phrases.append((entity, types, " ".join(text.split()), len(words)))
        words += text.split()
        pos = m.end()
    rest = line[pos:]
    if "[" in rest or "]" in rest:
        report(file, f"malformed phrase markup near {rest.strip()[:30]!r}", record=record, field="phrase")
        return None
    words += rest.split()
    if not words:
        report(file, "empty sentence", record=record, field="sentence")
        return None
    return " ".join(words), phrases


def read_annotation(path: str | os.PathLike, *, report: Report = raise_problem) -> ImageAnnotation | None:
    """Parse one Annotations/<id>.xml. Boxes are converted from 1-based inclusive pixels to the
    0-based coordinates the release's own tools use (subtract 1)."""
    path = Path(path)
    try:  # defusedxml: no entity expansion, no external entities or DTDs, nothing fetched
        root: ET.Element = safe_xml.parse(path, forbid_dtd=True).getroot()
    except ET.ParseError as e:
        report(path, f"not valid XML ({e}); truncated?")
        return None
    except DefusedXmlException as e:
        report(path, f"refused: it declares a DTD or entities ({type(e).__name__}), which Flickr30k Entities "
                     f"annotations never do")
        return None
    except OSError as e:
        report(path, f"unreadable: {e.strerror}")
        return None
    size = []
    for key in ("width", "height"):
        node = root.find(f"size/{key}")
        try:
            value = int(node.text)  # type: ignore[union-attr,arg-type]
            if value <= 0:
                raise ValueError
        except (AttributeError, TypeError, ValueError):
            report(path, "missing or not a positive integer", record="size", field=key)
            return None
        size.append(value)
    ann = ImageAnnotation(size[0], size[1])
    for i, obj in enumerate(root.findall("object")):
        record = f"object[{i}]"
        names = [(n.text or "").strip() for n in obj.findall("name")]
        if not names or not all(n.isdigit() for n in names):
            report(path, f"entity ids must be numbers, got {names}", record=record, field="name")
            continue
        record = f"object[{i}] (entity {','.join(names)})"
        bndbox = obj.find("bndbox")
        if bndbox is not None:
            try:
                x1, y1, x2, y2 = (float(int(bndbox.find(k).text)) - 1.0  # type: ignore[union-attr,arg-type]
                                  for k in ("xmin", "ymin", "xmax", "ymax"))
            except (AttributeError, TypeError, ValueError):
                report(path, "needs integer xmin, ymin, xmax, ymax", record=record, field="bndbox")
                continue
            coords = (x1, y1, x2, y2)
            if not check_box(coords, path, record, "bndbox", report, width=ann.width - 1, height=ann.height - 1):
                continue
            for n in names:
                ann.boxes.setdefault(n, []).append(coords)
            continue
        flags = {}
        for key in ("nobndbox", "scene"):
            node = obj.find(key)
            try:
                flags[key] = int(node.text) if node is not None else 0  # type: ignore[arg-type]
            except (TypeError, ValueError):
                report(path, f"must be 0 or 1, got {node.text!r}", record=record, field=key)  # type: ignore[union-attr]
                flags[key] = 0
        if not flags["nobndbox"] and not flags["scene"]:
            report(path, "has neither a bndbox nor a nobndbox/scene flag", record=record, field="bndbox")
            continue
        for n in names:
            if flags["nobndbox"]:
                ann.nobox.add(n)
            if flags["scene"]:
                ann.scene.add(n)
    return ann


def read_sentences(path: str | os.PathLike, *, report: Report = raise_problem) -> list[tuple[str, list]]:
    """The parsed lines of one Sentences/<id>.txt file (malformed lines are reported, then left out)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        report(path, f"not UTF-8 text ({e.reason})")
        return []
    except OSError as e:
        report(path, f"unreadable: {e.strerror}")
        return []
    out = []
    for n, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        parsed = parse_sentence(line, file=path, record=f"line {n}", report=report)
        if parsed is not None:
            out.append(parsed)
    if not out and text.strip() == "":
        report(path, "empty file: no sentences", field="sentence")
    return out


def read_split(root: str | os.PathLike, split: str) -> list[int]:
    """Image ids of a release split (`train.txt`, `val.txt`, `test.txt` under `root`)."""
    if split not in SPLITS:
        raise DataError(root, f"unknown split name {split!r}; expected one of {', '.join(SPLITS)}", field="split")
    path = Path(root) / f"{split}.txt"
    try:
        lines = path.read_text(encoding="utf-8").split()
    except UnicodeDecodeError as e:
        raise DataError(path, f"not UTF-8 text ({e.reason})") from None
    except OSError as e:
        raise DataError(path, f"unreadable: {e.strerror}") from None
    ids = []
    for n, tok in enumerate(lines, start=1):
        if not tok.isdigit():
            raise DataError(path, f"not an image id: {tok!r}", record=f"entry {n}")
        ids.append(int(tok))
    return ids


def read_image(root: str | os.PathLike, image_id: int, *, report: Report = raise_problem) -> list[GroundedSentence]:
    """The grounded sentences of one image, phrases carrying all boxes of their entity."""
    root = Path(root)
    sent_path = root / "Sentences" / f"{image_id}.txt"
    ann_path = root / "Annotations" / f"{image_id}.xml"
    for p in (sent_path, ann_path):
        if not p.exists():
            report(p, f"missing file for image {image_id}")
            return []
    ann = read_annotation(ann_path, report=report)
    sentences = read_sentences(sent_path, report=report)
    if ann is None:
        return []
    out = []
    known = ann.entity_ids()
    for index, (sentence, raw) in enumerate(sentences):
        phrases = []
        for entity, types, text, first in raw:
            if entity != NOTVISUAL and entity not in known:
                report(sent_path, f"entity {entity} has no object in {ann_path.name}", record=f"sentence {index}",
                       field="phrase")
                continue
            phrases.append(Phrase(entity, types, text, first, tuple(ann.boxes.get(entity, ())),
                                  nobox=entity in ann.nobox, scene=entity in ann.scene))
        out.append(GroundedSentence(image_id, index, sentence, tuple(phrases)))
    return out


def image_ids(root: str | os.PathLike) -> list[int]:
    """Ids of every image with a sentence file under `root`/Sentences, sorted."""
    return sorted(int(p.stem) for p in (Path(root) / "Sentences").glob("*.txt") if p.stem.isdigit())


def read_flickr30k_entities(root: str | os.PathLike, *, split: str | None = None,
                            report: Report = raise_problem) -> list[GroundedSentence]:
    """All grounded sentences under `root` (or of one release split)."""
    ids = read_split(root, split) if split is not None else image_ids(root)
    out: list[GroundedSentence] = []
    with Progress(log, f"reading Flickr30k Entities {split or 'all'}", total=len(ids), unit="images",
                  quiet=True) as progress:  # two files per image: 63 K files at full size
        for image_id in ids:
            out += read_image(root, image_id, report=report)
            progress.update()
    return out
