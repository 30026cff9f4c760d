"""Two-stage retrieval end to end on the tiny world: a run trained with a shortlist head is
evaluated exhaustively and by shortlist-then-rerank through `vlmt evaluate run --rerank K`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from vlmt import cli
from vlmt.metrics.retrieval import retrieval_metrics

CONFIG = str(Path(__file__).resolve().parents[2] / "configs" / "tiny.yaml")
RECALLS = ("i2t_r1", "i2t_r5", "i2t_r10", "t2i_r1", "t2i_r5", "t2i_r10", "rsum")


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("rerank") / "run"
    assert cli.main(["train", CONFIG, "--out", str(out), "--set", "train.progress=false",
                     "--set", "schedule.kind=periodic", "--set", "schedule.order=[retrieval]",
                     "--set", "tasks.retrieval.iterations=120", "--set", "train.eval_every=120",
                     "--set", "train.checkpoint_every=120", "--set", "train.log_every=20",
                     "--set", "train.best_metric=retrieval/rsum",
                     "--set", "tasks.retrieval.shortlist_dim=16"]) == 0
    return out


def evaluate(run: Path, capsys, *extra: str) -> dict:
    assert cli.main(["evaluate", "run", str(run), "--split", "test", "--json", *extra]) == 0
    return json.loads(capsys.readouterr().out)["retrieval"]


def test_the_shortlist_head_learns_alongside_retrieval(run):
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    losses = [r["retrieval/shortlist_loss"] for r in lines if "retrieval/shortlist_loss" in r]
    assert len(losses) >= 3 and losses[-1] < losses[0]


def test_a_shortlist_covering_every_pair_reproduces_exhaustive_scoring(run, capsys):
    exhaustive = evaluate(run, capsys)
    full = evaluate(run, capsys, "--rerank", "1000")
    assert full["pairs_scored"] == 1.0 and full["rerank_k"] == 1000
    assert {k: full[k] for k in RECALLS} == {k: exhaustive[k] for k in RECALLS}


def test_a_short_list_scores_fewer_pairs_and_its_predictions_hold_its_numbers(run, capsys, tmp_path):
    got = evaluate(run, capsys, "--rerank", "2", "--predictions", str(tmp_path))
    assert 0 < got["pairs_scored"] < 1
    scores = np.load(tmp_path / "retrieval_test_scores.npy")
    m = retrieval_metrics(scores, 5)
    assert (m.i2t.r1, m.t2i.r5, m.rsum) == pytest.approx((got["i2t_r1"], got["t2i_r5"], got["rsum"]))


def test_each_direction_gets_its_own_shortlist_size(run, capsys):
    same = evaluate(run, capsys, "--rerank", "4")
    split = evaluate(run, capsys, "--rerank", "4/1")
    assert split["rerank_k"] == 4 and split["rerank_k_t2i"] == 1 and "rerank_k_t2i" not in same
    assert 0 < split["pairs_scored"] < same["pairs_scored"]
    assert cli.main(["evaluate", "run", str(run), "--rerank", "4/0"]) == 1
    assert "--rerank must be >= 1, got 4/0" in capsys.readouterr().err


def test_rerank_k_without_a_shortlist_head_is_a_config_error(tmp_path, capsys):
    code = cli.main(["train", CONFIG, "--out", str(tmp_path / "bad"), "--set", "tasks.retrieval.rerank_k=5"])
    assert code == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err and "rerank_k needs shortlist_dim" in err
