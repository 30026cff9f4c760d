"""Retrieval Recall@K / medr / meanr (VSE++ definitions), tie rule, folds, and the CLI."""

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from vlmt.cli import main
from vlmt.metrics.retrieval import (
    fold_metrics,
    i2t_ranks,
    rank_metrics,
    retrieval_metrics,
    t2i_ranks,
)


def _reference_ranks(scores, c):
    """Slow oracle: sort each query's candidates, best first, with competitors placed before
    the true items on equal scores (the documented tie rule); VSE++-style position lookup."""
    n_img, n_cap = scores.shape
    i2t = []
    for i in range(n_img):
        own = set(range(i * c, (i + 1) * c))
        order = sorted(range(n_cap), key=lambda j: (-scores[i, j], j in own))
        i2t.append(min(order.index(j) for j in own))
    t2i = []
    for j in range(n_cap):
        true = j // c
        order = sorted(range(n_img), key=lambda i: (-scores[i, j], i == true))
        t2i.append(order.index(true))
    return np.array(i2t), np.array(t2i)


def test_hand_worked_two_captions_per_image():
    # 3 images x 6 captions (2 per image)
    s = np.array([[9, 1, 8, 2, 0, 0],    # image 0: own captions 0,1; caption 0 is first -> rank 0
                  [5, 4, 3, 1, 0, 0],    # image 1: own 2,3; best own (3) has 5,4 above -> rank 2
                  [1, 1, 1, 1, 1, 1]],   # image 2: all tied -> 4 other captions count above
                 dtype=np.float32)
    assert i2t_ranks(s, 2).tolist() == [0, 2, 4]
    # caption 1 (image 0, score 1): image 1 beats it (4), image 2 ties (1) -> 2;
    # caption 2 (image 1, score 3): image 0 beats it (8) -> 1; caption 3: 2 > 1 and a tie -> 2
    assert t2i_ranks(s, 2).tolist() == [0, 2, 1, 2, 0, 0]
    m = retrieval_metrics(s, 2)
    assert m.i2t.r1 == pytest.approx(100 / 3) and m.i2t.r5 == 100.0
    assert m.i2t.medr == 3.0 and m.i2t.meanr == 3.0
    assert m.t2i.r1 == 50.0 and m.t2i.medr == 1.0  # median 0.5 and m.t2i.meanr == pytest.approx(1 + 5 / 6)
    assert m.rsum == pytest.approx(m.i2t.r1 + m.i2t.r5 + m.i2t.r10 + m.t2i.r1 + m.t2i.r5 + m.t2i.r10)


def test_medr_is_floor_of_median_plus_one():
    assert rank_metrics(np.array([0, 1])).medr == 1.0       # median 0.5 -> floor 0 -> 1
    assert rank_metrics(np.array([0, 3, 4, 9])).medr == 4.0  # median 3.5 -> 4
    assert rank_metrics(np.array([0, 3, 4, 9])).meanr == 5.0


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 6), st.integers(1, 3), st.data())
def test_vectorised_ranks_match_the_oracle(n_img, c, data):
    # small integer scores make ties frequent
    s = data.draw(arrays(np.int64, (n_img, n_img * c), elements=st.integers(0, 3)))
    ref_i2t, ref_t2i = _reference_ranks(s, c)
    assert i2t_ranks(s, c).tolist() == ref_i2t.tolist()
    assert t2i_ranks(s, c).tolist() == ref_t2i.tolist()


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 8), st.integers(1, 5), st.data())
def test_bounds_and_permutation_invariance(n_img, c, data):
    s = data.draw(arrays(np.float64, (n_img, n_img * c), elements=st.floats(-5, 5)))
    m = retrieval_metrics(s, c)
    for side in (m.i2t, m.t2i):
        assert 0 <= side.r1 <= side.r5 <= side.r10 <= 100
        assert 1 <= side.medr and 1 <= side.meanr
    assert m.i2t.meanr <= n_img * c - c + 1 and m.t2i.meanr <= n_img
    # relabel images (moving each image's caption block with it) and shuffle within blocks
    perm = np.array(data.draw(st.permutations(range(n_img))))
    within = np.array(data.draw(st.permutations(range(c))))
    cols = (perm[:, None] * c + within[None, :]).reshape(-1)
    m2 = retrieval_metrics(s[perm][:, cols], c)
    assert m2 == m


def test_perfect_scores_give_100_and_rank_one():
    n, c = 12, 5
    s = np.zeros((n, n * c))
    for i in range(n):
        s[i, i * c:(i + 1) * c] = 1.0
    m = retrieval_metrics(s, c)
    assert m.to_json() == {"i2t": {"r1": 100.0, "r5": 100.0, "r10": 100.0, "medr": 1.0, "meanr": 1.0},
                           "t2i": {"r1": 100.0, "r5": 100.0, "r10": 100.0, "medr": 1.0, "meanr": 1.0},
                           "rsum": 600.0}


def test_reversed_and_constant_scores_give_the_worst_ranks():
    n, c = 12, 5
    s = np.ones((n, n * c))
    for i in range(n):
        s[i, i * c:(i + 1) * c] = 0.0            # own captions scored lowest
    worst = {"i2t": {"r1": 0.0, "r5": 0.0, "r10": 0.0, "medr": n * c - c + 1.0, "meanr": n * c - c + 1.0},
             "t2i": {"r1": 0.0, "r5": 0.0, "r10": 0.0, "medr": float(n), "meanr": float(n)},
             "rsum": 0.0}
    assert retrieval_metrics(s, c).to_json() == worst
    # ties never favour the model: a constant matrix is as bad as the reversed one
    assert retrieval_metrics(np.full((n, n * c), 0.5), c).to_json() == worst


def test_folds_average_every_metric_and_ignore_cross_fold_scores():
    rng = np.random.default_rng(0)
    n, c, k = 20, 5, 4
    s = rng.normal(size=(n, n * c))
    per = [retrieval_metrics(s[f * 5:(f + 1) * 5, f * 25:(f + 1) * 25], c) for f in range(k)]
    got = fold_metrics(s, c, k)
    assert got.i2t.r1 == pytest.approx(np.mean([p.i2t.r1 for p in per]))
    assert got.t2i.medr == pytest.approx(np.mean([p.t2i.medr for p in per]))
    assert got.rsum == pytest.approx(np.mean([p.rsum for p in per]))
    s2 = s.copy()
    s2[:5, 25:] = 100.0                          # scores between fold 0 images and other folds
    assert fold_metrics(s2, c, k) == got
    assert fold_metrics(s, c, 1) == retrieval_metrics(s, c)
    with pytest.raises(ValueError, match="equal folds"):
        fold_metrics(s, c, 3)


def test_cli_json_object(tmp_path, capsys):
    rng = np.random.default_rng(1)
    s = rng.normal(size=(10, 50)).astype(np.float32)
    np.save(tmp_path / "s.npy", s)
    assert main(["evaluate", "retrieval", "--scores", str(tmp_path / "s.npy"),
                 "--captions-per-image", "5", "--folds", "2", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out) == {"i2t", "t2i", "rsum"}
    assert set(out["i2t"]) == set(out["t2i"]) == {"r1", "r5", "r10", "medr", "meanr"}
    assert out == fold_metrics(s, 5, 2).to_json()


@pytest.mark.parametrize("array, message", [
    (np.zeros((3, 10)), "does not hold 5 captions per image"),
    (np.array([[np.nan] * 5]), "not finite"),
    (np.zeros(5), "2-D"),
])
def test_cli_bad_matrix_is_one_line_error(tmp_path, capsys, array, message):
    np.save(tmp_path / "s.npy", array)
    assert main(["evaluate", "retrieval", "--scores", str(tmp_path / "s.npy"), "--json"]) == 1
    err = capsys.readouterr().err
    assert "s.npy" in err and message in err and "Traceback" not in err


def test_cli_refuses_pickled_arrays(tmp_path, capsys):
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    assert main(["evaluate", "retrieval", "--scores", str(tmp_path / "obj.npy")]) == 1
    assert "obj.npy" in capsys.readouterr().err


def test_saved_scores_evaluate_from_the_cli(tmp_path, capsys):
    from vlmt.metrics.retrieval import save_scores

    s = np.eye(4).repeat(5, axis=1)
    save_scores(tmp_path / "s.npy", s)
    assert main(["evaluate", "retrieval", "--scores", str(tmp_path / "s.npy"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["rsum"] == 600.0
