"""SVLR's multiple-choice and zero-shot evaluation from a split's columns (`MCQuestions`): the
predictions, metrics and official results file the question-by-question path gives (one
`MCQuestion` per question through `vqa_batch`, its `choices`, `answers` and types)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from vlmt.metrics.vqa import breakdown
from vlmt.metrics.vqa_multiple_choice import evaluate_multiple_choice
from vlmt.reports.predictions import write_predictions
from vlmt.tasks.base import EvalMode
from vlmt.tasks.collate import item_batches
from vlmt.tasks.svlr_text import MCQuestions
from vlmt.tasks.svlr_vqa_mc import chosen_text, official_questions, predict_choices, question_ids
from vlmt.training.build import build_parts, load_experiment

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def parts() -> Any:
    torch.set_num_threads(1)
    return build_parts(load_experiment("svlr_tiny"), CPU)


def reference_predictions(task: Any, model: Any, split: str) -> dict[int, str]:
    """question id -> chosen answer, one `MCQuestion` per question (`batch_of`, `q.choices`)."""
    questions = [task.data.vqa[split][i] for i in range(len(task.data.vqa[split]))]
    out: dict[int, str] = {}
    with EvalMode(model, task), torch.no_grad():
        for chunk in item_batches(questions, task.config.eval_batch_size, split="eval"):
            scores = task.choice_scores(model, task.batch_of(chunk).inputs)
            for q, k in zip(chunk, predict_choices(scores.float()).tolist()):
                out[q.question_id] = q.choices[k]
    return out


def reference_official(questions: Any) -> tuple[list[dict[str, Any]], dict[int, dict[str, list[str]]]]:
    """The official evaluation's annotations and choices, from each question's `MCQuestion`."""
    qs = [questions[i] for i in range(len(questions))]
    annotations = [{"question_id": q.question_id, "question_type": q.question_type, "answer_type": q.answer_type,
                    "answers": list(q.answers)} for q in qs]
    return annotations, {q.question_id: {"multiple_choices": list(q.choices)} for q in qs}


class Reference:
    """A task whose `predictions` are the question-by-question ones (for `write_predictions`)."""

    def __init__(self, task: Any):
        self.task = task

    def predictions(self, model: Any, split: str, *, device: torch.device) -> dict[int, str]:
        return reference_predictions(self.task, model, split)


def test_the_official_fields_are_the_questions_fields(parts):
    """`annotations`, `choice_lists`, `question_ids` and `choice_text` read from the columns what
    each `MCQuestion` holds, on every split of the tiny world."""
    data = parts.tasks["vqa"].data
    rng = np.random.default_rng(0)
    for split, questions in data.vqa.items():
        assert isinstance(questions, MCQuestions)
        assert official_questions(questions) == reference_official(questions)
        n = len(questions)
        rows = [*rng.integers(0, n, size=40).tolist(), n - 1, 0, n - 1]
        picked = [int(rng.integers(0, len(questions[i].choices))) for i in rows]
        assert question_ids(questions, rows) == [questions[i].question_id for i in rows]
        assert chosen_text(questions, rows, picked) == [questions[i].choices[k] for i, k in zip(rows, picked)]
        # the same from a plain list of questions (data without columns)
        as_list = [questions[i] for i in range(n)]
        assert official_questions(as_list) == official_questions(questions)
        assert chosen_text(as_list, rows, picked) == chosen_text(questions, rows, picked)


def test_the_official_fields_of_uneven_hand_made_questions(parts):
    """Questions with 1 to 4 choices, an empty choice, repeated strings and no answers."""
    data = parts.tasks["vqa"].data
    image = data.vqa["train"][0].image_id
    items = [(11, image, "what color is the ball ?", ["red", "blue ball", "", "red ball"], 1, "what color",
              "other", ["blue ball"] * 9 + ["red"]),
             (12, image, "is it ?", ["yes"], 0, "is it", "yes/no", []),
             (13, image, "why ?", ["because", "red"], 1, "why", "other", ["red", "because", "red"])]
    questions = data.assets.text.questions(items)
    assert official_questions(questions) == reference_official(questions)
    rows, picked = [0, 0, 0, 0, 1, 2, 2], [0, 1, 2, 3, 0, 1, 0]
    assert chosen_text(questions, rows, picked) == ["red", "blue ball", "", "red ball", "yes", "red", "because"]
    assert question_ids(questions, [2, 0]) == [13, 11]
    assert chosen_text(questions, [], []) == []
    with pytest.raises(IndexError, match="choice 1 of question 12, which has 1 choices"):
        questions.choice_text([0, 1], [3, 1])
    with pytest.raises(IndexError, match="question 13"):
        questions.choice_text([2], [-1])
    with pytest.raises(ValueError, match="2 rows for 1 chosen"):
        questions.choice_text([0, 1], [0])


def test_predictions_and_metrics_are_the_question_by_question_ones(parts):
    """`predictions` and `evaluate` of `svlr_vqa_mc` and `svlr_zero_shot`, on every split: the same
    answers (and order) and the same metrics as the question-by-question path; the zero-shot
    task's batches are the question batches."""
    for name in ("vqa", "zero_shot"):
        task = parts.tasks[name]
        for split, questions in task.data.vqa.items():
            got = task.predictions(parts.model, split, device=CPU)
            want = reference_predictions(task, parts.model, split)
            assert list(got.items()) == list(want.items()) and len(got) == len(questions)
            annotations, choices = reference_official(questions)
            assert task.evaluate(parts.model, split, device=CPU) == \
                breakdown(evaluate_multiple_choice(annotations, want, choices))
    task = parts.tasks["zero_shot"]
    for split, questions in task.data.vqa.items():
        chunks = list(item_batches([questions[i] for i in range(len(questions))], task.config.eval_batch_size,
                                   split="eval"))
        got = list(task.batches(split))
        assert len(got) == len(chunks)
        for batch, chunk in zip(got, chunks):
            want = task.batch_of(chunk)
            for field, value in vars(want.inputs).items():
                if isinstance(value, torch.Tensor):
                    assert torch.equal(getattr(batch.inputs, field), value), field
            assert torch.equal(batch.correct, want.correct)


def test_predictions_vary_so_the_comparison_means_something(parts):
    """The untrained model does not pick the same choice index everywhere: the answers compared
    above come from different choices of different questions."""
    task = parts.tasks["vqa"]
    split = next(s for s in task.data.vqa if s != "train")
    questions = task.data.vqa[split]
    got = task.predictions(parts.model, split, device=CPU)
    picked = {questions[i].choices.index(got[questions[i].question_id]) for i in range(len(questions))}
    assert len(picked) > 1


def test_the_official_results_file_is_the_same_byte_for_byte(parts, tmp_path: Path):
    """`write_predictions` (what `vlmt evaluate run --predictions` writes) gives the file the
    question-by-question predictions give."""
    for name in ("vqa", "zero_shot"):
        task = parts.tasks[name]
        split = next(s for s in task.data.vqa if s != "train")
        (got,) = write_predictions({name: task}, parts.model, split, tmp_path / "columns", device=CPU)
        (want,) = write_predictions({name: Reference(task)}, parts.model, split, tmp_path / "questions", device=CPU)
        assert got.name == want.name == f"{name}_{split}_results.json"
        assert got.read_bytes() == want.read_bytes()


def test_chosen_attention_is_the_question_by_question_one(parts):
    """`chosen_attention` (SVLR Table 2's attention) from the column batches: per question, the
    attention of the chosen answer over its image's regions, as the question batches give it."""
    task = parts.tasks["vqa"]
    split = next(s for s in task.data.vqa if s != "train")
    questions = [task.data.vqa[split][i] for i in range(len(task.data.vqa[split]))]
    want: dict[int, np.ndarray] = {}
    with EvalMode(parts.model, task), torch.no_grad():
        for chunk in item_batches(questions, task.config.eval_batch_size, split="eval"):
            result = task.outputs(parts.model, task.batch_of(chunk).inputs)
            picked = predict_choices(result.scores.float())
            attention = result.attention[torch.arange(len(chunk)), picked].float().numpy()
            for q, row in zip(chunk, attention):
                want[q.question_id] = row[: task.data.store.region_count(q.image_id)]
    got = task.chosen_attention(parts.model, split, device=CPU)
    assert list(got) == list(want)
    for qid, row in want.items():
        assert got[qid].dtype == row.dtype and np.array_equal(got[qid], row), qid
