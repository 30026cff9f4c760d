"""`benchmarks/cross_world.py`: a run scored on its own world gives `vlmt evaluate run`'s figures,
and on another world it reads that world's text through the vocabulary it was trained with."""

from __future__ import annotations

import importlib.util
import json
import shutil
import sys
from pathlib import Path

import pytest

from vlmt.training.evaluate import evaluate_run
from vlmt.training.trainer import train_experiment

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "cross_world.py"


def load_benchmark():
    spec = importlib.util.spec_from_file_location("cross_world", BENCH)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, tiny_world_folder) -> Path:
    run = tmp_path_factory.mktemp("cross") / "run"
    train_experiment("tiny", run, overrides=[f"data.root={tiny_world_folder}", "train.max_iters=30",
                                             "train.eval_every=30", "train.checkpoint_every=30"])
    return run


def test_own_world_reproduces_evaluate_run(tiny_run, tiny_world_folder):
    bench = load_benchmark()
    row = bench.score(tiny_run, str(tiny_world_folder), "test", "last")
    assert row["own"] is True and row["trained_on"] == row["scored_on"]
    expected = evaluate_run(tiny_run, split="test", checkpoint="last")
    for task, metrics in expected.items():
        for key, value in metrics.items():
            if key != "seconds":
                assert row[f"{task}/{key}"] == pytest.approx(value, abs=1e-3), f"{task}/{key}"


def test_other_world_read_through_the_runs_vocabulary(tiny_run, tiny_world_folder, tmp_path):
    """A world whose training text has a word the run never saw builds a larger vocabulary of its
    own; the run still loads (its own vocabulary is used) and the test word counts as unknown."""
    bench = load_benchmark()
    other = tmp_path / "other"
    shutil.copytree(tiny_world_folder, other)
    for split in ("train2014", "test2015"):
        path = other / f"v2_OpenEnded_mscoco_{split}_questions.json"
        doc = json.loads(path.read_text(encoding="utf-8"))
        doc["questions"][0]["question"] = "Is the zyzzyva red?"
        path.write_text(json.dumps(doc), encoding="utf-8")
    row = bench.score(tiny_run, str(other), "test", "last")
    assert row["own"] is False
    assert row["unknown_tokens_pct"] > 0
    assert 0 <= row["vqa/accuracy"] <= 100 and 0 <= row["grounding/r1"] <= 100
    summary = bench.summarise([row, dict(row, **{"vqa/accuracy": row["vqa/accuracy"] + 2.0})])
    assert summary[0]["runs"] == 2
    assert summary[0]["vqa/accuracy"]["mean"] == pytest.approx(row["vqa/accuracy"] + 1.0, abs=0.01)
