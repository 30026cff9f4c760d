"""`benchmarks/retrieval_rerank.py`'s choice of the shortlist sizes: per direction the smallest k
of the grid that meets the goal on the split it is given, sizes read as shares of a reference
split's candidates, and the two-stage matrix built from an exhaustive one."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np

from vlmt.metrics.retrieval import retrieval_metrics

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "retrieval_rerank.py"
C = 5


def load_benchmark():
    spec = importlib.util.spec_from_file_location("retrieval_rerank", BENCH)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _scores(n_img: int, seed: int, signal: float) -> np.ndarray:
    """Random scores with each caption's own image lifted by `signal`."""
    rng = np.random.default_rng(seed)
    scores = rng.normal(size=(n_img, n_img * C))
    scores[np.repeat(np.arange(n_img), C), np.arange(n_img * C)] += signal
    return scores


def test_every_pair_shortlisted_gives_the_exhaustive_recalls():
    bench = load_benchmark()
    scores = _scores(12, 0, 2.0)
    similarity = np.random.default_rng(1).normal(size=scores.shape)
    matrix, pairs = bench.offline_rerank(scores, similarity, C, scores.shape[1], scores.shape[0])
    assert pairs == 1.0
    assert retrieval_metrics(matrix, C).to_json() == retrieval_metrics(scores, C).to_json()


def test_a_first_stage_that_agrees_with_the_model_needs_the_smallest_k():
    bench = load_benchmark()
    scores = _scores(40, 2, 2.0)
    out = bench.choose_k(scores, scores.copy(), C, [1, 5, 10], bench.Goal())
    assert out["chosen"] == {"i2t": 1, "t2i": 1}
    pair = out["pair"]
    assert pair["k"] == [1, 1] and pair["i2t"]["lost"] == 0 and pair["t2i"]["lost"] == 0
    # 1 caption per image + 1 image per caption of 40 x 200 pairs: at most 3 %
    assert pair["pairs_scored"] <= 0.03 and pair["meets_goal"]


def test_the_chosen_k_is_the_smallest_of_the_grid_that_meets_the_goal():
    bench = load_benchmark()
    scores = _scores(40, 3, 2.5)
    rng = np.random.default_rng(4)
    similarity = scores + rng.normal(scale=2.0, size=scores.shape)  # a noisy first stage
    goal = bench.Goal(r1_lost=0.5, lost_share=5.0, pairs=5.0)
    grid = [1, 2, 5, 10, 20, 40]
    out = bench.choose_k(scores, similarity, C, grid, goal)
    by_k = {row["k_reference"]: row for row in out["grid"]}
    for d in ("i2t", "t2i"):
        meets = [k for k in grid if by_k[k][d]["r1_lost"] <= 0.5 and by_k[k][d]["lost_share"] <= 5.0]
        assert out["chosen"][d] == (meets[0] if meets else None)
    assert out["chosen"]["i2t"] is not None and out["chosen"]["i2t"] > 1  # the noise costs k = 1 queries
    # with a whole split as the shortlist nothing can be lost
    assert by_k[40]["t2i"]["lost"] == 0


def test_sizes_are_shares_of_the_reference_split():
    bench = load_benchmark()
    scores = _scores(40, 5, 2.0)
    out = bench.choose_k(scores, scores.copy(), C, [10, 50], bench.Goal(), reference=(400, 2000))
    assert [row["k"] for row in out["grid"]] == [[1, 1], [5, 5]]
    assert out["reference"] == [400, 2000]
    assert out["chosen"] == {"i2t": 10, "t2i": 10}  # reported on the reference split's scale


def test_no_size_meeting_the_goal_is_reported_as_none():
    bench = load_benchmark()
    scores = _scores(40, 6, 3.0)
    similarity = -scores  # a first stage that ranks the true item last
    out = bench.choose_k(scores, similarity, C, [1, 2], bench.Goal())
    assert out["chosen"] == {"i2t": None, "t2i": None}
    assert "pair" not in out


def test_the_world_it_trains_on_is_named_by_size_and_test_images(capsys):
    import pytest

    from vlmt.errors import ConfigError

    bench = load_benchmark()
    assert bench.world_root() == "world:default"
    assert bench.world_root("sharp", 1000) == "world:sharp-test1000"
    with pytest.raises(ConfigError, match="unknown world size 'huge'"):
        bench.world_root("huge")
    # a measured run keeps its own world: --size is refused with it, as a usage error
    with pytest.raises(SystemExit) as stop:
        bench.main(["--run", "somewhere", "--size", "sharp"])
    assert stop.value.code == 2 and "--size applies when training" in capsys.readouterr().err
