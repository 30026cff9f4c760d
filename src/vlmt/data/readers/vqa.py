"""VQA question and annotation files (VQA v2 open-ended, VQA v1 multiple choice).

Layout (one JSON object per file, as released by the VQA team):
  questions:   {info, license, task_type, data_type, data_subtype,
                questions: [{image_id, question, question_id, multiple_choices?}]}
  annotations: {info, license, data_type, data_subtype,
                annotations: [{question_id, image_id, question_type, answer_type,
                               multiple_choice_answer, answers: [{answer, answer_confidence, answer_id}]}]}
File names: v2_OpenEnded_mscoco_{subtype}_questions.json, v2_mscoco_{subtype}_annotations.json,
MultipleChoice_mscoco_{subtype}_questions.json, mscoco_{subtype}_annotations.json (v1).
Test splits (test2015, test-dev2015) ship questions only.
"""

from __future__ import annotations

import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, cast

import numpy as np

from vlmt.data.examples import VQAExample
from vlmt.data.readers._common import Report, Skip, optional, raise_problem, require, require_text
from vlmt.data.readers._stream import ArrayStream
from vlmt.errors import DataError

SUBTYPES = ("train2014", "val2014", "test2015", "test-dev2015")  # data_type "mscoco"
ABSTRACT_SUBTYPES = ("train2015", "val2015", "test2015")  # data_type "abstract_v002" (VQA v1 abstract scenes)
ANSWER_TYPES = ("yes/no", "number", "other")
NUM_CHOICES = 18  # VQA v1 multiple choice
NUM_ANSWERS = 10

QUESTIONS_RE = re.compile(r"^(?:v2_)?(OpenEnded|MultipleChoice)_(mscoco|abstract_v002)_(.+)_questions\.json$")
ANNOTATIONS_RE = re.compile(r"^(?:v2_)?(mscoco|abstract_v002)_(.+)_annotations\.json$")


@dataclass(frozen=True)
class QuestionRecord:
    question_id: int
    image_id: int
    question: str
    choices: tuple[str, ...] | None


def _check_header(data: object, path: Path, report: Report, pattern: re.Pattern) -> str | None:
    """Check data_subtype against the known split names and the file name; return it."""
    if not isinstance(data, dict):
        return None
    subtype = data.get("data_subtype")
    if subtype is None:
        report(path, "missing", field="data_subtype")
        return None
    known = ABSTRACT_SUBTYPES if data.get("data_type") == "abstract_v002" else SUBTYPES
    if subtype not in known:
        report(path, f"unknown split name {subtype!r}; expected one of {', '.join(known)}", field="data_subtype")
    m = pattern.match(path.name)
    if m:
        assert m.lastindex is not None  # the file-name patterns all have groups
        if m.group(m.lastindex) != subtype:
            report(path, f"says {subtype!r} but the file name says {m.group(m.lastindex)!r}", field="data_subtype")
    return subtype


def read_questions(path: str | os.PathLike, *, report: Report = raise_problem) -> dict[int, QuestionRecord]:
    """Questions by question id. Multiple-choice files must list 18 distinct choices."""
    path = Path(path)
    stream = ArrayStream(path, "questions")
    multiple_choice = path.name.startswith("MultipleChoice")
    out: dict[int, QuestionRecord] = {}
    for i, q in enumerate(stream):
        record = f"questions[{i}]"
        try:
            qid = require(q, "question_id", int, path, record, report)
            record = f"question_id {qid}"
            image_id = require(q, "image_id", int, path, record, report)
            text = require_text(q, "question", path, record, report)
            choices = None
            if multiple_choice or "multiple_choices" in q:
                raw = require(q, "multiple_choices", list, path, record, report)
                if len(raw) != NUM_CHOICES or not all(isinstance(c, str) and c.strip() for c in raw):
                    report(path, f"must be {NUM_CHOICES} non-empty strings, got {len(raw)} items",
                           record=record, field="multiple_choices")
                    raise Skip
                choices = tuple(map(sys.intern, raw))  # 18 per question, from a few thousand answers
        except Skip:
            continue
        if qid in out:
            report(path, "duplicate question id", record=record, field="question_id")
            continue
        out[qid] = QuestionRecord(qid, image_id, text, choices)
    if _check_stream(stream, path, report, QUESTIONS_RE):
        if stream.header.get("task_type") == "Multiple-Choice" and not multiple_choice and out and \
                any(q.choices is None for q in out.values()):
            report(path, "task_type is Multiple-Choice but questions lack multiple_choices", field="multiple_choices")
    return out


@dataclass(frozen=True)
class AnnotationRecord:
    question_id: int
    image_id: int
    answers: tuple[str, ...]
    answer_type: str
    question_type: str
    multiple_choice_answer: str


def iter_annotations(path: str | os.PathLike, *, report: Report = raise_problem,
                     attempted: set[int] | None = None) -> Iterator[AnnotationRecord]:
    """Annotation records, each checked (10 answers, known answer type, non-empty texts).
    `attempted` collects the question id of every record, good or bad, so a caller does not
    report a bad record a second time as a missing annotation."""
    path = Path(path)
    stream = ArrayStream(path, "annotations")
    for i, a in enumerate(stream):
        record = f"annotations[{i}]"
        try:
            qid = require(a, "question_id", int, path, record, report)
            record = f"question_id {qid}"
            if attempted is not None:
                attempted.add(qid)
            image_id = require(a, "image_id", int, path, record, report)
            answer_type = require(a, "answer_type", str, path, record, report)
            if answer_type not in ANSWER_TYPES:
                report(path, f"unknown answer type {answer_type!r}; expected one of {ANSWER_TYPES}",
                       record=record, field="answer_type")
                raise Skip
            question_type = require(a, "question_type", str, path, record, report)
            mc_answer = require_text(a, "multiple_choice_answer", path, record, report)
            raw = require(a, "answers", list, path, record, report)
            if len(raw) != NUM_ANSWERS:
                report(path, f"must hold {NUM_ANSWERS} answers, got {len(raw)}", record=record, field="answers")
                raise Skip
            # answers repeat heavily (a few thousand distinct in 4.5M): intern to share them
            if _answers_ok(raw):  # the common case, checked in one pass (a third of a full-size read)
                answers = [sys.intern(ans["answer"]) for ans in raw]
            else:  # find and report the bad field
                answers = []
                for j, ans in enumerate(raw):
                    answers.append(sys.intern(require_text(ans, "answer", path, f"{record} answers[{j}]", report)))
                    require(ans, "answer_id", int, path, f"{record} answers[{j}]", report)
                    optional(ans, "answer_confidence", str, path, f"{record} answers[{j}]", report)
        except Skip:
            continue
        yield AnnotationRecord(qid, image_id, tuple(answers), sys.intern(answer_type), sys.intern(question_type),
                               sys.intern(mc_answer))
    if not _check_stream(stream, path, report, ANNOTATIONS_RE) and attempted is not None:
        attempted.add(_UNREADABLE)


def _answers_ok(raw: list) -> bool:
    """Whether every answer passes the per-field checks of `iter_annotations` (a non-empty text,
    an integer id, a string or absent confidence), without building a message for each."""
    for ans in raw:
        if type(ans) is not dict:
            return False
        text, confidence = ans.get("answer"), ans.get("answer_confidence")
        if type(text) is not str or not text.strip() or type(ans.get("answer_id")) is not int or \
                not (confidence is None or type(confidence) is str):
            return False
    return True


_UNREADABLE = -1  # marks `attempted` when the record array itself was unusable


def _check_stream(stream: ArrayStream, path: Path, report: Report, pattern: re.Pattern) -> bool:
    """Report a wrong top level or a missing/non-list record array; then check the header."""
    if stream.top_level_type != "object":
        report(path, f"top level must be a JSON object with {stream.key!r}, got a {stream.top_level_type}")
        return False
    if not stream.found:
        if stream.key in stream.header:
            report(path, f"must be a list, got {type(stream.header[stream.key]).__name__}", field=stream.key)
        else:
            report(path, "missing", field=stream.key)
    _check_header(stream.header, path, report, pattern)
    return stream.found and isinstance(stream.header.get(stream.key or "", []), list)


def join(questions: str | os.PathLike, annotations: str | os.PathLike, qs: dict[int, QuestionRecord], *,
         report: Report = raise_problem, has_image: Callable[[int], bool] | None = None
         ) -> Iterator[tuple[QuestionRecord, AnnotationRecord]]:
    """Pair each annotation with its question, cross-checking: the question exists with the same
    image id, no duplicate annotation, a multiple-choice list holds the correct answer, and
    (at the end) every question has an annotation. When the two files name different images,
    `has_image` (an image has region features) decides which file is at fault where it can."""
    annotations = Path(annotations)
    seen: set[int] = set()
    attempted: set[int] = set()
    for a in iter_annotations(annotations, report=report, attempted=attempted):
        record = f"question_id {a.question_id}"
        q = qs.get(a.question_id)
        if q is None:
            report(annotations, f"refers to a question missing from {Path(questions).name}", record=record,
                   field="question_id")
            continue
        if a.question_id in seen:
            report(annotations, "duplicate annotation", record=record, field="question_id")
            continue
        seen.add(a.question_id)
        if q.image_id != a.image_id:
            blame_image_ids(Path(questions), annotations, q.image_id, a.image_id, record, report, has_image)
            continue
        if q.choices is not None and a.multiple_choice_answer not in q.choices:
            report(questions, f"does not contain the correct answer {a.multiple_choice_answer!r}", record=record,
                   field="multiple_choices")
            continue
        yield q, a
    if _UNREADABLE in attempted:  # already reported; listing every question would only add noise
        return
    for qid in sorted(qs.keys() - attempted):
        report(questions, f"has no annotation in {annotations.name}", record=f"question_id {qid}", field="question_id")


def blame_image_ids(questions: Path, annotations: Path, q_image: int, a_image: int, record: str, report: Report,
                    has_image: Callable[[int], bool] | None) -> None:
    """A question and its annotation name different images: report the file that points at an image
    without region features when exactly one does, else say that it cannot be told."""
    q_ok = has_image(q_image) if has_image else None
    a_ok = has_image(a_image) if has_image else None
    if q_ok and a_ok is False:
        report(annotations, f"is {a_image}, an image without region features, but the question in {questions.name} "
                            f"says {q_image}", record=record, field="image_id")
    elif a_ok and q_ok is False:
        report(questions, f"is {q_image}, an image without region features, but its annotation in "
                          f"{annotations.name} says {a_image}", record=record, field="image_id")
    else:
        why = ("" if has_image is None else
               f" (which file is wrong cannot be told: {'both images have' if q_ok else 'neither image has'} "
               f"region features)")
        report(annotations, f"is {a_image} but the question in {questions.name} says {q_image}{why}", record=record,
               field="image_id")


def read_vqa(questions: str | os.PathLike, annotations: str | os.PathLike | None = None, *,
             report: Report = raise_problem, has_image: Callable[[int], bool] | None = None) -> list[VQAExample]:
    """Join a question file with its annotation file (None for test splits) into examples."""
    qs = read_questions(questions, report=report)
    if annotations is None:
        return [VQAExample(q.question_id, q.image_id, q.question, choices=q.choices) for q in qs.values()]
    return [VQAExample(q.question_id, q.image_id, q.question, answers=a.answers, answer_type=a.answer_type,
                       question_type=a.question_type, multiple_choice_answer=a.multiple_choice_answer,
                       choices=q.choices)
            for q, a in join(questions, annotations, qs, report=report, has_image=has_image)]


class VQAIndex:
    """A compact index of a VQA split: sorted question ids and image ids as int64 arrays, texts in
    flat lists; `index[question_id]` builds the example on demand. Both files are streamed
    record by record (never parsed whole), and the per-record dicts are dropped once indexed."""

    def __init__(self, questions: str | os.PathLike, annotations: str | os.PathLike | None = None):
        qs = read_questions(questions)
        ids = np.fromiter(qs.keys(), dtype=np.int64, count=len(qs))
        order = np.argsort(ids, kind="stable")
        self.questions_path = Path(questions)
        self.annotations_path = Path(annotations) if annotations is not None else None
        self.question_ids = ids[order]
        records = list(qs.values())
        self.image_ids = np.fromiter((records[i].image_id for i in order), dtype=np.int64, count=len(records))
        self._text = [records[i].question for i in order]
        self._choices = [records[i].choices for i in order]
        del records
        self._answers: list[AnnotationRecord | None] = [None] * len(self.question_ids)
        if annotations is not None:
            for _, a in join(questions, annotations, qs):
                self._answers[self._row(a.question_id)] = a
        del qs  # only the compact arrays and lists stay

    def __len__(self) -> int:
        return len(self.question_ids)

    def _row(self, question_id: int) -> int:
        row = int(np.searchsorted(self.question_ids, question_id))
        if row >= len(self.question_ids) or self.question_ids[row] != question_id:
            raise DataError(self.questions_path, "no such question", record=f"question_id {question_id}")
        return row

    def __contains__(self, question_id: object) -> bool:
        try:
            self._row(int(cast(Any, question_id)))  # int() raises TypeError / ValueError for non-ids
        except (DataError, TypeError, ValueError):
            return False
        return True

    def __getitem__(self, question_id: int) -> VQAExample:
        row = self._row(question_id)
        a = self._answers[row]
        if a is None:
            return VQAExample(int(self.question_ids[row]), int(self.image_ids[row]), self._text[row],
                              choices=self._choices[row])
        return VQAExample(a.question_id, a.image_id, self._text[row], answers=a.answers, answer_type=a.answer_type,
                          question_type=a.question_type, multiple_choice_answer=a.multiple_choice_answer,
                          choices=self._choices[row])

    def __iter__(self) -> Iterator[VQAExample]:
        for qid in self.question_ids:
            yield self[int(qid)]
