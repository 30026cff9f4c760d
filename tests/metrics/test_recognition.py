"""Object / attribute / per-class recognition accuracy and the Fig. 5 frequency grid."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from vlmt.metrics.recognition import (
    attribute_accuracy,
    attribute_precision,
    frequency_grid,
    object_accuracy,
    object_accuracy_hypernym,
    object_correct,
    per_class_accuracy,
)


def test_object_accuracy_hand_worked():
    scores = np.array([[0.9, 0.1, 0.0],     # top 0, labels {0}    -> right
                       [0.2, 0.7, 0.1],     # top 1, labels {2}    -> wrong
                       [0.1, 0.2, 0.8],     # top 2, labels {0, 2} -> right (one of two names)
                       [0.5, 0.5, 0.0]])    # tie 0/1, labels {0}  -> wrong (ties count against)
    targets = [[0], [2], [0, 2], [0]]
    assert object_correct(scores, targets).tolist() == [True, False, True, False]
    assert object_accuracy(scores, targets) == 50.0
    assert per_class_accuracy(scores, targets) == {0: pytest.approx(200 / 3), 2: 50.0}


def test_hypernym_aware_object_accuracy_hand_worked():
    # classes: 0 square, 1 rectangle (hypernym of square), 2 circle, 3 ellipse (hypernym of circle)
    scores = np.array([[0.9, 0.8, 0.0, 0.0],    # square:  top square            -> right / right
                       [0.7, 0.9, 0.0, 0.0],    # square:  top rectangle         -> wrong / right
                       [0.0, 0.0, 0.2, 0.9],    # circle:  top ellipse           -> wrong / right
                       [0.0, 0.0, 0.9, 0.1],    # rectangle: top circle          -> wrong / wrong
                       [0.1, 0.9, 0.0, 0.0],    # rectangle (no hypernym in O): top rectangle -> right / right
                       [0.0, 0.9, 0.0, 0.9]])   # circle: tie rectangle/ellipse  -> wrong / wrong (ties count against)
    targets = [[0], [0], [2], [1], [1], [2]]
    hypernyms = [[1], [1], [3], [], [], [3]]
    assert object_accuracy(scores, targets) == pytest.approx(100 * 2 / 6)
    assert object_accuracy_hypernym(scores, targets, hypernyms) == pytest.approx(100 * 4 / 6)
    # a hypernym never makes a region wrong, and without hypernyms both metrics agree
    assert object_accuracy_hypernym(scores, targets, [[]] * 6) == object_accuracy(scores, targets)
    with pytest.raises(ValueError, match="one hypernym list per region"):
        object_accuracy_hypernym(scores, targets, hypernyms[:5])
    with pytest.raises(ValueError, match="outside"):
        object_accuracy_hypernym(scores, targets, [[4]] + hypernyms[1:])


def test_attribute_top_k_precision_hand_worked():
    scores = np.array([[0.9, 0.8, 0.1, 0.0],   # true {0, 2}: top-2 = {0, 1} -> 1/2
                       [0.1, 0.2, 0.3, 0.4],   # true {3}:    top-1 = {3}    -> 1
                       [0.5, 0.5, 0.5, 0.5]])  # true {1}:    all tied       -> 0 (ties count against)
    targets = [[0, 2], [3], [1]]
    assert attribute_precision(scores, targets).tolist() == [0.5, 1.0, 0.0]
    assert attribute_accuracy(scores, targets) == pytest.approx(50.0)


def test_regions_without_labels_are_refused_not_counted():
    with pytest.raises(ValueError, match="leave it out"):
        object_accuracy(np.zeros((2, 3)), [[0], []])
    with pytest.raises(ValueError, match="outside"):
        attribute_accuracy(np.zeros((1, 3)), [[3]])


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 8), st.integers(2, 6), st.data())
def test_bounds_perfect_and_permutation_invariance(n, c, data):
    scores = data.draw(arrays(np.float64, (n, c), elements=st.floats(-3, 3)))
    targets = [sorted(data.draw(st.sets(st.integers(0, c - 1), min_size=1, max_size=c))) for _ in range(n)]
    for metric in (object_accuracy, attribute_accuracy):
        value = metric(scores, targets)
        assert 0.0 <= value <= 100.0
        perm = np.array(data.draw(st.permutations(range(n))))
        assert metric(scores[perm], [targets[i] for i in perm]) == pytest.approx(value)
        # relabelling classes (permuting columns and label ids together) changes nothing
        cperm = np.array(data.draw(st.permutations(range(c))))
        inv = np.argsort(cperm)
        assert metric(scores[:, cperm], [[int(inv[t]) for t in ts] for ts in targets]) == pytest.approx(value)
    # scoring exactly the true labels highest is perfect; scoring them lowest gives the
    # closed form: object 0 unless every class is true, attribute = overlap forced by k
    perfect = np.array([[1.0 if j in ts else 0.0 for j in range(c)] for ts in targets])
    assert attribute_accuracy(perfect, targets) == 100.0
    assert object_accuracy(perfect, targets) == 100.0
    reversed_ = -perfect
    expected_obj = 100.0 * np.mean([len(ts) == c for ts in targets])
    assert object_accuracy(reversed_, targets) == pytest.approx(expected_obj)
    expected_attr = 100.0 * np.mean([max(0, 2 * len(ts) - c) / len(ts) for ts in targets])
    assert attribute_accuracy(reversed_, targets) == pytest.approx(expected_attr)


def test_frequency_grid_bins_classes_by_both_frequencies():
    base = {0: 20.0, 1: 40.0, 2: 60.0, 3: 10.0}
    model = {0: 30.0, 1: 40.0, 2: 50.0, 3: 40.0}
    vqa_freq = {0: 200, 1: 200, 2: 5, 3: 170}
    genome_freq = {0: 50, 1: 500, 2: 50, 3: 100}
    g = frequency_grid(base, model, vqa_freq, genome_freq, row_edges=[0, 160, 10**9],
                       col_edges=[0, 125, 10**9])
    assert g.counts.tolist() == [[1, 0], [2, 1]]
    # rare in Genome, common in VQA: classes 0 and 3, changes +10 and +30
    assert g.mean_change[1, 0] == 20.0 and g.baseline_mean[1, 0] == 15.0
    assert g.mean_change[0, 0] == -10.0
    assert np.isnan(g.mean_change[0, 1])
