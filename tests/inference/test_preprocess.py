"""One path for every picture: a model records how its training regions were made (`preprocess` in
config.json) and makes a new picture's regions the same way, so a test picture uploaded as a PNG is
answered as `vlmt evaluate run` answers it; a model trained on stored features refuses a picture
and answers from given regions; a picture far from the training pictures is answered with a warning."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import vlmt
from vlmt.cli import main
from vlmt.data.datasets.sources import resolve_source
from vlmt.errors import InvalidInput
from vlmt.training.build import rebuild

ITERS = ["--set", "train.max_iters=60", "--set", "train.eval_every=60", "--set", "train.checkpoint_every=60",
         "--set", "train.progress=false"]


@pytest.fixture(scope="module")
def detector_model(tmp_path_factory) -> tuple[Path, Path]:
    """configs/tiny.yaml on the tiny world whose regions come from the detector, exported."""
    torch.set_num_threads(1)
    tmp = tmp_path_factory.mktemp("preprocess")
    run, model = tmp / "run", tmp / "model"
    assert main(["train", "tiny", "--out", str(run), "--set", "data.root=world:tiny:0:detector", *ITERS]) == 0
    assert main(["export", str(run), "--out", str(model), "--metrics", "none"]) == 0
    return run, model


def test_the_model_folder_records_how_its_regions_were_made(detector_model):
    _, model = detector_model
    info = json.loads((model / "config.json").read_text())
    pre = info["preprocess"]
    assert pre["regions"] == "detector" and pre["picture"] == {"width": 128, "height": 128}
    assert pre["detector"]["boxes_per_image"] > 0 and "region_extractor" in pre["features"]
    assert set(pre["tokenizer"]) >= {"vqa", "caption"}
    assert (model / "detector" / "detector.safetensors").is_file()


def test_every_test_picture_uploaded_as_png_is_answered_as_evaluate_run_answers_it(detector_model, tmp_path):
    run, model = detector_model
    _, parts = rebuild(run, "best", device="cpu")
    task = parts.tasks["vqa"]
    predicted = task.predict(parts.model, "test", device=torch.device("cpu"))  # the evaluation path
    loaded = vlmt.load(model)
    examples = task._split("test")["examples"]
    assert len(examples) >= 20  # every test question of the tiny world
    for e in examples:
        png = tmp_path / f"{e.image_id}.png"
        if not png.exists():  # a fresh PNG of the picture, as a user would upload it
            Image.open(parts.data.family("vl").image_path(e.image_id, "vqa")).convert("RGB").save(png)
        answered = loaded.answer(png, e.question, top_k=1)[0]["answer"]
        assert answered == predicted[e.question_id], (e.question_id, e.question)


def test_a_large_photo_is_resized_to_the_training_pictures_and_warned_about(detector_model, tmp_path):
    _, model = detector_model
    loaded = vlmt.load(model)
    photo = np.zeros((900, 1600, 3), dtype=np.uint8)
    photo[200:600, 300:900] = (220, 30, 30)
    details = loaded.details("answer", photo, "what color is the square?", top_k=2)
    assert any("1600 x 900" in w and "128 x 128" in w for w in details["warnings"])
    boxes = np.asarray(details["boxes"])
    assert boxes[:, 2].max() > 200 and boxes[:, 2].max() <= 1600  # boxes in the photo's own pixels
    asked = loaded.details("answer", photo[:128, :128], "what colour is the zorblax?", top_k=1)
    assert asked["unknown_words"] and any("zorblax" in w for w in asked["warnings"])


def test_a_model_trained_on_stored_features_refuses_a_picture_and_answers_from_regions(tmp_path):
    torch.set_num_threads(1)
    world = resolve_source("world:tiny")
    stored = tmp_path / "stored"  # the same files with features from a store alone (as converted bottom-up ones)
    shutil.copytree(world, stored, ignore=shutil.ignore_patterns("region_extractor", "images"))
    run = tmp_path / "run"
    assert main(["train", "tiny", "--out", str(run), "--set", f"data.root={stored}", *ITERS]) == 0
    model = vlmt.load(run)
    assert model.preprocess["regions"] == "feature_store"
    with pytest.raises(InvalidInput, match=r"feature store .* pass the picture's regions=\(T, \d+\) features"):
        model.answer(np.zeros((128, 128, 3), dtype=np.uint8), "what color is the square?")
    with pytest.raises(ValueError):  # an input error is a ValueError too
        model.answer(np.zeros((128, 128, 3), dtype=np.uint8), "what color is the square?")
    image_id = int(next(iter(json.loads((stored / "v2_OpenEnded_mscoco_val2014_questions.json").read_text())
                             ["questions"]))["image_id"])
    features, boxes = model.regions_from_store(stored / "features", image_id)
    answers = model.answer(question="what color is the square?", regions=features, boxes=boxes, top_k=3)
    assert len(answers) == 3
