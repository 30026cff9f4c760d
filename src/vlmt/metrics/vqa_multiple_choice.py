"""VQA v1 multiple-choice scoring (18 choices per question).

The official evaluation scores multiple choice exactly like open-ended, after one check made
when the results are loaded (`vqaTools/vqa.py`, `loadRes`): each result answer must be one of
its question's `multiple_choices`, compared as raw strings (before any cleaning or
normalisation). A result outside the choices stops the official evaluation; here it is a
`DataError` naming the question. See docs/metrics.md for the evidence and for the official
code's dependence on the question file's `task_type` spelling.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

from vlmt.errors import DataError
from vlmt.metrics.vqa import Rounding, VQAScores, evaluate_vqa


def check_choices(results: Mapping[Any, str], questions: Mapping[Any, Mapping[str, Any]], *,
                  results_path: str | Path = "<results>") -> None:
    """Raise `DataError` unless every result is, exactly, one of its question's choices."""
    for qid, answer in results.items():
        q = questions.get(qid)
        if q is None or "multiple_choices" not in q:
            raise DataError(results_path, "the question has no 'multiple_choices' in the question file",
                            record=f"question_id {qid}", field="answer")
        if answer not in q["multiple_choices"]:
            raise DataError(results_path, f"{answer!r} is not one of the question's "
                            f"{len(q['multiple_choices'])} choices", record=f"question_id {qid}",
                            field="answer")


def evaluate_multiple_choice(annotations: Sequence[Mapping[str, Any]], results: Mapping[Any, str],
                             questions: Mapping[Any, Mapping[str, Any]], *,
                             results_path: str | Path = "<results>", corrected: bool = False,
                             rounding: Rounding = "python2", ndigits: int = 2) -> VQAScores:
    """Check the choices, then score like open-ended."""
    check_choices(results, questions, results_path=results_path)
    return evaluate_vqa(annotations, results, corrected=corrected, rounding=rounding, ndigits=ndigits)


def pick_choice(scores: Sequence[float], choices: Sequence[str]) -> str:
    """The choice with the highest model score (first one on a tie): how a multiple-choice
    model turns its 18 scores into the result answer the evaluation expects."""
    if len(scores) != len(choices) or not choices:
        raise ValueError("need one score per choice")
    best = max(range(len(choices)), key=lambda i: (scores[i], -i))
    return choices[best]
