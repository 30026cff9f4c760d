"""The `svlr_datasets` data section on files in the official formats: the VQA overlap rule,
the split rule without a split file, and clear errors for unusable records."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from vlmt.data.svlr_datasets import SVLRDataConfig, build_svlr_data, fallback_vector
from vlmt.data.synth.cache import ensure_world
from vlmt.errors import DataError


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
    data = build_svlr_data(SVLRDataConfig(root=str(root), word_dim=8, genome_splits="visual_genome/splits.json"), root)
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
