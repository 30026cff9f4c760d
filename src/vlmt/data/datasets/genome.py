"""Visual Genome: image_data.json, objects.json and attributes.json (objects with their boxes,
names and attributes), split into train / val / test by a splits file or, without one, 85 / 5 / 10
by a hash of the image id (the SVLR paper's proportions)."""

from __future__ import annotations

import json
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np

from vlmt.data.datasets.base import (
    SPLITS,
    CheckContext,
    CheckUnit,
    DatasetKind,
    FileFormat,
    Found,
    ImageRecords,
    TestImage,
    register_format,
    register_kind,
)
from vlmt.data.examples import GenomeImage
from vlmt.data.readers._common import collector
from vlmt.data.readers.visual_genome import GenomeTable, read_genome_table, scan_visual_genome
from vlmt.errors import DataError, format_problem


@dataclass
class GenomeFilesConfig:
    """The Genome release files under the root.

    splits: a JSON {"train": [image ids], "val": [...], "test": [...]}; when the file does not
    exist, images are split 85/5/10 by a hash of the image id. id_offset: image i is keyed
    i + id_offset in the feature store. Visual Genome numbers its images from 1, in the range of
    COCO's ids, so a store holding both needs the offset (e.g. 1000000000; `vlmt data convert
    --id-offset`); the worlds need none.
    """

    image_data: str = "visual_genome/image_data.json"
    objects: str = "visual_genome/objects.json"
    attributes: str | None = "visual_genome/attributes.json"
    splits: str | None = "visual_genome/splits.json"
    id_offset: int = 0

    def validate(self) -> str | None:
        return f"id_offset must be >= 0, got {self.id_offset}" if self.id_offset < 0 else None


@dataclass
class GenomeSplit:
    """The images of one split: rows of the release's `GenomeTable` (shared by the splits), in
    file order."""

    path: Path  # objects.json
    table: GenomeTable
    rows: np.ndarray  # (n,) int64 image rows of `table`
    id_offset: int = 0

    def __len__(self) -> int:
        return len(self.rows)

    def store_keys(self) -> np.ndarray:
        """(n,) int64 keys of the split's images in the feature store."""
        return self.table.image_ids[self.rows] + self.id_offset

    def store_key(self, image: GenomeImage) -> int:
        """The image's key in the feature store."""
        return image.image_id + self.id_offset

    @property
    def images(self) -> list[GenomeImage]:
        """The split's images as objects (a world's; a full-size split is read through `table`)."""
        return [self.table.image(int(r)) for r in self.rows]

    def drop_coco(self, coco_ids: Iterable[int]) -> int:
        """Leave out the images whose coco_id is one of `coco_ids` (the SVLR overlap rule,
        `vlmt.data.readers.visual_genome.drop_vqa_overlap`); returns how many were left out."""
        ids = np.fromiter(coco_ids, dtype=np.int64)
        linked = self.table.coco_ids[self.rows]
        gone = (linked >= 0) & np.isin(linked, ids)
        self.rows = self.rows[~gone]
        return int(gone.sum())


def split_of_images(path: Path | None, images: Iterable[GenomeImage | int]) -> dict[int, str]:
    """image id -> split, from the splits file when there is one, else by CRC32(image id)
    (`images`: the images or their ids)."""
    if path is not None and path.is_file():
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise DataError(path, f"not valid JSON: {e}") from None
        if not isinstance(raw, dict):
            raise DataError(path, "expected an object {split: [image ids]}")
        out: dict[int, str] = {}
        for split, ids in raw.items():
            if split not in SPLITS:
                raise DataError(path, f"unknown split {split!r}; expected train, val, test", record=split)
            if not isinstance(ids, list) or not all(isinstance(i, int) for i in ids):
                raise DataError(path, "expected a list of integer image ids", record=split)
            for i in ids:
                out[i] = split
        return out
    out = {}
    for im in images:  # 85 / 5 / 10 by a hash of the id: stable whatever the file order
        image_id = im if isinstance(im, int) else im.image_id
        h = zlib.crc32(str(image_id).encode()) % 100
        out[image_id] = "train" if h < 85 else ("val" if h < 90 else "test")
    return out


def read(root: Path, files: GenomeFilesConfig, *, required: bool = True) -> dict[str, GenomeSplit]:
    """The images of every split (an image in no split is left out)."""
    objects = root / files.objects
    if not required and not objects.is_file():
        return {}
    table = read_genome_table(root / files.image_data, objects,
                              root / files.attributes if files.attributes else None)
    ids = table.image_ids.tolist()
    split_of = split_of_images(root / files.splits if files.splits else None, ids)
    code = {s: k for k, s in enumerate(SPLITS)}
    codes = np.array([code.get(split_of.get(i, ""), -1) for i in ids], dtype=np.int8)
    return {s: GenomeSplit(objects, table, np.flatnonzero(codes == k).astype(np.int64), files.id_offset)
            for s, k in code.items()}


def image_records(splits: dict[str, GenomeSplit]) -> ImageRecords:
    return {split: [(key, gs.path, f"image_id {key - gs.id_offset}") for key in gs.store_keys().tolist()]
            for split, gs in splits.items()}


def test_images(root: Path, files: GenomeFilesConfig) -> list[TestImage]:
    return []  # recognition is asked of regions, not pictures: the gallery takes VQA's or captions' pictures


def find(folder: Path, subfolders: list[str], names: list[str]) -> Found:
    """image_data.json with objects.json (and attributes.json) beside it; either of those two
    without image_data.json is a unit too (its check reports it)."""
    files = {"image_data.json", "objects.json", "attributes.json"} & set(names)
    if "image_data.json" in files:
        attributes = folder / "attributes.json"
        return Found([CheckUnit("genome", folder / "image_data.json",
                                (folder / "objects.json", attributes if attributes.exists() else None))], files)
    return Found([CheckUnit("genome", folder / n, (), (("orphan", True),)) for n in sorted(files)], files)


def check(unit: CheckUnit, ctx: CheckContext) -> None:
    """Scan the three files (ids and counts only: a full-size release in a few hundred MB)."""
    if unit.option("orphan"):
        ctx.problems.append(format_problem(unit.path, "needs image_data.json beside it (Visual Genome)"))
        return
    objects, attributes = unit.files
    assert objects is not None, "a Genome unit names its objects file"
    if not objects.exists():
        ctx.problems.append(format_problem(objects, f"missing: {unit.path.name} needs {objects.name} beside it"))
        return
    problems, collect = collector()
    images, n = scan_visual_genome(unit.path, objects, attributes, report=collect)
    ctx.problems += problems
    if not problems:
        overlap = sum(im.coco_id in ctx.vqa_image_ids for im in images if im.coco_id is not None)
        ctx.summaries.append(f"Visual Genome {unit.path.parent.name}/: {len(images)} images, {n} objects, "
                             f"{overlap} images also in VQA (left out of training by the overlap rule)")
    offset = unit.option("id_offset", ctx.genome_id_offset)
    ctx.refers(unit.path, [(im.image_id + offset, f"image_id {im.image_id}") for im in images])


def config_units(root: Path, files: GenomeFilesConfig) -> list[CheckUnit]:
    image_data = root / files.image_data
    if not image_data.is_file():
        return []
    attributes = root / files.attributes if files.attributes else None
    return [CheckUnit("genome", image_data, (root / files.objects,
                                             attributes if attributes is not None and attributes.is_file() else None),
                      (("id_offset", files.id_offset),))]


register_format(FileFormat("genome", find, check, stage=2))  # after VQA: its summary counts the shared images
KIND = register_kind(DatasetKind("genome", "Visual Genome", GenomeFilesConfig, read, image_records, test_images,
                                 config_units))
