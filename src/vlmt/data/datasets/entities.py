"""Flickr30k Entities: a folder of Sentences/ (phrases marked in each caption), Annotations/ (their
boxes) and the split lists train.txt, val.txt, test.txt."""

from __future__ import annotations

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
from vlmt.data.examples import GroundedSentence
from vlmt.data.readers import flickr30k_entities
from vlmt.data.readers._common import collector
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


def find(folder: Path, subfolders: list[str], names: list[str]) -> Found:
    """A folder holding Sentences/ and Annotations/ (its split lists are its own files)."""
    if (folder / "Sentences").is_dir() and (folder / "Annotations").is_dir():
        return Found([CheckUnit("entities", folder)], {n for n in names if n.endswith(".txt")},
                     {"Sentences", "Annotations"})
    return Found()


def check(unit: CheckUnit, ctx: CheckContext) -> None:
    root = unit.path
    problems, collect = collector()
    ids = flickr30k_entities.image_ids(root)
    for xml in (root / "Annotations").glob("*.xml"):
        if not (root / "Sentences" / f"{xml.stem}.txt").exists():
            collect(xml, "has no sentence file in Sentences/", field="filename")
    sentences = []
    for image_id in ids:
        sentences += flickr30k_entities.read_image(root, image_id, report=collect)
    split_of: dict[int, str] = {}
    for split in flickr30k_entities.SPLITS:
        path = root / f"{split}.txt"
        if not path.exists():
            continue
        try:
            split_ids = flickr30k_entities.read_split(root, split)
        except DataError as e:
            problems.append(str(e))
            continue
        for n, image_id in enumerate(split_ids, start=1):
            if image_id in split_of:
                collect(path, f"image {image_id} is also in {split_of[image_id]}.txt", record=f"entry {n}",
                        field="image id")
            elif image_id not in ids:
                collect(path, f"image {image_id} has no Sentences/{image_id}.txt", record=f"entry {n}",
                        field="image id")
            split_of[image_id] = split
    for other in root.glob("*.txt"):
        if other.stem not in flickr30k_entities.SPLITS:
            collect(other, f"unknown split name {other.stem!r}; expected train, val or test", field="split")
    ctx.problems += problems
    if not problems:
        phrases = sum(len(s.phrases) for s in sentences)
        multi = sum(len(p.boxes) > 1 for s in sentences for p in s.phrases)
        ctx.summaries.append(f"Flickr30k Entities {root.name}/: {len(ids)} images, {len(sentences)} sentences, "
                             f"{phrases} phrases ({multi} with several boxes)")
    ctx.refers(root / "Sentences", [(i, f"image {i}") for i in ids])


def config_units(root: Path, files: EntityFilesConfig) -> list[CheckUnit]:
    folder = root / files.folder
    return [CheckUnit("entities", folder)] if (folder / "Sentences").is_dir() else []


register_format(FileFormat("entities", find, check))
KIND = register_kind(DatasetKind("entities", "Flickr30k Entities", EntityFilesConfig, read, image_records,
                                 test_images, config_units))
