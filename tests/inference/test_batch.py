"""Batches in the Python API: several questions of one picture, several pictures, or both, give
what one call per (picture, question) gives, with each picture's regions found once."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import vlmt
from vlmt.cli import main
from vlmt.errors import InvalidInput

QUESTIONS = ["what color is the square?", "how many circles are there?", "what shape is the zorblax?"]


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    """configs/tiny.yaml trained briefly on the tiny world, exported and loaded."""
    torch.set_num_threads(1)
    tmp = tmp_path_factory.mktemp("batch")
    assert main(["train", "tiny", "--out", str(tmp / "run"), "--set", "train.max_iters=30",
                 "--set", "train.progress=false"]) == 0
    assert main(["export", str(tmp / "run"), "--out", str(tmp / "model"), "--metrics", "none"]) == 0
    return vlmt.load(tmp / "model")


@pytest.fixture(scope="module")
def pictures(model) -> list[Path]:
    from vlmt.config import from_dict
    from vlmt.serve.gallery import find_gallery

    return [im.path for im in find_gallery(from_dict(model.info["experiment"]).data, limit=4).images]


def close(one: list[dict], batched: list[dict]) -> bool:
    """Two lists of answers: the same answers in the same order, scores within float rounding."""
    return [a["answer"] for a in one] == [a["answer"] for a in batched] and \
        np.allclose([a["score"] for a in one], [a["score"] for a in batched], atol=1e-5)


def same(one: dict, batched: dict) -> None:
    assert [a["answer"] for a in one["answers"]] == [a["answer"] for a in batched["answers"]]
    np.testing.assert_allclose([a["score"] for a in one["answers"]], [a["score"] for a in batched["answers"]],
                               atol=1e-5)
    np.testing.assert_allclose(one["region_attention"], batched["region_attention"], atol=1e-5)
    np.testing.assert_allclose(one["word_attention"], batched["word_attention"], atol=1e-5)
    np.testing.assert_array_equal(one["boxes"], batched["boxes"])
    assert one["unknown_words"] == batched["unknown_words"] and one["warnings"] == batched["warnings"]


def test_every_question_of_every_picture_is_answered_as_one_call_answers_it(model, pictures):
    grid = model.details("answer", pictures, QUESTIONS, top_k=4)
    assert len(grid) == len(pictures) and all(len(row) == len(QUESTIONS) for row in grid)
    for picture, row in zip(pictures, grid):
        for question, batched in zip(QUESTIONS, row):
            assert batched["question"] == question and batched["task"] == "vqa"
            same(model.details("answer", picture, question, top_k=4), batched)
    assert grid[0][2]["unknown_words"] == ["zorblax"]
    assert any("zorblax" in w for w in grid[0][2]["warnings"])


def test_one_picture_several_questions_or_several_pictures_one_question(model, pictures):
    by_question = model.answer(pictures[0], QUESTIONS, top_k=2)
    assert [len(a) for a in by_question] == [2, 2, 2]
    assert close(model.answer(pictures[0], QUESTIONS[1], top_k=2), by_question[1])
    by_picture = model.answer(pictures, QUESTIONS[0], top_k=2)
    assert len(by_picture) == len(pictures)
    assert close(model.answer(pictures[-1], QUESTIONS[0], top_k=2), by_picture[-1])


def test_given_regions_batch_as_a_list_of_features_and_boxes(model, pictures):
    regions = [model.regions(p)[:2] for p in pictures[:2]]
    batched = model.answer(question=QUESTIONS[0], regions=regions, top_k=3)
    assert len(batched) == 2
    features, boxes = regions[1]
    assert close(model.answer(question=QUESTIONS[0], regions=features, boxes=boxes, top_k=3), batched[1])


def test_each_distinct_picture_goes_through_the_region_cnn_once(model, pictures, monkeypatch):
    seen: list[int] = []
    extract = model.extractor.extract

    def counted(images, boxes, **kw):
        seen.append(len(images))
        return extract(images, boxes, **kw)

    monkeypatch.setattr(model.extractor, "extract", counted)
    calls = [{"image": p, "question": q} for q in QUESTIONS for p in pictures]  # each picture three times
    results = model.details_many("answer", calls, top_k=1)
    assert len(results) == len(calls) and sum(seen) == len(pictures) and len(seen) == 1
    assert [r["question"] for r in results] == [c["question"] for c in calls]


def test_the_pictures_of_a_batch_go_through_the_detector_together(model, pictures, monkeypatch):
    """One detector pass for a batch's distinct pictures, with the boxes each picture gets alone."""
    assert model.detector is not None and model.preprocess.get("regions") == "detector"
    alone = [model.regions(p)[1] for p in pictures]
    seen: list[int] = []
    detect_batch = model.detector.detect_batch

    def counted(images, **kw):
        seen.append(len(images))
        return detect_batch(images, **kw)

    monkeypatch.setattr(model.detector, "detect_batch", counted)
    results = model.details_many("answer", [{"image": p, "question": QUESTIONS[0]} for p in pictures * 2], top_k=1)
    assert seen == [len(pictures)]
    for box, result in zip(alone * 2, results):
        np.testing.assert_array_equal(box, result["boxes"])


def test_a_bad_batch_is_a_clear_error(model, pictures, tmp_path):
    with pytest.raises(InvalidInput, match="at least one picture"):
        model.answer([], QUESTIONS[0])
    with pytest.raises(InvalidInput, match="call 1: question: no word"):
        model.details_many("answer", [{"image": pictures[0], "question": "what?"},
                                      {"image": pictures[0], "question": "   "}], batch_size=1)
    with pytest.raises(vlmt.errors.VlmtError, match="no such image file"):
        model.answer([pictures[0], tmp_path / "missing.png"], QUESTIONS[0])
