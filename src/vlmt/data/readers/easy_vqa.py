"""easy-VQA (PyPI package `easy-vqa`): questions.json per split, a list of
[question, answer, image_id] triples, images as <image_id>.png, 13 answers in answers.txt.

Each question has one answer; it is represented as 10 identical annotator answers so the
official VQA accuracy (min(#matches / 3, 1)) gives 1 for that answer and 0 otherwise.
"""

from __future__ import annotations

import os
from pathlib import Path

from vlmt.data.examples import VQAExample
from vlmt.data.readers._common import Report, load_json, raise_problem
from vlmt.errors import DataError

SPLITS = ("train", "test")
# Image ids of the two splits overlap (both start at 0); question ids are made unique per split.
SPLIT_OFFSET = {"train": 0, "test": 1_000_000}


def package_root() -> Path:
    """The data folder shipped inside the installed `easy_vqa` package (an optional extra)."""
    try:
        import easy_vqa
    except ImportError:
        raise DataError("easy_vqa", "the optional package easy-vqa is not installed (pip install easy-vqa)") from None
    return Path(easy_vqa.__file__).parent / "data"


def read_answers(root: str | os.PathLike | None = None) -> list[str]:
    path = Path(root or package_root()) / "answers.txt"
    try:
        return [a.strip() for a in path.read_text(encoding="utf-8").splitlines() if a.strip()]
    except UnicodeDecodeError as e:
        raise DataError(path, f"not UTF-8 text ({e.reason})") from None
    except OSError as e:
        raise DataError(path, f"unreadable: {e.strerror}") from None


def read_easy_vqa(split: str, *, root: str | os.PathLike | None = None,
                  report: Report = raise_problem) -> list[VQAExample]:
    """Examples of one split; question ids are `SPLIT_OFFSET[split] + position`, image ids are the
    png numbers offset the same way so train and test images never share an id."""
    if split not in SPLITS:
        raise DataError(root or "easy_vqa", f"unknown split name {split!r}; expected train or test", field="split")
    root = Path(root or package_root())
    path = root / split / "questions.json"
    data = load_json(path)
    if not isinstance(data, list):
        report(path, f"top level must be a JSON list, got {type(data).__name__}")
        return []
    answers = set(read_answers(root)) if (root / "answers.txt").exists() else None
    out = []
    for i, item in enumerate(data):
        record = f"[{i}]"
        if not (isinstance(item, list) and len(item) == 3 and isinstance(item[0], str) and isinstance(item[1], str)
                and isinstance(item[2], int) and not isinstance(item[2], bool)):
            report(path, "must be [question, answer, image_id]", record=record)
            continue
        question, answer, image = item
        if not question.strip() or not answer.strip():
            report(path, "empty text", record=record, field="question" if not question.strip() else "answer")
            continue
        if answers is not None and answer not in answers:
            report(path, f"answer {answer!r} is not in answers.txt", record=record, field="answer")
            continue
        offset = SPLIT_OFFSET[split]
        out.append(VQAExample(offset + i, offset + image, question, answers=(answer,) * 10,
                              multiple_choice_answer=answer))
    return out


def image_path(split: str, image_id: int, *, root: str | os.PathLike | None = None) -> Path:
    """The png of an example's `image_id` (as returned by `read_easy_vqa`)."""
    return Path(root or package_root()) / split / "images" / f"{image_id - SPLIT_OFFSET[split]}.png"
