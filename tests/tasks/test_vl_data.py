"""The `vl` data family on the tiny synthetic world: what it loads, what it refuses."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import torch

from vlmt import config as C
from vlmt.data.datasets.vqa import VQAFilesConfig
from vlmt.data.section import DatasetsConfig
from vlmt.data.synth.cache import ensure_world
from vlmt.errors import ConfigError, DataError
from vlmt.tasks.vl_data import DATASETS, VLData
from vlmt.training.build import load_experiment


@pytest.fixture(scope="module")
def world() -> Path:
    return ensure_world("tiny", 0)


def build(*, root: str, datasets: dict | None = None, images: str | None = None, **options) -> VLData:
    """The `vl` family's data of a `datasets` section on `root`: `datasets` (kind -> files; default
    the family's three, each left out when its files are absent) and the family's `options`."""
    section = {"type": "datasets", "root": root, "datasets": datasets or {name: {} for name in DATASETS},
               "missing": "skip" if datasets is None else "error", "families": {"vl": options},
               **({"images": images} if images else {})}
    cfg = C.from_dict({"data": section, "model": {"type": "hierarchical"}, "tasks": {"vqa": {}}}).data
    assert isinstance(cfg, DatasetsConfig)
    return cfg.build(seed=0).family("vl")


def vqa_only_folder(world: Path, dest: Path) -> Path:
    """A folder shaped like a converted easy-VQA source: VQA v2 files and features/ only."""
    dest.mkdir()
    for p in world.glob("v2_*.json"):
        shutil.copy(p, dest / p.name)
    os.symlink(world / "features", dest / "features")
    return dest


def test_world_loads_every_dataset_with_one_vocabulary(world):
    data = build(root=str(world), answer_more_than=1)
    assert data.datasets == ["vqa", "captions", "entities"]
    assert set(data.vqa) == {"train", "val", "test"} and data.vqa["test"].annotated
    # one vocabulary over questions, captions and grounded sentences
    assert "what" in data.vocab and "picture" in data.vocab
    assert data.vocab.pad_index == 0 and data.word_vectors is None
    # the pool holds training answers seen more than once, most frequent first
    counts = data.answers.counts
    assert all(c > 1 for c in counts) and list(counts) == sorted(counts, reverse=True)
    image_id = data.vqa["train"].examples[0].image_id
    assert data.image_path(image_id) == world / "images" / f"{image_id}.png"
    assert data.image_path(image_id).is_file()
    assert data.feature_dim == data.store("vqa").feature_dim


def test_min_word_count_drops_rare_words(world):
    all_words = build(root=str(world), answer_more_than=1).vocab
    frequent = build(root=str(world), answer_more_than=1, min_word_count=5).vocab
    assert len(frequent) < len(all_words)
    assert set(frequent.words) <= set(all_words.words)


def test_a_vqa_only_source_needs_no_captions_and_names_what_a_task_lacks(world, tmp_path):
    root = vqa_only_folder(world, tmp_path / "vqa_only")
    data = build(root=str(root), answer_more_than=1)
    assert data.datasets == ["vqa"]
    with pytest.raises(ConfigError, match="tasks.retrieval: needs the captions dataset"):
        data.require("captions", "retrieval")
    with pytest.raises(DataError, match="dataset_"):
        build(root=str(root), answer_more_than=1, datasets={"vqa": {}, "captions": {}})


def test_an_image_missing_from_the_store_names_the_file_and_the_id(world, tmp_path):
    root = vqa_only_folder(world, tmp_path / "missing")
    path = root / "v2_OpenEnded_mscoco_val2014_questions.json"
    questions = json.loads(path.read_text())
    questions["questions"][0]["image_id"] = 987654
    path.write_text(json.dumps(questions))
    annotations_path = root / "v2_mscoco_val2014_annotations.json"
    annotations = json.loads(annotations_path.read_text())
    qid = questions["questions"][0]["question_id"]
    for a in annotations["annotations"]:
        if a["question_id"] == qid:
            a["image_id"] = 987654
    annotations_path.write_text(json.dumps(annotations))
    with pytest.raises(DataError) as err:
        build(root=str(root), answer_more_than=1)
    message = str(err.value)
    assert path.name in message and "987654" in message and f"question_id {qid}" in message


def test_training_on_images_another_task_tests_on_is_refused(world):
    # VQA "val" pointed at the test images, and trained on: Sec. 5.1 forbids it
    subtypes = {"train": "train2014", "val": "test2015"}
    vqa_val_on_test = {"vqa": {"subtypes": subtypes, "train_splits": ["train", "val"]}, "captions": {}, "entities": {}}
    with pytest.raises(ConfigError, match="contamination"):
        build(root=str(world), answer_more_than=1, datasets=vqa_val_on_test)
    data = build(root=str(world), answer_more_than=1, allow_contamination=True, datasets=vqa_val_on_test)
    assert data.vqa["val"].path.name.endswith("test2015_questions.json")


def test_bad_config_values_are_config_errors(world):
    with pytest.raises(ConfigError, match="images"):
        build(root=str(world), images="images/x.png")
    with pytest.raises(ConfigError, match="unknown split"):
        build(root=str(world), datasets={"vqa": {"train_splits": ["training"]}})
    with pytest.raises(ConfigError, match="no such folder"):
        build(root=str(world / "nope"))


@pytest.mark.parametrize("name", ["tiny.yaml", "hierarchical_world.yaml", "hierarchical_paper.yaml"])
def test_shipped_configs_are_valid(name):
    cfg = load_experiment(Path(__file__).resolve().parents[2] / "configs" / name)
    assert C.MODELS.name_of(type(cfg.model)) == "hierarchical"
    assert set(cfg.tasks) == {"retrieval", "vqa", "grounding"}


def test_image_patterns_may_format_the_id():
    ok = DatasetsConfig(images="coco/COCO_val2014_{image_id:012d}.jpg")
    assert ok.validate() is None
    assert DatasetsConfig(images="images/{other}.png").validate() is not None
    assert "datasets.vqa.images" in DatasetsConfig(datasets={"vqa": VQAFilesConfig(images="x.png")}).validate()


def test_word_vectors_give_a_frozen_embedding_of_their_width(world, tmp_path):
    from vlmt.training.build import build_parts

    vectors = tmp_path / "vectors.txt"
    vectors.write_text("what 1 0 0 0 0\nis 0 1 0 0 0\npicture 0 0 1 0 0\n")
    cfg = C.from_dict({"data": {"type": "datasets", "root": str(world), "datasets": {"vqa": {}},
                                "families": {"vl": {"answer_more_than": 1, "word_vectors": str(vectors)}}},
                       "model": {"type": "hierarchical", "dim": 16, "num_layers": 2, "word_dim": 300},
                       "tasks": {"vqa": {"layer": 2}}})
    model = build_parts(cfg, torch.device("cpu")).model
    assert model.config.word_dim == 5 and model.config.freeze_word_vectors
    embedding = model.language.embedding.weight
    assert embedding.shape[1] == 5 and not embedding.requires_grad
    # the rows follow the vocabulary: "picture" gets its vector from the file
    data_vocab = cfg.data.build(seed=0).family("vl").vocab
    assert embedding[data_vocab.index("picture")].tolist() == [0, 0, 1, 0, 0]


def test_a_vqa_selection_split_equal_to_the_test_split_is_refused():
    # the trainer selects the best checkpoint on val: val == test would report the selection split
    with pytest.raises(ConfigError, match="key 'data.datasets.vqa': subtypes: val and test are both 'val2014'"):
        load_experiment(Path(__file__).resolve().parents[2] / "configs" / "tiny.yaml",
                        ["data.datasets.vqa.subtypes={train: train2014, val: val2014, test: val2014}"])
