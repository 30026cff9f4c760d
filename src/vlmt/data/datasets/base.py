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
  them, for the pictures a served model can be tried on;
- `check_units(root, files)`: what `vlmt data validate` checks of the files a data section reads
  (`CheckUnit`s of the file formats it registers with `register_format`).

A `FileFormat` is what validation recognises in a folder and checks (`find`, `check`); a dataset
kind's module registers the formats of its files, so `vlmt.data.validate` dispatches through
`FORMATS` and knows no format itself.
"""

from __future__ import annotations

from dataclasses import dataclass, field
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
    check_units: Callable[[Path, Any], list[CheckUnit]] = lambda root, files: []


KINDS: dict[str, DatasetKind] = {}


# --------------------------------------------------------------------------- validation


@dataclass(frozen=True)
class CheckUnit:
    """One thing a format checks: a file or folder (`path`), the files that go with it (`files`,
    e.g. a questions file's annotations) and its options (e.g. Genome's id_offset)."""

    format: str
    path: Path
    files: tuple[Path | None, ...] = ()
    options: tuple[tuple[str, Any], ...] = ()

    def option(self, key: str, default: Any = None) -> Any:
        return dict(self.options).get(key, default)


@dataclass
class CheckContext:
    """What the checks of one validation share: the open feature stores (checked first), the
    problem and summary lines, the images each checked file refers to (for the feature
    cross-check), and the VQA image ids (Genome's summary counts its overlap with them)."""

    stores: list[Any] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    summaries: list[str] = field(default_factory=list)
    image_refs: list[tuple[Path, list[tuple[int, str]]]] = field(default_factory=list)
    vqa_image_ids: set[int] = field(default_factory=set)
    genome_id_offset: int = 0

    def has_image(self, image_id: int) -> bool:
        return any(image_id in s for s in self.stores)

    def refers(self, file: Path, image_ids: list[tuple[int, str]]) -> None:
        """`file` refers to these (image id, record) pairs: each must have region features."""
        self.image_refs.append((file, image_ids))


@dataclass(frozen=True)
class Found:
    """What a format finds in one folder of a walk: units to check, the file names it takes
    (not reported as unrecognised) and the subfolders the walk must not enter (its own)."""

    units: list[CheckUnit] = field(default_factory=list)
    claimed: set[str] = field(default_factory=set)
    skip: set[str] = field(default_factory=set)
    whole: bool = False  # the folder is this format's: the walk enters none of its subfolders


@dataclass(frozen=True)
class FileFormat:
    """A file format validation recognises and checks. `find(folder, subfolders, files)` looks
    at one folder of a walk; `check(unit, context)` reads a unit with the format's reader and
    adds its problems, summary and image references to the context. Lower `stage`s run first
    (Genome runs after VQA: its summary counts the images it shares with VQA)."""

    name: str
    find: Callable[[Path, list[str], list[str]], Found]
    check: Callable[[CheckUnit, CheckContext], None]
    stage: int = 1


FORMATS: dict[str, FileFormat] = {}


def register_format(fmt: FileFormat) -> FileFormat:
    """Add a file format to validation (a dataset module calls this once, at import)."""
    FORMATS[fmt.name] = fmt
    return fmt


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
