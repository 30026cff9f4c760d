"""Reading and checking the three official VQA files the evaluation needs.

questions   {"task_type": ..., "questions": [{"question_id", "image_id", "question",
             "multiple_choices" (v1 multiple-choice only)}]}
annotations {"annotations": [{"question_id", "image_id", "question_type", "answer_type",
             "answers": [{"answer", "answer_confidence", "answer_id"}], ...}]}
results     [{"question_id": int, "answer": str}]

Problems are reported as `DataError`s naming the file, the record and the field, where the
official code would stop with a bare assertion or a KeyError.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vlmt.errors import DataError
from vlmt.io import load_json


@dataclass(frozen=True)
class VQAFiles:
    """Checked contents of the three files, in file order."""

    task_type: str | None
    questions: dict[Any, dict]       # question id -> question record
    annotations: list[dict]          # annotation records in file order
    results: dict[Any, str]          # question id -> result answer
    results_path: Path

    @property
    def is_multiple_choice(self) -> bool:
        """True for a v1 multiple-choice question file ("Multiple-Choice" or "Multiple Choice")."""
        t = (self.task_type or "").lower().replace("-", " ").replace("_", " ")
        return " ".join(t.split()) == "multiple choice"


def _need(path: Path, record: Any, rec: Any, key: str, kind: type | tuple[type, ...]) -> Any:
    if not isinstance(rec, dict):
        raise DataError(path, "must be a JSON object", record=record)
    if key not in rec:
        raise DataError(path, "missing", record=record, field=key)
    value = rec[key]
    if not isinstance(value, kind) or isinstance(value, bool):
        names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise DataError(path, f"must be {names}, got {type(value).__name__}", record=record, field=key)
    return value


def read_questions(path: str | Path) -> tuple[str | None, dict[Any, dict]]:
    """Task type and question id -> question record."""
    path = Path(path)
    data = load_json(path)
    if not isinstance(data, dict) or not isinstance(data.get("questions"), list):
        raise DataError(path, "must be an object with a list under 'questions'", field="questions")
    questions: dict[Any, dict] = {}
    for i, q in enumerate(data["questions"]):
        qid = _need(path, f"questions[{i}]", q, "question_id", (int, str))
        if qid in questions:
            raise DataError(path, "question id appears twice", record=f"question_id {qid}", field="question_id")
        if "multiple_choices" in q:
            choices = q["multiple_choices"]
            if not isinstance(choices, list) or not all(isinstance(c, str) for c in choices):
                raise DataError(path, "must be a list of strings", record=f"question_id {qid}",
                                field="multiple_choices")
        questions[qid] = q
    task_type = data.get("task_type")
    return (task_type if isinstance(task_type, str) else None), questions


def read_annotations(path: str | Path) -> list[dict]:
    """Annotation records in file order, each checked for the fields the evaluation reads."""
    path = Path(path)
    data = load_json(path)
    if not isinstance(data, dict) or not isinstance(data.get("annotations"), list):
        raise DataError(path, "must be an object with a list under 'annotations'", field="annotations")
    seen: set = set()
    for i, ann in enumerate(data["annotations"]):
        qid = _need(path, f"annotations[{i}]", ann, "question_id", (int, str))
        rec = f"question_id {qid}"
        if qid in seen:
            raise DataError(path, "question id appears twice", record=rec, field="question_id")
        seen.add(qid)
        _need(path, rec, ann, "question_type", str)
        _need(path, rec, ann, "answer_type", str)
        answers = _need(path, rec, ann, "answers", list)
        if not answers:
            raise DataError(path, "no ground-truth answers (a test split cannot be scored locally)",
                            record=rec, field="answers")
        for j, a in enumerate(answers):
            _need(path, f"{rec} answers[{j}]", a, "answer", str)
    if not data["annotations"]:
        raise DataError(path, "no annotations", field="annotations")
    return data["annotations"]


def read_results(path: str | Path) -> dict[Any, str]:
    """Question id -> answer; a question answered twice is an error (the official code would
    silently keep the last answer)."""
    path = Path(path)
    data = load_json(path)
    if not isinstance(data, list):
        raise DataError(path, "results must be a JSON list of {\"question_id\", \"answer\"} objects")
    results: dict[Any, str] = {}
    for i, r in enumerate(data):
        qid = _need(path, f"results[{i}]", r, "question_id", (int, str))
        answer = _need(path, f"question_id {qid}", r, "answer", str)
        if qid in results:
            raise DataError(path, "answered twice", record=f"question_id {qid}", field="question_id")
        results[qid] = answer
    return results


def read_vqa_files(questions: str | Path, annotations: str | Path, results: str | Path) -> VQAFiles:
    """Read and cross-check the three files: the results must answer exactly the annotated
    questions, and every annotated question must be in the question file."""
    task_type, qs = read_questions(questions)
    anns = read_annotations(annotations)
    res = read_results(results)
    annotated = [a["question_id"] for a in anns]
    missing_q = [q for q in annotated if q not in qs]
    if missing_q:
        raise DataError(questions, f"{len(missing_q)} annotated question(s) are not in the question "
                        f"file, first {missing_q[0]!r}", record=f"question_id {missing_q[0]}")
    missing = [q for q in annotated if q not in res]
    if missing:
        raise DataError(results, f"no answer for {len(missing)} annotated question(s), first "
                        f"{missing[0]!r} (every annotated question needs one)",
                        record=f"question_id {missing[0]}")
    annotated_set = set(annotated)
    extra = [q for q in res if q not in annotated_set]
    if extra:
        raise DataError(results, f"{len(extra)} answer(s) for questions not in the annotation file, "
                        f"first {extra[0]!r}", record=f"question_id {extra[0]}")
    return VQAFiles(task_type, qs, anns, res, Path(results))


def write_vqa_results(path: str | Path, answers: dict[Any, str]) -> None:
    """Write model answers as an official results file (atomically), ready for the evaluation
    and for the VQA test-dev server: [{"question_id": ..., "answer": ...}, ...]."""
    from vlmt.io import write_json

    records = []
    for qid, answer in answers.items():
        if not isinstance(answer, str):
            raise TypeError(f"answer of question {qid!r} must be a string")
        records.append({"question_id": qid, "answer": answer})
    write_json(path, records, indent=None)
