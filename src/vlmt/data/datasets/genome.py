"""Visual Genome: image_data.json, objects.json and attributes.json (objects with their boxes,
names and attributes), split into train / val / test by a splits file or, without one, 85 / 5 / 10
by a hash of the image id (the SVLR paper's proportions)."""

from __future__ import annotations

import json
import zlib
from dataclasses import dataclass
from pathlib import Path

from vlmt.data.datasets.base import SPLITS, DatasetKind, ImageRecords, TestImage, register_kind
from vlmt.data.examples import GenomeImage
from vlmt.data.readers.visual_genome import read_visual_genome
from vlmt.errors import DataError


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
    path: Path  # objects.json
    images: list[GenomeImage]  # in file order
    id_offset: int = 0

    def store_key(self, image: GenomeImage) -> int:
        """The image's key in the feature store."""
        return image.image_id + self.id_offset


def split_of_images(path: Path | None, images: list[GenomeImage]) -> dict[int, str]:
    """image id -> split, from the splits file when there is one, else by CRC32(image id)."""
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
        h = zlib.crc32(str(im.image_id).encode()) % 100
        out[im.image_id] = "train" if h < 85 else ("val" if h < 90 else "test")
    return out


def read(root: Path, files: GenomeFilesConfig, *, required: bool = True) -> dict[str, GenomeSplit]:
    """The images of every split (an image in no split is left out)."""
    objects = root / files.objects
    if not required and not objects.is_file():
        return {}
    images = read_visual_genome(root / files.image_data, objects, root / files.attributes if files.attributes else None)
    split_of = split_of_images(root / files.splits if files.splits else None, images)
    splits = {s: GenomeSplit(objects, [], files.id_offset) for s in SPLITS}
    for im in images:
        split = split_of.get(im.image_id)
        if split is not None:
            splits[split].images.append(im)
    return splits


def image_records(splits: dict[str, GenomeSplit]) -> ImageRecords:
    return {split: [(gs.store_key(im), gs.path, f"image_id {im.image_id}") for im in gs.images]
            for split, gs in splits.items()}


def test_images(root: Path, files: GenomeFilesConfig) -> list[TestImage]:
    return []  # recognition is asked of regions, not pictures: the gallery takes VQA's or captions' pictures


KIND = register_kind(DatasetKind("genome", "Visual Genome", GenomeFilesConfig, read, image_records, test_images))
