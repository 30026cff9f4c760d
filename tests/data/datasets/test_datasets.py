"""The dataset modules: each kind reads its files from a folder laid out as released, says which
images each record needs, and lists its test pictures; the family sections and the gallery read
through them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from vlmt import config as C
from vlmt.data.datasets import KINDS, dataset_kind, files_config, find_test_images, source_folder, source_name
from vlmt.data.datasets.vqa_mc import HOLDOUT, VQAMCFilesConfig
from vlmt.data.synth.cache import ensure_world
from vlmt.errors import DataError
from vlmt.training.build import load_experiment


@pytest.fixture(scope="module")
def world() -> Path:
    return ensure_world("tiny", 0)


def test_every_dataset_kind_is_registered_with_its_files_config():
    assert set(KINDS) == {"vqa", "vqa_mc", "captions", "entities", "genome"}
    for name, kind in KINDS.items():
        assert kind.name == name and kind.title
        files = kind.files()  # the official names by default
        assert all(callable(f) for f in (kind.read, kind.image_records, kind.test_images)) and files is not None
    with pytest.raises(KeyError, match="unknown dataset .coco. .known: captions, entities, genome, vqa, vqa_mc"):
        dataset_kind("coco")


@pytest.mark.parametrize("name", ["vqa", "vqa_mc", "captions", "entities", "genome"])
def test_each_kind_reads_the_world_and_names_the_file_and_record_of_every_image(world, name):
    kind = dataset_kind(name)
    files = kind.files()
    splits = kind.read(world, files, required=True)
    assert "train" in splits and "test" in splits
    records = kind.image_records(splits)
    assert set(records) == set(splits)
    image_id, path, record = records["train"][0]
    assert isinstance(image_id, int) and path.exists() and record


def test_a_missing_dataset_is_empty_unless_required(tmp_path):
    assert dataset_kind("vqa").read(tmp_path, dataset_kind("vqa").files()) == {}
    assert dataset_kind("captions").read(tmp_path, dataset_kind("captions").files()) == {}
    with pytest.raises(DataError, match="v2_OpenEnded_mscoco_train2014_questions.json.*not found"):
        dataset_kind("vqa").read(tmp_path, dataset_kind("vqa").files(), required=True)
    with pytest.raises(DataError, match="MultipleChoice_mscoco_train2014_questions.json: file not found"):
        dataset_kind("vqa_mc").read(tmp_path, VQAMCFilesConfig())


def test_vqa_mc_carves_the_selection_split_out_of_train_by_whole_images(world):
    files = VQAMCFilesConfig(splits={"train": "train2014", "val": HOLDOUT, "test": "test2015"}, holdout=0.1)
    splits = dataset_kind("vqa_mc").read(world, files)
    train_images = {e.image_id for e in splits["train"].examples}
    val_images = {e.image_id for e in splits["val"].examples}
    assert val_images and not train_images & val_images
    # every question keeps the index of its annotated answer among its 18 choices
    ms = splits["test"]
    assert all(e.choices[c] == e.multiple_choice_answer for e, c in zip(ms.examples, ms.correct))


def test_test_images_prefer_a_dataset_with_captions(world):
    datasets = {"vqa": files_config("vqa", None), "captions": files_config("captions", {"captions_per_image": 2})}
    name, images = find_test_images(world, datasets)
    assert name == "captions" and images and all(len(im.captions) == 2 for im in images)
    name, images = find_test_images(world, {"vqa": files_config("vqa", {"unknown_key": 1})})
    questions = json.loads((world / "v2_OpenEnded_mscoco_test2015_questions.json").read_text())["questions"]
    assert name == "vqa" and [im.image_id for im in images] == list(dict.fromkeys(q["image_id"] for q in questions))


def test_sources_are_found_without_preparing_and_named_without_paths(world, tmp_path):
    assert source_folder("world:tiny:0") == world
    assert source_folder("world:no-such-size") is None and source_folder(str(tmp_path / "absent")) is None
    assert source_name(str(tmp_path)) == tmp_path.name and source_name("world:tiny") == "world:tiny"


def test_every_shipped_section_lists_the_datasets_it_reads():
    vl = load_experiment("tiny").data
    svlr = load_experiment("svlr_tiny").data
    composed = load_experiment("composed_tiny").data
    assert list(vl.dataset_files()) == ["vqa", "captions", "entities"]
    assert list(svlr.dataset_files()) == ["vqa_mc", "genome"]
    assert list(composed.dataset_files()) == ["vqa", "captions", "entities", "vqa_mc", "genome"]
    # the section's store and picture pattern fill in what a dataset does not set
    assert vl.dataset_files()["vqa"].features == vl.features and vl.dataset_files()["vqa"].images == vl.images
    assert vl.datasets["vqa"].features is None  # ... and the section keeps what the file said


def test_svlr_files_written_before_the_dataset_blocks_still_load():
    old = {"type": "svlr_datasets", "root": "world:tiny", "vqa_questions": "q_{subtype}.json",
           "vqa_splits": {"train": "a", "val": "holdout", "test": "c"}, "vqa_holdout": 0.2,
           "genome_objects": "vg/objects.json", "genome_id_offset": 7, "word_dim": 8}
    cfg = C.from_dict({"data": old, "model": {"type": "svlr"}, "tasks": {"recognition": {"type": "svlr_recognition"}}},
                      source="old.json").data
    vqa_mc, genome = cfg.datasets["vqa_mc"], cfg.datasets["genome"]
    assert vqa_mc.questions == "q_{subtype}.json" and vqa_mc.holdout == 0.2
    assert vqa_mc.splits == {"train": "a", "val": "holdout", "test": "c"}
    assert genome.objects == "vg/objects.json" and genome.id_offset == 7
    assert genome.image_data == "visual_genome/image_data.json"  # untouched keys keep their defaults
    assert cfg.families["svlr"].word_dim == 8 and cfg.root == "world:tiny"
