"""The hierarchical model end to end on the tiny world through the CLI: it trains and learns,
`vlmt evaluate run` prints every task's metrics, and a resumed run ends where an uninterrupted
one does."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from vlmt import cli
from vlmt.training import checkpoint as ckpt
from vlmt.training.build import build_parts, load_experiment

CONFIG = str(Path(__file__).resolve().parents[2] / "configs" / "tiny.yaml")
QUIET = ["--set", "train.progress=false"]
SHORT = ["--set", "tasks.vqa.iterations=100", "--set", "tasks.retrieval.iterations=100",
         "--set", "tasks.grounding.iterations=100"]  # 300 updates, 100 per task


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    torch.set_num_threads(1)
    run = tmp_path_factory.mktemp("tiny") / "run"
    assert cli.main(["train", CONFIG, "--out", str(run), *QUIET, *SHORT]) == 0
    return run


def records(run: Path, split: str) -> list[dict]:
    lines = (run / "metrics.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r["split"] == split]


def test_training_lowers_the_vqa_and_grounding_losses(trained):
    # (retrieval needs more than 100 updates on the tiny world before its loss leaves ln 2:
    # docs/hierarchical.md, "Measured")
    train = records(trained, "train")
    for task in ("vqa", "grounding"):
        losses = [r[f"{task}/loss"] for r in train if f"{task}/loss" in r]
        assert len(losses) >= 2
        assert losses[-1] < losses[0], (task, losses)


def test_vqa_beats_the_majority_answer_on_val(trained):
    cfg = load_experiment(trained / "config.yaml")
    tasks = build_parts(cfg, torch.device("cpu")).tasks
    baseline = tasks["vqa"].majority_baseline("val")["accuracy"]
    final = records(trained, "val")[-1]
    assert final["vqa/accuracy"] > baseline + 2.0, (final["vqa/accuracy"], baseline)


def test_evaluate_run_prints_each_task_s_metrics(trained, capsys):
    assert cli.main(["evaluate", "run", str(trained), "--split", "val", "--json"]) == 0
    captured = capsys.readouterr()
    result = json.loads(captured.out)
    assert set(result) == {"retrieval", "vqa", "grounding"}
    assert set(result["retrieval"]) == {"i2t_r1", "i2t_r5", "i2t_r10", "t2i_r1", "t2i_r5", "t2i_r10", "rsum",
                                        "i2t_medr", "t2i_medr", "seconds", "images"}
    assert {"accuracy", "atype/yes_no", "atype/number", "atype/other"} <= set(result["vqa"])
    assert set(result["grounding"]) == {"r1", "r5", "r10"}
    for task, metrics in result.items():
        for key, value in metrics.items():
            if key.endswith("medr"):
                assert 1 <= value <= 40
            elif key == "rsum":
                assert 0 <= value <= 600
            elif key not in ("seconds", "images"):
                assert 0 <= value <= 100, (task, key, value)
    # the best checkpoint on val reproduces the validation record that made it best
    best = ckpt.best_info(trained)
    logged = next(r for r in records(trained, "val") if r["step"] == best["step"])
    assert result["vqa"]["accuracy"] == pytest.approx(logged["vqa/accuracy"])
    assert "vqa (val)" in captured.err


def test_evaluate_run_says_which_checkpoint_judges_which_task(trained, capsys):
    assert cli.main(["evaluate", "run", str(trained), "--split", "val"]) == 0
    err = capsys.readouterr().err
    # the tiny config selects its best checkpoint on VQA: the other tasks are judged at VQA's step
    assert "checkpoint: best, step" in err and "selected on vqa/accuracy" in err
    assert "note: retrieval, grounding are evaluated at the step chosen for vqa" in err
    assert cli.main(["evaluate", "run", str(trained), "--split", "val", "--checkpoint", "last"]) == 0
    err = capsys.readouterr().err
    assert "checkpoint: last (step_" in err and "note:" not in err


def test_rerank_on_a_run_without_a_shortlist_head_is_one_line_error(trained, capsys):
    assert cli.main(["evaluate", "run", str(trained), "--rerank", "5"]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err and "tasks.retrieval has no shortlist head" in err and "shortlist_dim" in err


def test_evaluate_run_on_a_folder_that_is_not_a_run_is_one_line_error(tmp_path, capsys):
    assert cli.main(["evaluate", "run", str(tmp_path), "--json"]) == 1
    captured = capsys.readouterr()
    assert captured.out == "" and "config.yaml" in captured.err


def test_a_resumed_run_ends_with_the_same_weights(tmp_path):
    torch.set_num_threads(1)
    common = [*QUIET, "--set", "train.checkpoint_every=10", "--set", "train.eval_every=1000",
              "--set", "schedule.cycle=6"]
    whole, split = tmp_path / "whole", tmp_path / "split"
    assert cli.main(["train", CONFIG, "--out", str(whole), *common, "--set", "train.max_iters=20"]) == 0
    assert cli.main(["train", CONFIG, "--out", str(split), *common, "--set", "train.max_iters=10"]) == 0
    assert cli.main(["train", CONFIG, "--out", str(split), *common, "--set", "train.max_iters=20", "--resume"]) == 0
    a = load_file(str(ckpt.checkpoint_dir(whole, "last") / "model.safetensors"))
    b = load_file(str(ckpt.checkpoint_dir(split, "last") / "model.safetensors"))
    assert a.keys() == b.keys()
    for key in a:
        # bit for bit: a resumed run against the uninterrupted one, same machine (a promise)
        assert torch.equal(a[key], b[key]), key


def test_predictions_in_official_formats_rescore_to_the_same_metrics(trained, tmp_path, capsys):
    """`evaluate run --predictions` writes files that the standalone official evaluators score
    exactly as the run's own evaluation does."""
    from vlmt.data.synth.cache import world_dir

    out = tmp_path / "pred"
    assert cli.main(["evaluate", "run", str(trained), "--split", "val", "--json", "--predictions", str(out)]) == 0
    result = json.loads(capsys.readouterr().out)
    world = world_dir("tiny", 0)
    results = json.loads((out / "vqa_val_results.json").read_text())
    assert results and set(results[0]) == {"question_id", "answer"}
    assert cli.main(["evaluate", "vqa", "--questions", str(world / "v2_OpenEnded_mscoco_val2014_questions.json"),
                     "--annotations", str(world / "v2_mscoco_val2014_annotations.json"),
                     "--results", str(out / "vqa_val_results.json"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["overall"] == pytest.approx(result["vqa"]["accuracy"], abs=0.01)
    assert cli.main(["evaluate", "retrieval", "--scores", str(out / "retrieval_val_scores.npy"),
                     "--captions-per-image", "5", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["rsum"] == pytest.approx(result["retrieval"]["rsum"], abs=0.01)
    assert cli.main(["evaluate", "grounding", "--predictions", str(out / "grounding_val_results.json"),
                     "--annotations", str(world / "flickr30k_entities"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["r1"] == pytest.approx(result["grounding"]["r1"], abs=0.01)


def test_selecting_on_val_that_vqa_trains_on_is_refused(tmp_path, capsys):
    train_val = ["--set", "data.datasets.vqa.train_splits=[train, val]", "--set", "train.max_iters=2",
                 "--set", "train.eval_every=2", "--set", "train.checkpoint_every=2"]
    assert cli.main(["train", CONFIG, "--out", str(tmp_path / "a"), *QUIET, *train_val]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err and "which vqa trains on" in err and "train.keep_best" in err
    # the test-server setting: train on train + val, keep no best checkpoint
    assert cli.main(["train", CONFIG, "--out", str(tmp_path / "b"), *QUIET, *train_val,
                     "--set", "train.keep_best=false"]) == 0
    assert ckpt.best_info(tmp_path / "b") is None
