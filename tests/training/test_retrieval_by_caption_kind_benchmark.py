"""`benchmarks/retrieval_by_caption_kind.py`: per-kind caption -> image recall that adds up to the
run's own t2i figures and to the truth oracle's."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from vlmt.tasks.retrieval_ceiling import world_ceiling
from vlmt.training.evaluate import evaluate_run
from vlmt.training.trainer import train_experiment

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "retrieval_by_caption_kind.py"


def load_benchmark():
    spec = importlib.util.spec_from_file_location("retrieval_by_caption_kind", BENCH)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, tiny_world_folder) -> Path:
    run = tmp_path_factory.mktemp("kinds") / "run"
    train_experiment("tiny", run, overrides=[f"data.root={tiny_world_folder}", "train.max_iters=30",
                                             "train.eval_every=30", "train.checkpoint_every=30"])
    return run


def test_kinds_add_up_to_the_run_and_the_oracle(tiny_run, capsys):
    bench = load_benchmark()
    out = bench.by_kind(tiny_run, "test", "last")
    kinds = out["kinds"]
    assert sum(kinds[k]["captions"] for k in ("relation", "count", "objects")) == kinds["all"]["captions"] == 40
    expected = evaluate_run(tiny_run, split="test", checkpoint="last")["retrieval"]
    oracle = world_ceiling("tiny", 0).recall["generated"]["t2i"]
    for k in (1, 5, 10):
        assert kinds["all"][f"model_r{k}"] == pytest.approx(expected[f"t2i_r{k}"], abs=0.01)
        assert kinds["all"][f"oracle_r{k}"] == pytest.approx(oracle[f"r{k}"], abs=0.01)
        weighted = sum(kinds[c][f"model_r{k}"] * kinds[c]["captions"] for c in ("relation", "count", "objects"))
        assert weighted / 40 == pytest.approx(kinds["all"][f"model_r{k}"], abs=0.05)
    assert bench.main(["--run", str(tiny_run)]) == 0
    assert "relation" in capsys.readouterr().out


def test_a_run_not_on_a_world_is_named(tmp_path, capsys):
    bench = load_benchmark()
    assert bench.main(["--run", str(tmp_path / "nothing")]) == 1
    err = capsys.readouterr().err
    assert "nothing" in err and "Traceback" not in err
