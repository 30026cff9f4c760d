"""easy-VQA conversion (`ensure_easy_vqa`) on a small subset: files in the world's layout that
validate and read back with 10 identical answers, splits by image, reuse of a finished folder."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from vlmt.cli import main
from vlmt.data.examples import VQAExample
from vlmt.data.features.proposals import foreground_box, load_image, proposals
from vlmt.data.features.store import FeatureStore
from vlmt.data.prepare import easy_vqa as prep
from vlmt.data.readers import easy_vqa as reader
from vlmt.data.readers.vqa import read_vqa
from vlmt.errors import ConfigError, DataError

LIMIT = 24


@pytest.fixture(scope="module")
def converted(tmp_path_factory) -> Path:
    pytest.importorskip("easy_vqa", reason="the optional extra easy-vqa (pip install 'vlmt[easyvqa]') is not installed")
    import torch

    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("easy") / "easy_vqa"
    return prep.ensure_easy_vqa(out=out, limit=LIMIT)


def _read(folder: Path, subtype: str) -> list[VQAExample]:
    return read_vqa(folder / f"v2_OpenEnded_mscoco_{subtype}_questions.json",
                    folder / f"v2_mscoco_{subtype}_annotations.json")


def test_converted_subset_validates(converted, capsys):
    rc = main(["data", "validate", str(converted)])
    err = capsys.readouterr().err
    assert rc == 0, err
    assert "v2_OpenEnded_mscoco_train2014_questions.json" in err and "feature store features/" in err


def test_questions_read_back_with_ten_identical_package_answers(converted):
    package = {split: {e.question_id: e for e in reader.read_easy_vqa(split)
                       if e.image_id - reader.SPLIT_OFFSET[split] < LIMIT} for split in reader.SPLITS}
    train, val, test = (_read(converted, s) for s in ("train2014", "val2014", "test2015"))
    assert len(train) + len(val) == len(package["train"]) and len(test) == len(package["test"])
    for e in train + val + test:
        source = package["test" if e.image_id >= reader.SPLIT_OFFSET["test"] else "train"][e.question_id]
        assert e.answers == (source.multiple_choice_answer,) * 10
        assert e.question == source.question and e.image_id == source.image_id
        assert e.answer_type == ("yes/no" if e.answers[0] in ("yes", "no") else "other")
    train_images, val_images = {e.image_id for e in train}, {e.image_id for e in val}
    assert not train_images & val_images  # carved by image
    assert len(val_images) == round(LIMIT * prep.VAL_FRACTION)
    assert {e.image_id for e in test} == {reader.SPLIT_OFFSET["test"] + n for n in range(LIMIT)}


def test_every_image_has_six_regions_and_its_png(converted):
    store = FeatureStore(converted / "features")
    assert len(store) == 2 * LIMIT and store.feature_dim == prep.FEATURE_DIM
    for image_id in store.image_ids():
        r = store[image_id]
        assert r.boxes.shape == (6, 4) and np.isfinite(r.features).all()
        assert (r.width, r.height) == (64, 64) and tuple(r.boxes[1]) == (0, 0, 64, 64)
        assert (converted / "images" / f"{image_id}.png").exists()
    manifest = json.loads((converted / prep.MANIFEST).read_text())
    assert manifest["images"]["test"] == LIMIT and manifest["config"]["limit"] == LIMIT


def test_finished_folder_is_reused_and_a_foreign_one_refused(converted, tmp_path):
    before = (converted / "features" / "header.json").stat().st_mtime_ns
    said: list[str] = []
    assert prep.ensure_easy_vqa(said.append, out=converted, limit=LIMIT) == converted
    assert said and "reusing" in said[0]
    assert (converted / "features" / "header.json").stat().st_mtime_ns == before
    with pytest.raises(ConfigError, match="converted with"):
        prep.ensure_easy_vqa(out=converted, limit=LIMIT + 1)
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match="not empty"):
        prep.ensure_easy_vqa(out=foreign, limit=LIMIT)
    assert not any(p.name.startswith(".foreign.tmp") for p in tmp_path.iterdir())


def test_default_folder_is_under_the_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("VLMT_CACHE", str(tmp_path))
    assert prep.easy_vqa_dir() == tmp_path / f"easy_vqa-{prep.EASY_VQA_VERSION}"
    assert prep.easy_vqa_dir(limit=5, extractor="world") == tmp_path / f"easy_vqa-{prep.EASY_VQA_VERSION}-limit5-world"


def test_foreground_box_finds_the_shape_on_a_plain_background():
    image = np.full((64, 64, 3), (240, 236, 250), dtype=np.uint8)
    image[10:30, 40:52] = (0, 0, 255)
    assert foreground_box(image) == (40.0, 10.0, 52.0, 30.0)
    boxes = proposals(image)
    assert boxes.shape == (6, 4) and tuple(boxes[0]) == (40, 10, 52, 30) and tuple(boxes[5]) == (32, 32, 64, 64)
    blank = np.full((20, 30, 3), 200, dtype=np.uint8)
    assert foreground_box(blank) == (0.0, 0.0, 30.0, 20.0)


def test_labels_come_from_answers_and_from_yes_no_questions_with_negation():
    def q(image: int, text: str, answer: str) -> VQAExample:
        return VQAExample(len(text) + image, image, text, answers=(answer,) * 10, multiple_choice_answer=answer)

    colours = ["red", "blue"]
    labels = prep.image_labels([
        q(1, "what shape is in the image?", "circle"), q(1, "is there a red shape?", "no"),
        q(1, "is there not a blue shape?", "no"),
        q(2, "what color is the triangle?", "red"),
        q(3, "is there a rectangle?", "no"), q(3, "is no red shape present?", "yes"),
    ], colours)
    assert labels == {1: ("circle", "blue"), 2: ("triangle", "red"), 3: (None, None)}


def test_unreadable_and_missing_images_name_the_file(tmp_path):
    with pytest.raises(DataError, match="missing.png.*no such image file"):
        load_image(tmp_path / "missing.png")
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not a png")
    with pytest.raises(DataError, match="bad.png.*cannot read the image"):
        load_image(bad)


def test_fine_tuning_keeps_the_trunk_and_replaces_the_heads():
    import torch

    from vlmt.data.features.extractor import RegionCNN, RegionExample, RegionExtractor

    torch.manual_seed(0)
    base = RegionExtractor(RegionCNN(num_objects=5, num_attributes=7, feature_dim=32, crop_size=16), list("abcde"),
                           list("ABCDEFG"))
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 255, (32, 32, 3), dtype=np.uint8) for _ in range(4)]
    regions = [RegionExample(i, (2.0, 2.0, 20.0, 20.0), i % 3, (i % 2,)) for i in range(4)]
    log: list = []
    tuned = prep.fine_tune_extractor(base, images, regions, object_names=prep.SHAPES, attribute_names=["red", "blue"],
                                     epochs=0, log=log)
    assert tuned.object_names == list(prep.SHAPES) and tuned.model.object_head.out_features == 4
    assert torch.equal(tuned.model.conv[0].weight, base.model.conv[0].weight)  # 0 epochs: trunk copied as is
    tuned = prep.fine_tune_extractor(base, images, regions, object_names=prep.SHAPES, attribute_names=["red", "blue"],
                                     epochs=2, log=log)
    assert len(log) == 2 and all(np.isfinite(e["loss"]) for e in log)
    assert tuned.extract(images[:1], [np.array([[0, 0, 32, 32]], np.float32)])[0].shape == (1, 32)
