from __future__ import annotations

from pathlib import Path

import pytest

from vlmt.data import splits
from vlmt.data.readers import captions, vqa
from vlmt.errors import ConfigError

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


def test_karpathy_splits_and_restval():
    images = captions.read_karpathy(FIXTURES / "karpathy" / "dataset_coco.json")
    assert splits.karpathy_split_ids(images, "test") == [391895]
    assert splits.karpathy_split_ids(images, "train") == [318556]
    assert splits.karpathy_split_ids(images, "train", include_restval=True) == [522418, 318556]
    with pytest.raises(ConfigError):
        splits.karpathy_split_ids(images, "testing")


def test_1k_folds_of_the_5k_test():
    folds = splits.split_folds(list(range(5000)))
    assert len(folds) == 5 and all(len(f) == 1000 for f in folds) and folds[1][0] == 1000
    with pytest.raises(ConfigError):
        splits.split_folds(list(range(1500)))


def _coco_splits():
    ret = captions.read_karpathy(FIXTURES / "karpathy" / "dataset_coco.json")
    v = vqa.read_vqa(FIXTURES / "vqa" / "v2_OpenEnded_mscoco_val2014_questions.json")
    # VQA val holds COCO val2014 images; the retrieval test image 391895 is one of them here
    vqa_val = frozenset({e.image_id for e in v} | {391895})
    return [
        splits.SplitImages("retrieval", "train", "coco", frozenset(splits.karpathy_split_ids(ret, "train"))),
        splits.SplitImages("retrieval", "test", "coco", frozenset(splits.karpathy_split_ids(ret, "test"))),
        splits.SplitImages("vqa", "train", "coco", frozenset({318556})),
        splits.SplitImages("vqa", "val", "coco", vqa_val),
        splits.SplitImages("vqa", "test", "coco", frozenset({1})),
        splits.SplitImages("grounding", "train", "flickr30k", frozenset({1000092795})),
        splits.SplitImages("grounding", "test", "flickr30k", frozenset({1000268201})),
    ]


def test_contamination_names_the_shared_images():
    s = {(x.task, x.split): x for x in _coco_splits()}
    overlaps = splits.contamination_report([s["vqa", "val"]], [s["retrieval", "test"], s["grounding", "test"]])
    assert len(overlaps) == 1
    o = overlaps[0]
    assert (o.train_task, o.train_split, o.eval_task, o.eval_split, o.image_ids) == ("vqa", "val", "retrieval", "test",
                                                                                      (391895,))
    assert "391895" in o.describe()
    # different namespaces never collide, even with equal numbers
    a = splits.SplitImages("a", "train", "coco", frozenset({5}))
    b = splits.SplitImages("b", "test", "flickr30k", frozenset({5}))
    assert splits.contamination_report([a], [b]) == []


def test_sec51_two_stages_are_clean_where_one_run_would_not_be():
    report = splits.sec51_report(_coco_splits())
    assert report == {"retrieval-grounding": [], "vqa": []}
    naive = splits.Stage("one-run", {"vqa": ("train", "val"), "retrieval": ("train",)}, {"retrieval": "test"})
    assert [o.image_ids for o in splits.check_stage(naive, _coco_splits())] == [(391895,)]


def test_stage_with_unknown_split_is_a_config_error():
    with pytest.raises(ConfigError, match="vqa/val"):
        splits.check_stage(splits.SEC51_STAGES[1], [x for x in _coco_splits() if x.split != "val"])
