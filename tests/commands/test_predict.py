"""`vlmt predict`: a tiny run trained on a small easy-VQA subset answers a question about a PNG
or JPEG, draws the attention picture, and bad input gets one line naming the file."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from vlmt.cli import main

CONFIG = {
    "data": {"type": "datasets", "root": None, "datasets": {"vqa": {}}, "families": {"vl": {"answer_more_than": 0}}},
    "model": {"type": "hierarchical", "dim": 16, "num_layers": 1, "heads": 2, "null_slots": 1,
              "fc_dropout": 0.0, "lstm_dropout": 0.0, "word_dim": 8},
    "tasks": {"vqa": {"type": "vqa", "batch_size": 16, "layer": 1, "iterations": 30, "step": 30}},
    "schedule": {"kind": "periodic", "cycle": 10},
    "train": {"seed": 0, "eval_every": 30, "checkpoint_every": 30, "log_every": 10, "threads": 1,
              "tensorboard": False, "progress": False},
}


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, Path]:
    """(run folder, converted data folder) of a 30-iteration run on 12 + 12 easy-VQA images."""
    pytest.importorskip("easy_vqa", reason="the optional extra easy-vqa (pip install 'vlmt[easyvqa]') is not installed")
    import torch

    from vlmt.data.prepare.easy_vqa import ensure_easy_vqa

    torch.set_num_threads(1)
    tmp = tmp_path_factory.mktemp("predict")
    data = ensure_easy_vqa(out=tmp / "easy_vqa", limit=12)
    config = {**CONFIG, "data": {**CONFIG["data"], "root": str(data)}}
    (tmp / "tiny.yaml").write_text(yaml.safe_dump(config))
    run = tmp / "run"
    assert main(["train", str(tmp / "tiny.yaml"), "--out", str(run)]) == 0
    return run, data


def test_answers_a_png_with_scores_and_draws_the_attention(trained, tmp_path, capsys):
    run, data = trained
    image = data / "images" / "1000003.png"  # a test image
    picture = tmp_path / "attention.png"
    capsys.readouterr()
    rc = main(["predict", str(run), "--image", str(image), "--question", "What color is the shape?",
               "--top", "3", "--json", "--attention", str(picture)])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    result = json.loads(captured.out)
    answers = json.loads((data / "easy_vqa.json").read_text())["answers"]
    assert len(result["answers"]) == 3 and result["answer"] == result["answers"][0]["answer"]
    assert all(a["answer"] in answers and 0.0 <= a["score"] <= 1.0 for a in result["answers"])
    assert [a["score"] for a in result["answers"]] == sorted((a["score"] for a in result["answers"]), reverse=True)
    assert result["words"] == ["what", "color", "is", "the", "shape"] and result["unknown_words"] == []
    weights = [r["attention"] for r in result["regions"]]
    assert len(weights) == 6 and abs(sum(weights) - 1.0) < 1e-3
    assert result["regions"][1]["box"] == [0.0, 0.0, 64.0, 64.0]
    with Image.open(picture) as im:
        assert im.format == "PNG" and im.width >= 320 and im.height >= 200
        drawn = np.asarray(im.convert("RGB"))
    assert drawn.std() > 10  # an image, not a blank canvas
    assert "Q: What color is the shape?" in captured.err


def test_a_jpeg_with_an_unknown_word_is_answered(trained, tmp_path, capsys):
    run, data = trained
    jpeg = tmp_path / "shape.jpg"
    Image.open(data / "images" / "1000000.png").convert("RGB").save(jpeg, format="JPEG")
    rc = main(["predict", str(run), "--image", str(jpeg), "--question", "is there a purple blob?", "--json"])
    out = capsys.readouterr()
    assert rc == 0, out.err
    result = json.loads(out.out)
    assert result["answer"] in ("yes", "no") or result["answers"]
    assert "purple" in result["unknown_words"] and "attention_png" not in result


@pytest.mark.parametrize("content", [None, b"\x89PNG not really"])
def test_missing_or_unreadable_image_is_one_line_naming_it(trained, tmp_path, capsys, content):
    run, _ = trained
    image = tmp_path / "broken.png"
    if content is not None:
        image.write_bytes(content)
    rc = main(["predict", str(run), "--image", str(image), "--question", "what shape is present?"])
    err = capsys.readouterr().err
    assert rc != 0 and "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "broken.png" in lines[0]


def test_run_without_a_vqa_task_is_refused_naming_its_config(tmp_path, capsys):
    run = tmp_path / "sanity_run"
    run.mkdir()
    shutil.copyfile(Path(__file__).resolve().parents[2] / "configs" / "sanity.yaml", run / "config.yaml")
    image = tmp_path / "x.png"
    Image.new("RGB", (8, 8), "white").save(image)
    rc = main(["predict", str(run), "--image", str(image), "--question", "what is it?"])
    err = capsys.readouterr().err
    assert rc != 0 and "config.yaml" in err and "no VQA task" in err and len(err.strip().splitlines()) == 1
