"""Shortlist-then-rerank scoring: which pairs are re-scored and how the result ranks."""

from __future__ import annotations

import numpy as np
import pytest

from vlmt.metrics.retrieval import i2t_ranks, retrieval_metrics, t2i_ranks
from vlmt.tasks.rerank import reranked_scores, shortlist_mask


def test_mask_holds_each_row_s_and_each_column_s_top_k():
    sim = np.array([[0.9, 0.1, 0.5, 0.2],
                    [0.3, 0.8, 0.0, 0.4]])
    mask = shortlist_mask(sim, 1)
    # row tops: (0,0), (1,1); column tops: (0,0), (1,1), (0,2), (1,3)
    assert mask.tolist() == [[True, False, True, False], [False, True, False, True]]
    assert shortlist_mask(sim, 10).all()  # k beyond either side: everything
    with pytest.raises(ValueError, match="k must be"):
        shortlist_mask(sim, 0)


def test_each_direction_can_have_its_own_k():
    sim = np.array([[0.9, 0.1, 0.5, 0.2],
                    [0.3, 0.8, 0.0, 0.4]])
    # each image's 3 best captions, each caption's 1 best image
    mask = shortlist_mask(sim, 3, 1)
    assert mask.tolist() == [[True, False, True, True], [True, True, False, True]]
    assert shortlist_mask(sim, 1, 1).tolist() == shortlist_mask(sim, 1).tolist()
    with pytest.raises(ValueError, match="k must be"):
        shortlist_mask(sim, 1, 0)


def test_rescored_pairs_rank_first_by_model_score_then_the_rest_by_similarity():
    sim = np.array([[0.9, 0.1, 0.5, 0.2],
                    [0.3, 0.8, 0.0, 0.4]])
    mask = np.array([[True, False, True, False], [False, False, False, True]])
    cross = np.array([-5.0, 3.0, -9.0])  # (0,0), (0,2), (1,3)
    out = reranked_scores(sim, mask, cross)
    assert list(np.argsort(-out[0])) == [2, 0, 3, 1]  # re-scored by cross, then 0.2 > 0.1
    assert list(np.argsort(-out[1])) == [3, 1, 0, 2]  # the re-scored pair beats a 0.8 similarity
    assert out[1, 3] > out[0, 1] and out[1, 3] > out[1, 1]  # lifted above every similarity, any column
    with pytest.raises(ValueError, match="re-scored pairs"):
        reranked_scores(sim, mask, cross[:2])


def test_full_shortlist_gives_exhaustive_ranks_and_a_missed_item_ranks_beyond_k():
    rng = np.random.default_rng(0)
    n, c = 12, 2
    cross = rng.normal(size=(n, n * c))
    sim = cross + rng.normal(scale=2.0, size=cross.shape)  # a noisy first stage
    everything = shortlist_mask(sim, n * c)
    full = reranked_scores(sim, everything, cross[everything])
    assert retrieval_metrics(full, c) == retrieval_metrics(cross, c)
    k = 3
    mask = shortlist_mask(sim, k)
    two_stage = reranked_scores(sim, mask, cross[mask])
    exact_i2t, got_i2t = i2t_ranks(cross, c), i2t_ranks(two_stage, c)
    exact_t2i, got_t2i = t2i_ranks(cross, c), t2i_ranks(two_stage, c)
    for i in range(n):  # an image whose own captions all missed its shortlist ranks >= k
        own = mask[i, i * c:(i + 1) * c]
        if not own.any():
            assert got_i2t[i] >= k
        elif own.all():  # every true caption re-scored: competitors are a subset of exhaustive scoring's
            assert got_i2t[i] <= exact_i2t[i]
    for j in range(n * c):
        if mask[j // c, j]:  # re-scored: never worse than exhaustive (fewer competitors)
            assert got_t2i[j] <= exact_t2i[j]
        else:
            assert got_t2i[j] >= k
    assert mask.sum() < mask.size
