"""COCO "1K" in the retrieval task's evaluation: the `fold_` keys are the mean over five folds of
n/5 images of each fold's own metrics, on a score matrix small enough to rank by hand."""

from __future__ import annotations

import numpy as np
import pytest

from vlmt.tasks.retrieval import fold_keys


def hand_made(n_images: int = 10) -> np.ndarray:
    """One caption per image; folds of two images. In folds 0, 2 and 4 every image scores its own
    caption highest; in fold 1 both images prefer the other one's caption; in fold 3 image 6 is
    right and image 7 wrong. Scores across folds are huge, so a metric that did not fold would
    rank every query last."""
    s = np.full((n_images, n_images), 9.0)
    for f in range(n_images // 2):
        a, b = 2 * f, 2 * f + 1
        s[a, a], s[a, b], s[b, a], s[b, b] = 1.0, 0.0, 0.0, 1.0  # own caption first
    s[2, 2], s[2, 3], s[3, 2], s[3, 3] = 0.0, 1.0, 1.0, 0.0      # fold 1: both swapped
    s[7, 6], s[7, 7] = 1.0, 0.5                                  # fold 3: image 7 prefers caption 6
    return s


def test_fold_numbers_are_the_mean_over_the_five_folds_counted_by_hand():
    got = fold_keys(hand_made(), captions_per_image=1)
    # image -> caption R@1 per fold: 100, 0, 100, 50, 100 -> mean 70
    assert got["fold_i2t_r1"] == pytest.approx(70.0)
    # caption -> image: fold 1 both wrong; fold 3: caption 6's own image (1.0) ties with image 7
    # (1.0), and a tie counts against the model, caption 7 is right. Per fold: 100, 0, 100, 50, 100
    assert got["fold_t2i_r1"] == pytest.approx(70.0)
    # with two candidates everything is within R@5
    assert got["fold_i2t_r5"] == got["fold_t2i_r10"] == 100.0
    # median rank per fold (1-based, floor of the median + 1): 1, 2, 1, 1 (median of ranks 0, 1 is 0.5), 1
    assert got["fold_i2t_medr"] == pytest.approx((1 + 2 + 1 + 1 + 1) / 5)
    assert got["fold_rsum"] == pytest.approx(70 + 100 + 100 + 70 + 100 + 100)
    assert got["folds"] == 5 and got["fold_images"] == 2


def test_images_past_five_equal_folds_are_left_out_and_tiny_splits_get_no_folds():
    s = hand_made(12)  # 12 images: folds of 2, the last two images are not in any fold
    s[10:, :] = -5.0
    base = fold_keys(hand_made(), captions_per_image=1)
    assert fold_keys(s, captions_per_image=1) == base
    assert fold_keys(np.eye(9), captions_per_image=1) == {}  # fewer than 2 images per fold


def test_evaluate_run_prints_a_5k_style_and_a_1k_style_line():
    from vlmt.commands.evaluate_run import metric_lines
    from vlmt.metrics.retrieval import retrieval_metrics
    from vlmt.tasks.retrieval import metric_keys

    s = hand_made()
    metrics = {**metric_keys(retrieval_metrics(s, 1)), "seconds": 0.1, "images": 10.0, **fold_keys(s, 1)}
    whole, folded = metric_lines("retrieval", "test", metrics)
    assert whole.startswith("retrieval (test, all 10 images; COCO 5K protocol): i2t_r1 ")
    assert folded.startswith("retrieval (test, mean of 5 folds of 2 images; COCO 1K protocol): i2t_r1 70 ")
    assert "fold" not in whole.split(":", 1)[1] and "images" not in folded.split(":", 1)[1]
    assert metric_lines("vqa", "val", {"accuracy": 50.0}) == ["vqa (val): accuracy 50"]
