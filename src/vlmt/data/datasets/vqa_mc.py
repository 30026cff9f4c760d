"""VQA v1 multiple choice: a questions file with 18 choices per question and an annotations file
per split subtype. Model selection may take its validation questions out of the training subtype
(`splits.val: holdout`), as the SVLR paper does (Sec. 5.1: 12,072 of 248,349 training questions)."""

from __future__ import annotations

import zlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from vlmt.data.datasets.base import SPLITS, CheckUnit, DatasetKind, ImageRecords, TestImage, register_kind
from vlmt.data.datasets.vqa import test_image_ids
from vlmt.data.examples import VQAExample
from vlmt.data.readers.vqa import read_vqa
from vlmt.errors import ConfigError, DataError

HOLDOUT = "holdout"  # splits.val: carved from the train subtype (`holdout_images`)


@dataclass
class VQAMCFilesConfig:
    """VQA v1 multiple-choice files; `{subtype}` is replaced by the entry of `splits` for each split.

    Real VQA v1 has no test annotations: map `test` to `val2014` there (the paper reports on val)
    and `val` to `holdout`. holdout: with `splits.val: holdout`, how much of train to hold out: an
    integer is a number of questions (whole images until it is reached), a float in (0, 1) a
    fraction of the training questions.
    """

    questions: str = "MultipleChoice_mscoco_{subtype}_questions.json"
    annotations: str = "mscoco_{subtype}_annotations.json"
    splits: dict[str, str] = field(default_factory=lambda: {"train": "train2014", "val": "val2014",
                                                            "test": "test2015"})
    holdout: int | float | None = None

    def validate(self) -> str | None:
        unknown = sorted(set(self.splits) - set(SPLITS))
        if unknown:
            return f"splits: unknown split(s) {unknown}; use train, val, test"
        for split in ("train", "test"):
            if self.splits.get(split) == HOLDOUT:
                return f"splits.{split}: only val can be {HOLDOUT!r} (carved from train)"
        if self.splits.get("val") is not None and self.splits.get("val") == self.splits.get("test"):
            return (f"splits: val and test are both {self.splits['val']!r}, so the checkpoint would be selected "
                    f"on the split it reports; hold out part of train instead (splits.val: {HOLDOUT} with "
                    f"holdout: a question count or fraction)")
        size = self.holdout
        if self.splits.get("val") == HOLDOUT:
            if "train" not in self.splits:
                return f"splits.val: {HOLDOUT!r} needs a train split to carve it from"
            if size is None:
                return f"holdout: required with splits.val: {HOLDOUT} (a question count, or a fraction in (0, 1))"
            if isinstance(size, int) and size < 1 or isinstance(size, float) and not 0.0 < size < 1.0:
                return f"holdout: a question count >= 1 or a fraction in (0, 1), got {size!r}"
        elif size is not None:
            return f"holdout: set to {size!r} but splits.val is not {HOLDOUT!r}; remove one of them"
        return None

    def path(self, root: Path, kind: str, split: str) -> Path:
        return root / getattr(self, kind).format(subtype=self.splits[split])


@dataclass
class MCSplit:
    """The multiple-choice questions of one split (each with its choices and the index of the
    annotated answer among them), in question-id order."""

    path: Path
    examples: list[VQAExample]
    correct: list[int]


def holdout_images(examples: Sequence[VQAExample], size: int | float) -> set[int]:
    """The image ids held out of `examples` for model selection: whole images in the order of
    CRC32(image id) (ties by id; stable whatever the file order), taken until the held-out
    questions reach `size` (an int: a question count; a float in (0, 1): that fraction of the
    questions, rounded). ValueError when that would leave no training image."""
    per_image = Counter(ex.image_id for ex in examples)
    total = sum(per_image.values())
    target = size if isinstance(size, int) else max(1, round(size * total))
    order = sorted(per_image, key=lambda i: (zlib.crc32(str(i).encode()), i))
    taken: set[int] = set()
    count = 0
    for image_id in order:
        if count >= target:
            break
        taken.add(image_id)
        count += per_image[image_id]
    if count < target or len(taken) == len(per_image):
        raise ValueError(f"holding out {target} questions needs fewer than all {total} training questions "
                         f"({len(per_image)} images)")
    return taken


def _split(path: Path, examples: list[VQAExample]) -> MCSplit:
    """The split in question-id order, each question checked to be multiple choice with its answer
    among the choices."""
    ordered = sorted(examples, key=lambda e: e.question_id)
    correct = []
    for ex in ordered:
        if ex.choices is None:
            raise DataError(path, "not a multiple-choice question", record=f"question_id {ex.question_id}",
                            field="multiple_choices")
        try:
            correct.append(ex.choices.index(ex.multiple_choice_answer))
        except ValueError:
            raise DataError(path, f"the annotated answer {ex.multiple_choice_answer!r} is not one of the choices",
                            record=f"question_id {ex.question_id}", field="multiple_choices") from None
    return MCSplit(path, ordered, correct)


def read(root: Path, files: VQAMCFilesConfig, *, required: bool = True) -> dict[str, MCSplit]:
    """Every split of `files.splits` (each file must exist); with `splits.val: holdout`, val is
    carved out of train (`holdout_record` says what was taken)."""
    raw: dict[str, tuple[list[VQAExample], Path]] = {}
    for split, subtype in files.splits.items():
        if subtype == HOLDOUT:
            continue
        q_path, a_path = files.path(root, "questions", split), files.path(root, "annotations", split)
        for p in (q_path, a_path):
            if not p.is_file():
                if not required:
                    return {}
                raise DataError(p, f"file not found (data.datasets.vqa_mc.splits.{split} = {subtype!r})")
        raw[split] = (read_vqa(q_path, a_path), q_path)
    if files.splits.get("val") == HOLDOUT:
        train, train_path = raw["train"]
        try:
            held = holdout_images(train, files.holdout)  # type: ignore[arg-type]  # validate() checked it
        except ValueError as e:
            raise ConfigError(f"data.datasets.vqa_mc.holdout: {e} "
                              f"(data.datasets.vqa_mc.splits.train = {files.splits['train']!r})") from None
        raw["val"] = ([ex for ex in train if ex.image_id in held], train_path)
        raw["train"] = ([ex for ex in train if ex.image_id not in held], train_path)
    return {split: _split(path, examples) for split, (examples, path) in raw.items()}


def holdout_record(files: VQAMCFilesConfig, splits: dict[str, MCSplit]) -> dict | None:
    """What `splits.val: holdout` took from train (written into a run's data.json), or None."""
    if files.splits.get("val") != HOLDOUT:
        return None
    val, train = splits["val"].examples, splits["train"].examples
    return {"from": files.splits["train"], "requested": files.holdout,
            "rule": "whole images in the order of CRC32(str(image_id)), until the requested questions",
            "images": sorted({ex.image_id for ex in val}), "questions": sorted(ex.question_id for ex in val),
            "train_images_left": len({ex.image_id for ex in train}), "train_questions_left": len(train)}


def image_records(splits: dict[str, MCSplit]) -> ImageRecords:
    return {split: [(e.image_id, ms.path, f"question_id {e.question_id}") for e in ms.examples]
            for split, ms in splits.items()}


def test_images(root: Path, files: VQAMCFilesConfig) -> list[TestImage]:
    if files.splits.get("test") in (None, HOLDOUT):
        return []
    path = files.path(root, "questions", "test")
    return [TestImage(i) for i in test_image_ids(path)] if path.is_file() else []


def config_units(root: Path, files: VQAMCFilesConfig) -> list[CheckUnit]:
    """The questions files of `files` (checked by the VQA format), with their annotations."""
    units = []
    for split, subtype in files.splits.items():
        if subtype == HOLDOUT:
            continue
        questions, annotations = files.path(root, "questions", split), files.path(root, "annotations", split)
        if questions.is_file():
            units.append(CheckUnit("vqa", questions, (annotations if annotations.is_file() else None,)))
    return units


KIND = register_kind(DatasetKind("vqa_mc", "VQA v1 multiple choice", VQAMCFilesConfig, read, image_records,
                                 test_images, config_units))
