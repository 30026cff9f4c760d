"""Flickr30k Entities: a folder of Sentences/ (phrases marked in each caption), Annotations/ (their
boxes) and the split lists train.txt, val.txt, test.txt."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from vlmt.data.datasets.base import SPLITS, DatasetKind, ImageRecords, TestImage, register_kind
from vlmt.data.examples import GroundedSentence
from vlmt.data.readers.flickr30k_entities import read_flickr30k_entities, read_split
from vlmt.errors import DataError


@dataclass
class EntityFilesConfig:
    """A Flickr30k Entities folder (Sentences/, Annotations/, train.txt, val.txt, test.txt)."""

    folder: str = "flickr30k_entities"
    features: str | None = None
    images: str | None = None
    namespace: str = "main"


@dataclass
class EntitySplit:
    path: Path  # the Sentences/ folder
    sentences: list[GroundedSentence]


def read(root: Path, files: EntityFilesConfig, *, required: bool = False) -> dict[str, EntitySplit]:
    folder = root / files.folder
    if not (folder / "Sentences").is_dir():
        if required:
            raise DataError(folder / "Sentences", "Flickr30k Entities folder not found (data.datasets names entities)")
        return {}
    splits = {split: EntitySplit(folder / "Sentences", read_flickr30k_entities(folder, split=split))
              for split in SPLITS if (folder / f"{split}.txt").is_file()}
    if "train" not in splits:
        raise DataError(folder / "train.txt", "Flickr30k Entities training split not found")
    return splits


def image_records(splits: dict[str, EntitySplit]) -> ImageRecords:
    return {split: [(g.image_id, es.path / f"{g.image_id}.txt", f"sentence {g.sentence_index}")
                     for g in es.sentences] for split, es in splits.items()}


def test_images(root: Path, files: EntityFilesConfig) -> list[TestImage]:
    folder = root / files.folder
    return [TestImage(i) for i in read_split(folder, "test")] if (folder / "test.txt").is_file() else []


KIND = register_kind(DatasetKind("entities", "Flickr30k Entities", EntityFilesConfig, read, image_records,
                                 test_images))
