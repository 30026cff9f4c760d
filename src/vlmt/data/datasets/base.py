"""What every dataset kind declares, so the data sections, the gallery and validation find a
dataset's files the same way.

A dataset kind (VQA open-ended, VQA multiple choice, Karpathy captions, Flickr30k Entities,
Visual Genome) is one module of `vlmt.data.datasets` holding:

- its *files* config (a dataclass; the official names by default, each overridable for real
  releases), with `features` / `images` / `namespace` overrides shared by every kind;
- `read(root, files, required=...)`: its splits (examples per split, each tied to the file it
  came from), or {} when its files are not under `root` and it is not `required`;
- `image_records(splits)`: per split, (image id, file, record) of every example, for the checks
  that every image has region features and that no image is trained on and tested on;
- `test_images(root, files)`: the images of its test split, with their captions when it has
  them, for the pictures a served model can be tried on.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

SPLITS = ("train", "val", "test")

ImageRecords = dict[str, list[tuple[int, Path, str]]]  # split -> (image id, file, record)


@dataclass(frozen=True)
class TestImage:
    """An image of a dataset's test split (the gallery's pictures)."""

    image_id: int
    captions: tuple[str, ...] = ()


@dataclass(frozen=True)
class DatasetKind:
    """One dataset format: its name in a data section, its files config and its functions (see
    the module docstring)."""

    name: str
    title: str
    files: type
    read: Callable[..., dict[str, Any]]
    image_records: Callable[[dict[str, Any]], ImageRecords]
    test_images: Callable[[Path, Any], list[TestImage]]


KINDS: dict[str, DatasetKind] = {}


def register_kind(kind: DatasetKind) -> DatasetKind:
    """Add a dataset kind (its module calls this once, at import)."""
    KINDS[kind.name] = kind
    return kind


def image_pattern_ok(pattern: str) -> bool:
    """True when `pattern` formats with an image id and depends on it."""
    try:
        return pattern.format(image_id=1) != pattern.format(image_id=2)
    except (KeyError, IndexError, ValueError):
        return False
