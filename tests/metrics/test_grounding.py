"""Grounding Recall@K against union boxes, on typed Flickr30k Entities examples."""

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vlmt.data.examples import GroundedSentence, Phrase
from vlmt.errors import DataError
from vlmt.metrics.grounding import (
    box_iou,
    first_hit_rank,
    grounding_recall,
    read_grounding_predictions,
)


def _sentence():
    return GroundedSentence(
        image_id=7, sentence_index=0, sentence="A man in a red hat plays a guitar outside .",
        phrases=(
            # two boxes: the ground truth is their union (10, 10, 50, 60)
            Phrase("1", ("people",), "A man", 0, boxes=((10, 10, 30, 60), (20, 20, 50, 40))),
            Phrase("2", ("clothing",), "a red hat", 3, boxes=((12, 10, 22, 18),)),
            Phrase("3", ("instruments",), "a guitar", 7, boxes=((30, 40, 60, 70),)),
            Phrase("4", ("scene",), "outside", 9, scene=True),           # no box: excluded
        ))


def test_iou_hand_worked():
    assert box_iou([[0, 0, 10, 10]], [[5, 0, 15, 10]])[0, 0] == pytest.approx(50 / 150)
    assert box_iou([[0, 0, 10, 10]], [[20, 20, 30, 30]])[0, 0] == 0.0
    # inclusive-pixel convention: a 0..9 box is 10 pixels wide
    assert box_iou([[0, 0, 9, 9]], [[0, 0, 9, 4]], pixel_offset=1)[0, 0] == pytest.approx(0.5)


def test_recall_at_k_uses_union_box_and_skips_boxless_phrases():
    preds = {
        (7, 0, "1"): np.array([[10, 10, 50, 60]]),                         # union box -> hit at 0
        (7, 0, "2"): np.array([[100, 100, 120, 120]] * 3 + [[12, 10, 22, 18]]),  # hit at rank 3
        (7, 0, "3"): np.array([[0, 0, 5, 5]] * 12 + [[30, 40, 60, 70]]),       # hit at 12: miss @10
    }
    m = grounding_recall([_sentence()], preds)
    assert m.overall.phrases == 3
    assert m.overall.r1 == pytest.approx(100 / 3)
    assert m.overall.r5 == pytest.approx(200 / 3)
    assert m.overall.r10 == pytest.approx(200 / 3)
    assert set(m.per_phrase_type) == {"people", "clothing", "instruments"}
    assert m.per_phrase_type["clothing"].to_json() == {"r1": 0.0, "r5": 100.0, "r10": 100.0, "phrases": 1}
    # only one of the two boxes is not enough when it covers less than half the union
    only_first = {**preds, (7, 0, "1"): np.array([[20, 20, 50, 40]])}
    assert grounding_recall([_sentence()], only_first).overall.r1 == 0.0


def test_iou_exactly_half_counts_as_correct():
    s = GroundedSentence(1, 0, "a box", (Phrase("9", ("other",), "a box", 0, boxes=((0, 0, 10, 10),)),))
    assert grounding_recall([s], {(1, 0, "9"): np.array([[0, 0, 10, 5]])}).overall.r1 == 100.0
    assert grounding_recall([s], {(1, 0, "9"): np.array([[0, 0, 10, 4.99]])}).overall.r1 == 0.0


def test_missing_prediction_is_an_error_naming_the_phrase():
    with pytest.raises(DataError, match="image 7 sentence 0 entity 3"):
        grounding_recall([_sentence()], {(7, 0, "1"): np.zeros((1, 4)), (7, 0, "2"): np.zeros((1, 4))})


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 50), st.integers(0, 50), st.integers(1, 30), st.integers(1, 30)),
                min_size=1, max_size=6),
       st.data())
def test_bounds_monotone_in_k_and_perfect_boxes(gt_boxes, data):
    phrases = tuple(Phrase(str(i), ("t",), "p", 0, boxes=((x, y, x + w, y + h),))
                    for i, (x, y, w, h) in enumerate(gt_boxes))
    sent = GroundedSentence(3, 1, "p", phrases)
    preds = {}
    for i in range(len(gt_boxes)):
        n = data.draw(st.integers(0, 12))
        preds[(3, 1, str(i))] = np.array(
            [[a, b, a + c, b + d] for a, b, c, d in data.draw(st.lists(
                st.tuples(st.integers(0, 50), st.integers(0, 50), st.integers(1, 30), st.integers(1, 30)),
                min_size=n, max_size=n))], dtype=float).reshape(-1, 4)
    m = grounding_recall([sent], preds).overall
    assert 0 <= m.r1 <= m.r5 <= m.r10 <= 100
    perfect = {k: np.array([phrases[int(k[2])].ground_truth_box]) for k in preds}
    assert grounding_recall([sent], perfect).overall.r1 == 100.0
    # putting the true box last among 10 decoys: found at rank 10 -> misses R@10
    far = [[1000, 1000, 1001, 1001]] * 10
    last = {k: np.array(far + [list(phrases[int(k[2])].ground_truth_box)]) for k in preds}
    assert grounding_recall([sent], last).overall.to_json() == {"r1": 0.0, "r5": 0.0, "r10": 0.0,
                                                                "phrases": len(gt_boxes)}


def test_read_predictions_file(tmp_path):
    path = tmp_path / "p.json"
    path.write_text(json.dumps({"7": {"0": {"1": [[10, 10, 50, 60], [0, 0, 1, 1]]}}}))
    preds = read_grounding_predictions(path)
    assert list(preds) == [(7, 0, "1")] and preds[(7, 0, "1")].shape == (2, 4)
    assert first_hit_rank(preds[(7, 0, "1")], (10, 10, 50, 60)) == 0
    for bad, message in [({"x": {}}, "not an integer"),
                         ({"7": {"0": {"1": [[1, 2, 3]]}}}, "box 0 must be 4 finite numbers"),
                         ({"7": {"0": {"1": [[5, 5, 1, 1]]}}}, "x2 < x1"),
                         ([], "must be an object")]:
        path.write_text(json.dumps(bad))
        with pytest.raises(DataError, match=message):
            read_grounding_predictions(path)


def test_written_predictions_read_back(tmp_path):
    from vlmt.metrics.grounding import write_grounding_predictions

    preds = {(7, 0, "1"): np.array([[10.0, 10, 50, 60]]), (7, 2, "5"): np.zeros((0, 4))}
    write_grounding_predictions(tmp_path / "p.json", preds)
    back = read_grounding_predictions(tmp_path / "p.json")
    assert set(back) == set(preds)
    assert np.array_equal(back[(7, 0, "1")], preds[(7, 0, "1")])


def test_any_box_protocol_is_an_explicit_option():
    preds = {(7, 0, "1"): np.array([[20, 20, 50, 40]]), (7, 0, "2"): np.array([[12, 10, 22, 18]]),
             (7, 0, "3"): np.array([[30, 40, 60, 70]])}
    assert grounding_recall([_sentence()], preds).overall.r1 == pytest.approx(200 / 3)
    assert grounding_recall([_sentence()], preds, any_box=True).overall.r1 == 100.0
