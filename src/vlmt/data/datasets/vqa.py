"""VQA v2 open-ended (and easy-VQA, which is converted to these files): one questions file and one
annotations file per split subtype; a test subtype may come without annotations (the test server's
split)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
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
from vlmt.data.examples import VQAExample
from vlmt.data.readers._common import collector
from vlmt.data.readers.vqa import ANNOTATIONS_RE, QUESTIONS_RE, read_vqa
from vlmt.errors import DataError, format_problem


@dataclass
class VQAFilesConfig:
    """VQA v2 open-ended files. `{subtype}` in a file name is replaced by the split's subtype.

    train_splits: the splits VQA trains on (["train", "val"] is the paper's test-server setting;
    the contamination rule of Sec. 5.1 then applies). features / images: override the top-level
    store and picture pattern for these images. namespace: which image ids are comparable
    across datasets (COCO images are shared by VQA and COCO captions).
    """

    questions: str = "v2_OpenEnded_mscoco_{subtype}_questions.json"
    annotations: str = "v2_mscoco_{subtype}_annotations.json"
    subtypes: dict[str, str] = field(default_factory=lambda: {"train": "train2014", "val": "val2014",
                                                              "test": "test2015"})
    train_splits: list[str] = field(default_factory=lambda: ["train"])
    features: str | None = None
    images: str | None = None
    namespace: str = "main"

    def validate(self) -> str | None:
        bad = [s for s in list(self.subtypes) + self.train_splits if s not in SPLITS]
        if bad:
            return f"unknown split name(s) {bad}; expected {', '.join(SPLITS)}"
        if not self.train_splits:
            return "train_splits: at least one split"
        val, test = self.subtypes.get("val"), self.subtypes.get("test")
        if val is not None and val == test:
            return (f"subtypes: val and test are both {val!r}, so the checkpoint would be selected on the split "
                    f"it reports (the trainer validates on val); give them different subtypes")
        return None

    def path(self, root: Path, kind: str, split: str) -> Path:
        """The `questions` or `annotations` file of `split` under `root`."""
        return root / getattr(self, kind).format(subtype=self.subtypes.get(split, split))


@dataclass
class VQASplit:
    """The questions of one split; `annotated` is False for test splits released without answers."""

    path: Path
    examples: list[VQAExample]
    annotated: bool


def read(root: Path, files: VQAFilesConfig, *, required: bool = False) -> dict[str, VQASplit]:
    """Every split whose questions file exists; DataError when there are questions but no training
    split, or none at all while `required`."""
    splits: dict[str, VQASplit] = {}
    for split in files.subtypes:
        questions = files.path(root, "questions", split)
        if not questions.is_file():
            continue
        annotations = files.path(root, "annotations", split)
        annotated = annotations.is_file()
        splits[split] = VQASplit(questions, read_vqa(questions, annotations if annotated else None), annotated)
    if splits and "train" not in splits:
        raise DataError(files.path(root, "questions", "train"), "VQA training questions not found")
    if required and not splits:
        raise DataError(files.path(root, "questions", "train"), "VQA questions not found (data.datasets names vqa)")
    return splits


def image_records(splits: dict[str, VQASplit]) -> ImageRecords:
    return {split: [(e.image_id, vs.path, f"question_id {e.question_id}") for e in vs.examples]
            for split, vs in splits.items()}


def test_image_ids(path: Path) -> list[int]:
    """The image ids of a VQA questions file, in file order, each once (no annotations needed)."""
    questions = json.loads(path.read_text(encoding="utf-8")).get("questions", [])
    return list(dict.fromkeys(int(q["image_id"]) for q in questions if isinstance(q, dict) and "image_id" in q))


def test_images(root: Path, files: VQAFilesConfig) -> list[TestImage]:
    path = files.path(root, "questions", "test")
    return [TestImage(i) for i in test_image_ids(path)] if path.is_file() else []


def annotation_name(questions: Path) -> str | None:
    """The official name of a questions file's annotations file (None: not an official name)."""
    m = QUESTIONS_RE.match(questions.name)
    if not m:
        return None
    prefix = "v2_" if questions.name.startswith("v2_") else ""
    return f"{prefix}{m.group(2)}_{m.group(3)}_annotations.json"


def find(folder: Path, subfolders: list[str], names: list[str]) -> Found:
    """Questions files (open-ended or multiple choice) with their annotations beside them; an
    annotations file without its questions file is a unit too (its check reports it)."""
    units, claimed = [], set()
    paired = set()
    for name in names:
        if QUESTIONS_RE.match(name):
            ann = annotation_name(folder / name)
            partner = folder / ann if ann and (folder / ann).exists() else None
            units.append(CheckUnit("vqa", folder / name, (partner,)))
            claimed.add(name)
            if ann:
                paired.add(ann)
    for name in names:
        if ANNOTATIONS_RE.match(name):
            claimed.add(name)
            if name not in paired:
                units.append(CheckUnit("vqa", folder / name, (), (("orphan", True),)))
    return Found(units, claimed)


def check(unit: CheckUnit, ctx: CheckContext) -> None:
    """Read a questions file with its annotations (VQA v2 open-ended or v1 multiple choice)."""
    if unit.option("orphan"):
        ctx.problems.append(format_problem(unit.path, "annotations without their questions file"))
        return
    questions, annotations = unit.path, (unit.files or (None,))[0]
    problems, collect = collector()
    examples = read_vqa(questions, annotations, report=collect, has_image=ctx.has_image if ctx.stores else None)
    ctx.problems += problems
    if not problems:
        kind = "multiple choice" if examples and examples[0].choices is not None else "open-ended"
        images = {e.image_id for e in examples}
        with_answers = "with annotations" if annotations else "questions only"
        ctx.summaries.append(f"VQA {kind} {questions.name}: {len(examples)} questions, {len(images)} images, "
                             f"{with_answers}")
    ctx.vqa_image_ids.update(e.image_id for e in examples)
    ctx.refers(questions, [(e.image_id, f"question_id {e.question_id}") for e in examples])


def config_units(root: Path, files: VQAFilesConfig) -> list[CheckUnit]:
    """The questions files of `files` that exist, each with its annotations when they exist."""
    units = []
    for split in files.subtypes:
        questions = files.path(root, "questions", split)
        if questions.is_file():
            annotations = files.path(root, "annotations", split)
            units.append(CheckUnit("vqa", questions, (annotations if annotations.is_file() else None,)))
    return units


FORMAT = register_format(FileFormat("vqa", find, check))
KIND = register_kind(DatasetKind("vqa", "VQA v2 open-ended", VQAFilesConfig, read, image_records, test_images,
                                 config_units))
