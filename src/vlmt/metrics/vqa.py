"""Official VQA accuracy (open-ended and multiple-choice, VQA v1/v2), reproduced bit for bit.

Reference: GT-Vision-Lab/VQA, `PythonEvaluationTools/vqaEvaluation/vqaEval.py` (2021 version,
"Fixed processing answers bug") and `PythonHelperTools/vqaTools/vqa.py`. Our own code, written
from what that code does; docs/metrics.md lists each behaviour that differs from the published
description, with a worked example and a test.

Per question: the 10 ground-truth records are taken one at a time out of the set; for each, the
result scores min(1, matches among the other 9 / 3); the question scores the mean of the 10.
Normalisation (`vlmt.data.answers.normalize_answer`) is applied to the result *and* the ground
truth only when the ground-truth answers are not all identical; when they all agree, the result
must equal them exactly (after newline/tab cleaning and strip), case and punctuation included.
Totals are plain left-to-right float sums in annotation order and are rounded like Python 2
(half away from zero) to 2 decimals.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Literal, Mapping, Sequence

from vlmt.data.answers import clean_whitespace, normalize_answer
from vlmt.metrics.rounding import round_half_away, round_half_even

Rounding = Literal["python2", "python3"]


@dataclass(frozen=True)
class VQAScores:
    """Accuracies in percent, rounded as requested; `per_question` holds every question's
    rounded accuracy (the official `evalQA`)."""

    overall: float
    per_answer_type: dict[str, float]
    per_question_type: dict[str, float]
    per_question: dict[Any, float]

    def to_json(self) -> dict:
        """The object `vlmt evaluate vqa --json` prints, keys named as the official evaluation."""
        return {
            "overall": self.overall,
            "perAnswerType": dict(self.per_answer_type),
            "perQuestionType": dict(self.per_question_type),
        }


class _NotText(TypeError):
    """An answer that is not a string: the caller falls back to the general path."""


class _Answers(dict):
    """Answer string -> (whitespace-cleaned, normalised), each distinct string worked out once:
    the ten annotators' answers repeat heavily, within and across questions."""

    def __init__(self, corrected: bool) -> None:
        super().__init__()
        self.corrected = corrected

    def __missing__(self, text: object) -> tuple[str, str]:
        if not isinstance(text, str):
            raise _NotText
        cleaned = clean_whitespace(text)
        entry = (cleaned, normalize_answer(cleaned, corrected=self.corrected))
        self[text] = entry
        return entry


# What `question_accuracy` reuses from one call to the next; emptied when it grows past the size
# below, so a long-running server keeps a bounded memory.
_SHARED_ANSWERS = {False: _Answers(False), True: _Answers(True)}
_SHARED_ANSWERS_MAX = 1 << 14


def _as_records(answers: Sequence[str | Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Ground-truth answers as official-style records. Plain strings get distinct `answer_id`s,
    as in the official files, so that no two records compare equal."""
    records = []
    for i, a in enumerate(answers):
        records.append({"answer": a, "answer_id": i + 1} if isinstance(a, str) else dict(a))
    return records


def question_accuracy(result: str, answers: Sequence[str | Mapping[str, Any]], *,
                      corrected: bool = False) -> float:
    """Accuracy of one result answer against one question's ground truth, in [0, 1], unrounded.

    `answers` are the annotators' answers as strings or as the official records
    ({"answer", "answer_confidence", "answer_id"}). As in the official code, "the other
    answers" of a record are the records that differ from it as a whole, so records identical
    in every field leave each other out together. `corrected=True` normalises always (also when
    the annotators agree) and uses the corrected normalisation.
    """
    cache = _SHARED_ANSWERS[bool(corrected)]
    if len(cache) > _SHARED_ANSWERS_MAX:
        cache.clear()
    return _accuracy(result, answers, bool(corrected), cache)


def _accuracy(result: str, answers: Sequence[str | Mapping[str, Any]], corrected: bool,
              cache: _Answers) -> float:
    """`question_accuracy` with the answers' normalisation looked up in `cache`.

    Fast path: the records are known to be pairwise different (plain strings, which get
    distinct ids, or records whose `answer_id`s are all different), so holding a record out
    removes exactly itself. With m records matching the result, a matching record then scores
    min(1, (m-1)/3) and any other min(1, m/3): all 0 when m = 0, all 1 when m >= 4 (both sums
    exact), else the n values are added in record order as before. Anything else (records
    without distinct ids, mixed strings and records, answers that are not strings) takes the
    general leave-one-out loop.
    """
    if not answers:
        raise ValueError("a question needs at least one ground-truth answer")
    try:
        n = len(answers)
        if isinstance(answers[0], str):
            texts: Sequence[Any] = answers
        else:
            texts = [a["answer"] for a in answers]  # type: ignore[index]
            if len({a["answer_id"] for a in answers}) != n:  # type: ignore[index]
                return _general_accuracy(result, answers, corrected)
        res_entry = cache[result]
        if texts.count(texts[0]) == n:        # the same string n times: one look-up
            entries = [cache[texts[0]]] * n
        else:
            entries = [cache[t] for t in texts]
    except (TypeError, KeyError, IndexError, AttributeError):
        return _general_accuracy(result, answers, corrected)
    k = 1 if corrected or entries.count(entries[0]) != n else 0  # normalise unless unanimous
    res = res_entry[k]
    values = [e[k] for e in entries]
    m = values.count(res)
    if m == 0:
        return 0.0
    if m >= 4:
        return 1.0
    hit, miss = min(1.0, (m - 1) / 3.0), min(1.0, m / 3.0)
    total = 0.0
    for v in values:
        total += hit if v == res else miss
    return total / n


def _general_accuracy(result: str, answers: Sequence[str | Mapping[str, Any]], corrected: bool) -> float:
    """The leave-one-out loop over whole records, for any records."""
    records = _as_records(answers)
    for r in records:
        r["answer"] = clean_whitespace(r["answer"])
    res = clean_whitespace(result)
    if corrected or len({r["answer"] for r in records}) > 1:
        for r in records:
            r["answer"] = normalize_answer(r["answer"], corrected=corrected)
        res = normalize_answer(res, corrected=corrected)
    per_record = []
    for held_out in records:
        matches = sum(1 for r in records if r != held_out and r["answer"] == res)
        per_record.append(min(1.0, matches / 3.0))
    return _plain_sum(per_record) / len(per_record)


def _plain_sum(values: Sequence[float]) -> float:
    """Left-to-right float sum, as Python 2's `sum` (Python >= 3.12's `sum` compensates and can
    differ in the last bit, which can move a rounding tie)."""
    total = 0.0
    for v in values:
        total += v
    return total


def _percent(values: Sequence[float], rounder: Callable[[float, int], float], ndigits: int) -> float:
    return rounder(100 * _plain_sum(values) / len(values), ndigits)


def evaluate_vqa(annotations: Sequence[Mapping[str, Any]], results: Mapping[Any, str], *,
                 corrected: bool = False, rounding: Rounding = "python2",
                 ndigits: int = 2) -> VQAScores:
    """Score `results` (question id -> answer) against official annotation records.

    Every annotation needs `question_id`, `question_type`, `answer_type` and `answers`; every
    annotated question needs a result (the official code requires exactly that set of ids).
    Questions are visited in annotation order, which fixes the order of the float sums. Each
    distinct answer string is normalised once, and each distinct accuracy rounded once.
    """
    if rounding not in ("python2", "python3"):
        raise ValueError(f"rounding must be 'python2' or 'python3', not {rounding!r}")
    rounder = round_half_away if rounding == "python2" else round_half_even
    if not annotations:
        raise ValueError("no annotations to evaluate")
    corrected = bool(corrected)
    cache = _Answers(corrected)
    rounded: dict[float, float] = {}
    accs: list[float] = []
    by_qtype: dict[str, list[float]] = {}
    by_atype: dict[str, list[float]] = {}
    per_question: dict[Any, float] = {}
    for ann in annotations:
        qid = ann["question_id"]
        acc = _accuracy(results[qid], ann["answers"], corrected, cache)
        accs.append(acc)
        by_qtype.setdefault(ann["question_type"], []).append(acc)
        by_atype.setdefault(ann["answer_type"], []).append(acc)
        r = rounded.get(acc)
        if r is None:
            r = rounded[acc] = rounder(100 * acc, ndigits)
        per_question[qid] = r
    return VQAScores(
        overall=_percent(accs, rounder, ndigits),
        per_answer_type={k: _percent(v, rounder, ndigits) for k, v in by_atype.items()},
        per_question_type={k: _percent(v, rounder, ndigits) for k, v in by_qtype.items()},
        per_question=per_question,
    )


def metric_key(text: str) -> str:
    """A question or answer type as one token of a metric key: runs of spaces and slashes become one
    underscore ("yes/no" -> "yes_no", "what color is the" -> "what_color_is_the")."""
    return "_".join(text.replace("/", " ").split())


def breakdown(scores: VQAScores) -> dict[str, float]:
    """The metrics of a VQA evaluation under the keys every VQA task reports: `accuracy`, then
    `atype/<answer type>` and `qtype/<question type>` (types left empty in the annotations are
    passed over)."""
    out = {"accuracy": scores.overall}
    out.update({f"atype/{metric_key(t)}": v for t, v in sorted(scores.per_answer_type.items()) if metric_key(t)})
    out.update({f"qtype/{metric_key(t)}": v for t, v in sorted(scores.per_question_type.items()) if metric_key(t)})
    return out
