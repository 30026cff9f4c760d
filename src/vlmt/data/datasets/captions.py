"""Karpathy's caption splits of COCO or Flickr30k (one `dataset_*.json`): images with their
captions and their split (train, restval, val, test)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

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
from vlmt.data.examples import CaptionedImage
from vlmt.data.readers._common import collector
from vlmt.data.readers.captions import KARPATHY_RE, KARPATHY_SPLITS, read_coco_captions, read_karpathy
from vlmt.errors import ConfigError, DataError

COCO_RE = re.compile(r"^captions_\w+\.json$")  # COCO's own caption files (captions_train2014.json, ...)


@dataclass
class CaptionFilesConfig:
    """A Karpathy split file (dataset_coco.json, dataset_flickr30k.json, ...).

    file: its name under the root; null finds the one `dataset_*.json` there. Retrieval uses
    the first `captions_per_image` captions of each evaluation image (5, the standard protocol).
    include_restval: add COCO's restval images to training.
    """

    file: str | None = None
    captions_per_image: int = 5
    include_restval: bool = False
    features: str | None = None
    images: str | None = None
    namespace: str = "main"

    def validate(self) -> str | None:
        return "captions_per_image must be >= 1" if self.captions_per_image < 1 else None


@dataclass
class CaptionSplit:
    path: Path
    images: list[CaptionedImage]


def caption_file(root: Path, files: CaptionFilesConfig) -> Path | None:
    """The caption file `files` names, else the one `dataset_*.json` under `root` (None: none)."""
    if files.file is not None:
        path = root / files.file
        if not path.is_file():
            raise DataError(path, "caption file not found (data.datasets.captions.file)")
        return path
    found = sorted(p for p in root.glob("dataset_*.json") if KARPATHY_RE.match(p.name))
    if len(found) > 1:
        raise ConfigError(f"data.datasets.captions.file: {root} holds several caption files "
                          f"({', '.join(p.name for p in found)}); name one")
    return found[0] if found else None


def read(root: Path, files: CaptionFilesConfig, *, required: bool = False) -> dict[str, CaptionSplit]:
    path = caption_file(root, files)
    if path is None:
        if required:
            raise DataError(root / "dataset_*.json", "no Karpathy caption file (data.datasets names captions)")
        return {}
    images = read_karpathy(path)
    splits: dict[str, CaptionSplit] = {}
    for split in SPLITS:
        wanted = {split} | ({"restval"} if split == "train" and files.include_restval else set())
        chosen = [im for im in images if im.split in wanted]
        if chosen:
            splits[split] = CaptionSplit(path, chosen)
    if "train" not in splits:
        raise DataError(path, "no image of the train split")
    return splits


def image_records(splits: dict[str, CaptionSplit]) -> ImageRecords:
    return {split: [(im.image_id, cs.path, f"image {im.filename}") for im in cs.images]
            for split, cs in splits.items()}


def test_images(root: Path, files: CaptionFilesConfig) -> list[TestImage]:
    try:
        path = caption_file(root, files)
    except ConfigError:
        return []
    if path is None:
        return []
    return [TestImage(im.image_id, tuple(im.captions[: files.captions_per_image]))
            for im in read_karpathy(path) if im.split == "test"]


def find_karpathy(folder: Path, subfolders: list[str], names: list[str]) -> Found:
    found = [n for n in names if KARPATHY_RE.match(n)]
    return Found([CheckUnit("karpathy", folder / n) for n in found], set(found))


def check_karpathy(unit: CheckUnit, ctx: CheckContext) -> None:
    problems, collect = collector()
    images = read_karpathy(unit.path, report=collect)
    ctx.problems += problems
    if not problems:
        counts = {s: sum(im.split == s for im in images) for s in KARPATHY_SPLITS}
        n = sum(len(im.captions) for im in images)
        ctx.summaries.append(f"captions {unit.path.name}: {len(images)} images, {n} sentences, splits "
                             + ", ".join(f"{k} {v}" for k, v in counts.items()))
    ctx.refers(unit.path, [(im.image_id, f"image {im.filename}") for im in images])


def find_coco(folder: Path, subfolders: list[str], names: list[str]) -> Found:
    found = [n for n in names if COCO_RE.match(n)]
    return Found([CheckUnit("coco_captions", folder / n) for n in found], set(found))


def check_coco(unit: CheckUnit, ctx: CheckContext) -> None:
    problems, collect = collector()
    images = read_coco_captions(unit.path, report=collect)
    ctx.problems += problems
    if not problems:
        n = sum(len(im.captions) for im in images)
        ctx.summaries.append(f"COCO captions {unit.path.name}: {len(images)} images, {n} captions")
    ctx.refers(unit.path, [(im.image_id, f"image id {im.image_id}") for im in images])


def config_units(root: Path, files: CaptionFilesConfig) -> list[CheckUnit]:
    try:
        path = caption_file(root, files)
    except (ConfigError, DataError):
        return []  # the build says which file to name, or that it is missing
    return [CheckUnit("karpathy", path)] if path is not None else []


register_format(FileFormat("karpathy", find_karpathy, check_karpathy))
register_format(FileFormat("coco_captions", find_coco, check_coco))
KIND = register_kind(DatasetKind("captions", "Karpathy caption splits", CaptionFilesConfig, read, image_records,
                                 test_images, config_units))
