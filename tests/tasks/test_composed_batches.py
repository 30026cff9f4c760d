"""The composed tasks' batches from a split's columns (`RecognitionColumns`, `MCBatches`) are the
batches built from the regions and questions themselves (`recognition_batch`, `vqa_batch` and the
pictures in first-appearance order): the same tensors bit for bit, in training and evaluation."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import pytest
import torch

from vlmt.models.heads.word_region import recognition_scores
from vlmt.tasks.base import EvalMode
from vlmt.tasks.collate import index_batches, padded_regions
from vlmt.tasks.composed import ComposedRecognitionBatch
from vlmt.tasks.svlr_batches import recognition_batch
from vlmt.tasks.svlr_data import GenomeRegion
from vlmt.tasks.svlr_recognition import SVLRRecognitionTask
from vlmt.tasks.svlr_text import MCQuestions
from vlmt.tasks.svlr_vqa_mc import predict_choices
from vlmt.training.build import build_parts, load_experiment

MC = "tasks.mc={type: composed_vqa_mc, layer: 2, batch_size: 8, fusion_dim: 16}"


@pytest.fixture(scope="module")
def parts() -> Any:
    return build_parts(load_experiment("composed_tiny", [MC]), torch.device("cpu"))


def reference_recognition(task: Any, regions: Sequence[GenomeRegion]) -> ComposedRecognitionBatch:
    """The batch as built region by region: `recognition_batch`, the pictures in the order their
    regions first appear, and (picture, row) of each region."""
    base = recognition_batch(task.data, regions, use_hypernyms=task.config.use_hypernyms, extra_columns=True)
    images = list(dict.fromkeys(r.image_id for r in regions))
    padded = padded_regions(task.data.store, images)
    where = {image: b for b, image in enumerate(images)}
    pick = torch.tensor([[where[r.image_id], r.row] for r in regions], dtype=torch.long)
    return ComposedRecognitionBatch(base, padded["region_features"], padded["region_mask"], pick)


def tensors(batch: Any, prefix: str = "") -> dict[str, torch.Tensor | None]:
    """Every tensor field of a batch (nested dataclasses flattened), None fields kept."""
    out: dict[str, torch.Tensor | None] = {}
    for name, value in vars(batch).items():
        if isinstance(value, torch.Tensor) or value is None:
            out[prefix + name] = value
        elif hasattr(value, "__dict__"):
            out.update(tensors(value, f"{prefix}{name}."))
    return out


def assert_same(got: Any, want: Any) -> None:
    a, b = tensors(got), tensors(want)
    assert a.keys() == b.keys()
    for name, w in b.items():
        g = a[name]
        assert (g is None) == (w is None), name
        if w is not None and g is not None:
            assert g.dtype == w.dtype and g.shape == w.shape, name
            assert torch.equal(g, w), name


def test_composed_recognition_batches_equal_the_region_batches(parts):
    """Training batches (shuffled, resumed), every evaluation batch of every split and odd row
    lists (a region twice, one region) match the region-by-region batch."""
    task = parts.tasks["recognition"]
    pictures = 0
    for split, regions in task.data.genome.items():
        n = len(regions)
        size = task.config.batch_size if split == "train" else task.config.eval_batch_size
        rows = list(index_batches(n, size, split="eval", seed=0)) if split != "train" else []
        stream = task.batches(split)
        order = index_batches(n, size, split=split, seed=task.seed)
        for _ in range(4 if split == "train" else len(rows)):
            want = [regions[i] for i in next(order)]
            got = next(stream)
            assert_same(got, reference_recognition(task, want))
            pictures = max(pictures, len(got.image_features))
        for odd in ([0], [n - 1, 0, n - 1], list(range(n - 1, -1, -3))):
            assert_same(task.batch(split, odd), reference_recognition(task, [regions[i] for i in odd]))
    resumed = task.batches("train", start=5)
    order = index_batches(len(task.data.genome["train"]), task.config.batch_size, split="train", seed=task.seed,
                          start=5)
    assert_same(next(resumed), reference_recognition(task, [task.data.genome["train"][i] for i in next(order)]))
    assert pictures > 1  # batches span several pictures, so the picture order is exercised


def test_recognition_batches_come_from_the_columns_only(parts):
    """No region-by-region `_collate` is left for training to skip: the composed task would have
    inherited SVLR's, which builds a `RecognitionBatch` its `forward` cannot read. Both tasks batch
    from the split's columns (the equality with the region batches is tested above and in
    tests/tasks/test_svlr_batches.py)."""
    task = parts.tasks["recognition"]
    assert not hasattr(SVLRRecognitionTask, "_collate") and not hasattr(task, "_collate")
    assert isinstance(next(task.batches("train")), ComposedRecognitionBatch)


def test_composed_recognition_scores_every_region_of_a_split_in_order(parts):
    """`scores` (evaluation) reads the column batches: the scores of the region-by-region batches."""
    task = parts.tasks["recognition"]
    split = next(s for s in task.data.genome if s != "train")
    regions = task.data.genome[split]
    obj, atr, listed = task.scores(parts.model, split, device=torch.device("cpu"))
    assert len(obj) == len(atr) == len(listed) == len(regions)
    want_o, want_a = [], []
    with EvalMode(parts.model, task), torch.no_grad():
        for rows in index_batches(len(regions), task.config.eval_batch_size, split="eval", seed=0):
            o, a = recognition_scores(parts.model.alignment,
                                      task._rows(parts.model, reference_recognition(task, [regions[i] for i in rows])))
            want_o.append(o.numpy())
            want_a.append(a.numpy())
    assert np.array_equal(obj, np.concatenate(want_o)) and np.array_equal(atr, np.concatenate(want_a))


def test_composed_multiple_choice_batches_equal_the_question_batches(parts):
    """Training batches of composed_vqa_mc and evaluation batches of it and of composed_zero_shot,
    on every split, match `batch_of` (`vqa_batch` and the tokens of each question)."""
    mc, zero_shot = parts.tasks["mc"], parts.tasks["zero_shot"]
    for split, questions in mc.data.vqa.items():
        assert isinstance(questions, MCQuestions)
        n = len(questions)
        if split == "train":
            stream = mc.batches(split)
            order = index_batches(n, mc.config.batch_size, split=split, seed=mc.seed)
            for _ in range(4):
                assert_same(next(stream), mc.batch_of([questions[i] for i in next(order)]))
        for task in (mc, zero_shot):
            chunks = list(index_batches(n, task.config.eval_batch_size, split="eval", seed=0))
            got = list(task.batches(split)) if task is zero_shot or split != "train" else \
                [task.batch_of_rows(split, questions, rows) for rows in chunks]
            assert len(got) == len(chunks)
            for batch, rows in zip(got, chunks):
                assert_same(batch, task.batch_of([questions[i] for i in rows]))
        for rows in ([0], [n - 1, 0, n - 1]):
            assert_same(mc.batch_of_rows(split, questions, rows), mc.batch_of([questions[i] for i in rows]))


def test_composed_multiple_choice_tokens_of_questions_without_words(parts):
    """A question with no token the encoder reads gets <unk>, as `batch_of` gives it; uneven choices."""
    mc = parts.tasks["mc"]
    image = mc.data.vqa["train"][0].image_id
    items = [(1, image, "what color is the ball ?", ["red", "blue ball", "", "two big dogs"], 1, "what color",
              "other", ["blue ball"] * 10),
             (2, image, "?", ["yes"], 0, "none", "yes/no", ["yes"] * 10),
             (3, image, "why is the zebra xyzzy here ?", ["because", "red"], 1, "why", "other", ["red"] * 10)]
    questions = mc.data.assets.text.questions(items)
    for rows in ([0, 1, 2], [1], [2, 0], [1, 1]):
        got = mc.batch_of_rows("hand-made", questions, rows)
        assert_same(got, mc.batch_of([questions[i] for i in rows]))
    assert mc.batch_of_rows("hand-made", questions, [1]).inputs.lengths.tolist() == [1]


def test_composed_multiple_choice_predictions_are_the_question_batches(parts):
    """`predictions` (evaluation) from the column batches picks what the question batches pick."""
    cpu = torch.device("cpu")
    for task in (parts.tasks["mc"], parts.tasks["zero_shot"]):
        split = next(s for s in task.data.vqa if s != "train")
        questions = task.data.vqa[split]
        want: dict[int, str] = {}
        with EvalMode(parts.model, task), torch.no_grad():
            for rows in index_batches(len(questions), task.config.eval_batch_size, split="eval", seed=0):
                chunk = [questions[i] for i in rows]
                picked = predict_choices(task.choice_scores(parts.model, task.batch_of(chunk).inputs).float())
                want.update((q.question_id, q.choices[k]) for q, k in zip(chunk, picked.tolist()))
        got = task.predictions(parts.model, split, device=cpu)
        assert list(got.items()) == list(want.items()) and len(got) == len(questions)
