"""Rank correlation of attention maps at 14 x 14, centre baseline, region maps."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from vlmt.metrics.attention_agreement import (
    agreement_by_threshold,
    centre_baseline,
    centre_map,
    mean_rank_correlation,
    rank_correlation,
    regions_to_map,
    resize_map,
    spearman,
)


def test_spearman_hand_worked_with_ties():
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    # x ranks 1,2,3,4; y = [1, 1, 2, 3] -> ranks 1.5,1.5,3,4: rho = 4.5 / sqrt(5 * 4.5)
    assert spearman([1, 2, 3, 4], [1, 1, 2, 3]) == pytest.approx(4.5 / np.sqrt(5 * 4.5))
    assert np.isnan(spearman([1, 1, 1], [1, 2, 3]))


def test_resize_averages_blocks_and_enlarges_coarse_maps():
    big = np.kron(np.arange(196.0).reshape(14, 14), np.ones((4, 4)))   # 56 x 56, constant 4x4 blocks
    assert np.allclose(resize_map(big), np.arange(196.0).reshape(14, 14))
    small = resize_map(np.array([[0.0, 1.0], [2.0, 3.0]]))
    assert small.shape == (14, 14)
    assert small[0, 0] == 0.0 and small[-1, -1] == 3.0


def test_maps_of_different_sizes_are_compared_at_14x14():
    human = np.kron(centre_map(14), np.ones((10, 10)))    # a 140 x 140 centre-focused map
    model = centre_map(7)                                   # a coarse 7 x 7 model map
    assert rank_correlation(model, human) > 0.9
    assert rank_correlation(-model, human) < -0.9


def test_centre_baseline_depends_only_on_distance_order():
    yy, xx = np.mgrid[0:14, 0:14] + 0.5
    gaussian = np.exp(-((yy - 7) ** 2 + (xx - 7) ** 2) / 20.0)
    assert spearman(gaussian, centre_map()) == pytest.approx(1.0)
    assert centre_baseline([gaussian, gaussian]) == pytest.approx(1.0)


@settings(max_examples=50, deadline=None)
@given(arrays(np.int64, (14, 14), elements=st.integers(0, 20)).map(lambda x: x / 20.0),
       arrays(np.int64, (14, 14), elements=st.integers(0, 20)).map(lambda x: x / 20.0))
def test_rho_is_bounded_symmetric_and_rank_only(a, b):
    if np.ptp(a) == 0 or np.ptp(b) == 0:
        return
    rho = rank_correlation(a, b)
    assert -1 - 1e-12 <= rho <= 1 + 1e-12
    assert rho == pytest.approx(rank_correlation(b, a))
    assert rank_correlation(np.exp(3 * a), b) == pytest.approx(rho)   # monotone change
    assert rank_correlation(a, a) == pytest.approx(1.0)


def test_constant_maps_are_an_error_not_a_silent_zero():
    with pytest.raises(ValueError, match="constant"):
        mean_rank_correlation([(np.ones((14, 14)), centre_map())])


def test_regions_to_map_spreads_weight_by_covered_area():
    m = regions_to_map(np.array([[0, 0, 70, 140], [70, 0, 140, 140]]), np.array([0.25, 0.75]),
                       width=140, height=140)
    assert m[:, :7].tolist() == [[0.25] * 7] * 14 and m[:, 7:].tolist() == [[0.75] * 7] * 14
    half = regions_to_map(np.array([[0, 0, 5, 10]]), np.array([1.0]), width=140, height=140)
    assert half[0, 0] == pytest.approx(0.5) and half[0, 1] == 0.0


def test_agreement_by_threshold_averages_the_pairs_at_or_below_each_threshold():
    model = [0.9, 0.5, 0.1, -0.2]
    centre = [-0.5, 0.0, 0.4, 0.9]  # each human map's rho with the centre map
    means, counts = agreement_by_threshold(model, centre, [-1.0, -0.5, 0.0, 0.5, 1.0])
    assert counts == [0, 1, 2, 3, 4]
    assert means[0] is None
    assert means[1:] == pytest.approx([0.9, 0.7, 0.5, 0.325])
    with pytest.raises(ValueError, match="one centre correlation"):
        agreement_by_threshold([0.1], [0.2, 0.3], [0.0])
