"""The `svlr` data family on files in the official formats: the VQA overlap rule,
the split rule without a split file, the model-selection hold-out carved from train, and clear
errors for unusable records and configs."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import pytest

from vlmt.config import bundled_config
from vlmt.data.datasets.genome import GenomeFilesConfig
from vlmt.data.datasets.vqa_mc import VQAMCFilesConfig, holdout_images
from vlmt.data.examples import VQAExample
from vlmt.data.synth.cache import ensure_world
from vlmt.errors import ConfigError, DataError
from vlmt.tasks.svlr_data import SVLRDataConfig, build_svlr_data
from vlmt.tasks.svlr_text import fallback_vector
from vlmt.training.build import load_experiment


@pytest.fixture(scope="module")
def world() -> Path:
    return ensure_world("tiny")


def _folder(world: Path, tmp: Path) -> Path:
    """A folder whose files link to the tiny world's, so tests can replace single files."""
    for p in world.iterdir():
        if p.name == "visual_genome":
            (tmp / p.name).mkdir()
            for q in p.iterdir():
                os.symlink(q, tmp / p.name / q.name)
        else:
            os.symlink(p, tmp / p.name)
    return tmp


def _replace_json(path: Path, data: object) -> None:
    path.unlink()
    path.write_text(json.dumps(data))


def test_genome_images_that_are_vqa_images_are_dropped_and_ids_split_without_a_file(world, tmp_path):
    root = _folder(world, tmp_path)
    images = json.loads((world / "visual_genome" / "image_data.json").read_text())
    images[0]["coco_id"] = 1  # the same picture as VQA image 1
    _replace_json(root / "visual_genome" / "image_data.json", images)
    (root / "visual_genome" / "splits.json").unlink()
    cfg = SVLRDataConfig(root=str(root), word_dim=8, genome=GenomeFilesConfig(splits="visual_genome/splits.json"))
    data = build_svlr_data(cfg, root)
    assert data.summary["genome_images_dropped_as_vqa_overlap"] == 1
    used = {r.image_id for rs in data.genome.values() for r in rs}
    assert images[0]["image_id"] not in used
    assert len(used) == len(images) - 1  # every other image lands in some split
    assert len(data.genome["train"]) > len(data.genome["test"]) > 0


def test_an_answer_outside_the_choices_is_a_data_error(world, tmp_path):
    root = _folder(world, tmp_path)
    ann = json.loads((world / "mscoco_val2014_annotations.json").read_text())
    first = ann["annotations"][0]
    first["multiple_choice_answer"] = "not a choice"
    _replace_json(root / "mscoco_val2014_annotations.json", ann)
    with pytest.raises(DataError, match=f"question_id {first['question_id']}.*multiple_choices"):
        build_svlr_data(SVLRDataConfig(root=str(root), word_dim=8), root)


def test_a_missing_feature_store_names_the_folder(world, tmp_path):
    root = _folder(world, tmp_path)
    (root / "features").unlink()
    with pytest.raises(DataError, match="features"):
        build_svlr_data(SVLRDataConfig(root=str(root), word_dim=8), root)


def test_fallback_vectors_depend_on_the_word_only():
    a, b = fallback_vector("red", 300), fallback_vector("red", 300)
    assert (a == b).all() and abs(float(a @ fallback_vector("blue", 300))) < 0.3
    assert abs(float(a @ a) - 1.0) < 0.3  # entries N(0, 1/dim): unit length on average


# --------------------------------------------------------------------------- model selection hold-out


def _examples(images: int, per_image: int) -> list[VQAExample]:
    return [VQAExample(question_id=i * 10 + k, image_id=i, question="q") for i in range(1, images + 1)
            for k in range(per_image)]


def test_holdout_takes_whole_images_by_hash_whatever_the_file_order():
    examples = _examples(200, 3)
    held = holdout_images(examples, 30)
    assert len(held) == 10  # 30 questions = 10 whole images of 3
    assert holdout_images(list(reversed(examples)), 30) == held
    assert holdout_images(examples[::2] + examples[1::2], 30) == held
    assert held != set(range(1, 11))  # chosen by hash, not by id order
    assert len(holdout_images(examples, 31)) == 11  # whole images: the count is reached or passed
    assert len(holdout_images(examples, 0.1)) == 20  # a fraction of the 600 questions
    with pytest.raises(ValueError, match="fewer than all"):
        holdout_images(examples, 600)


def test_the_paper_configs_holdout_is_the_papers_12072_questions_on_vqa_v1():
    paper = load_experiment(bundled_config("svlr_paper.yaml")).data.datasets["vqa_mc"]
    assert paper.splits == {"train": "train2014", "val": "holdout", "test": "val2014"}
    # VQA v1 train: 82,783 images, 3 questions each (248,349); the paper holds out 12,072 (Sec. 5.1)
    assert 3 * len(holdout_images(_examples(82_783, 3), paper.holdout)) == 12_072


def test_holdout_split_is_carved_from_train_disjoint_by_image_and_recorded(world):
    cfg = SVLRDataConfig(root=str(world), word_dim=8, vqa_mc=VQAMCFilesConfig(
        holdout=12, splits={"train": "train2014", "val": "holdout", "test": "test2015"}))
    data = build_svlr_data(cfg, world)
    full = build_svlr_data(SVLRDataConfig(root=str(world), word_dim=8), world)
    train_images = {q.image_id for q in data.vqa["train"]}
    val_images = {q.image_id for q in data.vqa["val"]}
    assert not train_images & val_images
    assert train_images | val_images == {q.image_id for q in full.vqa["train"]}
    assert len(data.vqa["val"]) >= 12 and len(data.vqa["val"]) + len(data.vqa["train"]) == len(full.vqa["train"])
    assert {q.question_id for q in data.vqa["test"]} == {q.question_id for q in full.vqa["test"]}
    record = data.run_record()["vqa_holdout"]
    assert record["images"] == sorted(val_images)
    assert record["questions"] == sorted(q.question_id for q in data.vqa["val"])
    assert data.summary["vqa_holdout"] == {"from": "train2014", "images": len(val_images),
                                           "questions": len(data.vqa["val"])}
    too_many = dataclasses.replace(cfg, vqa_mc=dataclasses.replace(cfg.vqa_mc, holdout=len(full.vqa["train"])))
    with pytest.raises(ConfigError, match="data.datasets.vqa_mc.holdout"):
        build_svlr_data(too_many, world)


@pytest.mark.parametrize("splits, holdout, message", [
    ({"train": "train2014", "val": "val2014", "test": "val2014"}, None, "val and test are both 'val2014'"),
    ({"train": "train2014", "val": "holdout", "test": "val2014"}, None, "holdout: required"),
    ({"train": "train2014", "val": "val2014", "test": "test2015"}, 100, "splits.val is not 'holdout'"),
    ({"train": "train2014", "val": "holdout", "test": "val2014"}, 1.5, "a fraction in \\(0, 1\\)"),
    ({"train": "holdout", "val": "val2014", "test": "test2015"}, None, "only val can be 'holdout'"),
])
def test_a_selection_split_equal_to_the_test_split_and_bad_holdouts_are_refused(splits, holdout, message):
    sets = [f"data.datasets.vqa_mc.splits={json.dumps(splits)}"] + (
        [f"data.datasets.vqa_mc.holdout={holdout}"] if holdout else [])
    with pytest.raises(ConfigError, match=f"key 'data.datasets.vqa_mc': .*{message}"):
        load_experiment(bundled_config("svlr_tiny.yaml"), sets)


def test_the_built_columns_give_the_regions_and_questions_one_at_a_time_reading_gives(world):
    """The build keeps regions and questions as columns (`GenomeRegions`, `MCQuestions`); each
    item they hand out equals what matching one object and tagging one question at a time gives."""
    import numpy as np

    from vlmt.data.datasets import genome as genome_dataset
    from vlmt.data.datasets import vqa_mc
    from vlmt.tasks.svlr_data import GenomeRegions

    cfg = SVLRDataConfig(root=str(world), check_files=False, tagger="lexicon", lemmatizer="rules",
                         question_parser="heuristic")
    data = build_svlr_data(cfg, world)
    text = data.assets.reader()
    for split, built in data.vqa.items():
        ms = vqa_mc.read(world, cfg.vqa_mc)[split]
        want = [text.question(ex.question, ex.choices or (), question_id=ex.question_id, image_id=ex.image_id,
                              correct=c, question_type=ex.question_type or "", answer_type=ex.answer_type or "",
                              answers=ex.answers) for ex, c in zip(ms.examples, ms.correct)]
        assert list(built) == want and built[-1] == want[-1] and built[1:3] == want[1:3]
    # regions: the first labelled objects of the train split, matched one at a time
    o_index = {w: i for i, w in enumerate(data.object_labels)}
    train = genome_dataset.read(world, cfg.genome)["train"]
    vqa_images = {q.image_id for qs in data.vqa.values() for q in qs}
    train.drop_coco(vqa_images)
    regions = data.genome["train"]
    assert isinstance(regions, GenomeRegions) and len(regions) > 100
    k = 0
    for im in train.images[:20]:
        boxes = data.store.boxes(train.store_key(im))
        for o in im.objects:
            objs = tuple(sorted({o_index[n.lower()] for n in o.names if n.lower() in o_index}))
            if not objs:
                continue
            r = regions[k]
            area = (o.box[2] - o.box[0]) * (o.box[3] - o.box[1])
            x1, y1 = np.maximum(o.box[0], boxes[:, 0]), np.maximum(o.box[1], boxes[:, 1])
            x2, y2 = np.minimum(o.box[2], boxes[:, 2]), np.minimum(o.box[3], boxes[:, 3])
            inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
            ious = inter / np.maximum(area + (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]) - inter, 1e-9)
            assert (r.image_id, r.objects, r.row, r.iou) == (train.store_key(im), objs, int(ious.argmax()),
                                                            float(ious.max()))
            k += 1
    assert k > 10
    copy = GenomeRegions.of(list(regions))
    assert len(copy) == len(regions) and copy[5] == regions[5] and copy[-1] == regions[-1]
    with pytest.raises(IndexError):
        regions[len(regions)]
