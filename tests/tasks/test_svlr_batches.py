"""`RecognitionColumns` and `MCBatches` build, from a split's columns, the batches `recognition_batch`
and `vqa_batch` build from the regions and questions themselves: the same tensors bit for bit (word
table and extra hypernym columns in first-mention order, widths, padding)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vlmt.data.synth.cache import ensure_world
from vlmt.models.svlr import SVLR, SVLRConfig
from vlmt.tasks.collate import index_batches
from vlmt.tasks.svlr_batches import (
    MCBatches,
    RecognitionBatch,
    RecognitionColumns,
    VQAMCBatch,
    recognition_batch,
    regions_at,
    vqa_batch,
)
from vlmt.tasks.svlr_data import SVLRData, SVLRDataConfig, build_svlr_data
from vlmt.tasks.svlr_recognition import SVLRRecognitionConfig
from vlmt.tasks.svlr_vqa_mc import SVLRVQAConfig


@pytest.fixture(scope="module")
def data() -> SVLRData:
    world = ensure_world("tiny")
    return build_svlr_data(SVLRDataConfig(root=str(world), word_dim=8), world)


def _tensors(batch: VQAMCBatch) -> dict[str, torch.Tensor]:
    out = {k: v for k, v in vars(batch.inputs).items() if isinstance(v, torch.Tensor)}
    return {**out, "correct": batch.correct}


def _assert_same(got: VQAMCBatch, want: VQAMCBatch) -> None:
    a, b = _tensors(got), _tensors(want)
    assert a.keys() == b.keys()
    for name in b:
        assert a[name].dtype == b[name].dtype and a[name].shape == b[name].shape, name
        assert torch.equal(a[name], b[name]), name


def test_column_batches_equal_the_question_batches_on_every_split(data):
    rng = np.random.default_rng(0)
    for split, questions in data.vqa.items():
        n = len(questions)
        builder = MCBatches(data, questions)
        for rows in ([0], list(range(min(7, n))), rng.choice(n, size=min(50, n), replace=False).tolist(),
                     [n - 1, 0, n - 1]):  # a question twice in a batch
            _assert_same(builder(rows), vqa_batch(data, [questions[i] for i in rows]))


def test_column_batches_with_uneven_choices_and_empty_lists(data):
    """Questions with 1 to 4 choices (padded choice slots), choices without nouns or words, and a
    question whose terms are all new: widths and the word table still match `vqa_batch`."""
    image = data.vqa["train"][0].image_id
    items = [(1, image, "what color is the ball ?", ["red", "blue ball", "", "two big dogs"], 1, "what color",
              "other", ["blue ball"] * 10),
             (2, image, "is there a zebra ?", ["yes"], 0, "is there", "yes/no", ["yes"] * 10),
             (3, image, "why ?", ["because", "red"], 1, "why", "other", ["red"] * 10)]
    questions = data.assets.text.questions(items)
    builder = MCBatches(data, questions)
    for rows in ([0, 1, 2], [1], [2, 0], [1, 1]):
        want = vqa_batch(data, [questions[i] for i in rows])
        _assert_same(builder(rows), want)
    assert builder([1]).inputs.choice_mask.shape == (1, 1)


def test_the_vqa_task_trains_on_column_batches(data):
    """The task's training batches are `MCBatches`' and equal `vqa_batch` of the same questions."""
    model = SVLR(SVLRConfig(word_dim=data.word_dim, region_dim=data.region_dim, embed_dim=4, word_hidden=5,
                            region_hidden=7, num_objects=len(data.object_labels),
                            num_attributes=len(data.attribute_labels)))
    task = SVLRVQAConfig(batch_size=8).build(name="vqa", data=data, model=model, seed=3)
    questions = data.vqa["train"]
    order = index_batches(len(questions), 8, split="train", seed=3)
    stream = task.batches("train")
    for _ in range(3):
        _assert_same(next(stream), vqa_batch(data, [questions[i] for i in next(order)]))


def _assert_same_recognition(got: RecognitionBatch, want: RecognitionBatch) -> None:
    for name in ("region_features", "object_targets", "attribute_targets", "extra_object_vectors", "region_mask"):
        a, b = getattr(got, name), getattr(want, name)
        assert (a is None) == (b is None), name
        if b is not None:
            assert a.dtype == b.dtype and a.shape == b.shape, name
            assert torch.equal(a, b), name


@pytest.mark.parametrize("use_hypernyms", [True, False])
def test_recognition_columns_equal_the_region_batches(data, use_hypernyms):
    """`RecognitionColumns` builds `recognition_batch`'s tensors bit for bit, on training batches
    (shuffled, with out-of-O hypernym columns), evaluation batches and odd row lists."""
    extra = 0
    for split, regions in data.genome.items():
        columns = RecognitionColumns(data, regions, use_hypernyms=use_hypernyms)
        n = len(regions)
        order = index_batches(n, 200, split=split, seed=5)
        for rows in [next(order) for _ in range(4 if split == "train" else 1)] + [[0], [n - 1, 0, n - 1]]:
            want = recognition_batch(data, [regions[i] for i in rows], use_hypernyms=use_hypernyms)
            _assert_same_recognition(columns(rows), want)
            assert torch.equal(columns.features(rows), want.region_features)
            extra += 0 if want.extra_object_vectors is None else len(want.extra_object_vectors)
    assert (extra > 0) == use_hypernyms  # the tiny world's hypernyms outside O are exercised


def test_the_recognition_task_trains_and_scores_on_column_batches(data):
    model = SVLR(SVLRConfig(word_dim=data.word_dim, region_dim=data.region_dim, embed_dim=4, word_hidden=5,
                            region_hidden=7, num_objects=len(data.object_labels),
                            num_attributes=len(data.attribute_labels)))
    task = SVLRRecognitionConfig(batch_size=200).build(name="rec", data=data, model=model, seed=3)
    regions = data.genome["train"]
    order = index_batches(len(regions), 200, split="train", seed=3)
    stream = task.batches("train")
    for _ in range(3):
        _assert_same_recognition(next(stream), recognition_batch(data, [regions[i] for i in next(order)]))
    split = next(s for s in data.genome if s != "train")
    evaluation = list(task.batches(split))
    assert sum(len(b.region_features) for b in evaluation) == len(data.genome[split])
    _assert_same_recognition(evaluation[0], recognition_batch(data, list(data.genome[split][:512])))


def test_regions_at_builds_the_indexed_regions(data):
    """`regions_at` (one gather per column) gives the regions `GenomeRegions[i]` builds one by one:
    equal, with Python ints and floats, negative rows counted from the end."""
    for split, regions in data.genome.items():
        n = len(regions)
        rows = [0, n - 1, -1, n // 2, 0] + next(index_batches(n, 50, split="train", seed=3))
        got, want = regions_at(regions, rows), [regions[i] for i in rows]
        assert got == want
        assert all(type(v) is type(w) for g, r in zip(got, want) for v, w in zip(vars(g).values(), vars(r).values()))
        assert regions_at(list(regions[:3]), [2, 0]) == [regions[2], regions[0]]  # any sequence of regions
        with pytest.raises(IndexError):
            regions_at(regions, [n])
