"""Hard negatives for retrieval: caption-nearest pictures, companions that are never certain false
negatives, and a training batch whose pairs put each example's companions first."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from vlmt.errors import ConfigError
from vlmt.tasks.retrieval import retrieval_pairs
from vlmt.tasks.retrieval_negatives import caption_neighbours, draw_companions
from vlmt.training.build import build_parts, load_experiment

CONFIG = Path(__file__).resolve().parents[2] / "configs" / "tiny.yaml"
CPU = torch.device("cpu")


def _caps(*sentences: str) -> list[np.ndarray]:
    words = {w: i for i, w in enumerate("a b c d e f g h red blue two three".split())}
    return [np.array([words[w] for w in s.split()]) for s in sentences]


def test_neighbours_rank_pictures_by_shared_rare_words():
    pictures = [_caps("a b red", "two c"),      # 0
                _caps("a b blue", "three c"),   # 1: shares a, b, c with 0
                _caps("a b red", "two d"),      # 2: shares a, b, red, two with 0
                _caps("e f g", "h h")]          # 3: shares nothing
    near = caption_neighbours(pictures, pool=3)
    assert near.shape == (4, 3)
    assert near[0].tolist() == [2, 1, 3]
    assert near[3, -1] != 3 and 3 not in near[3]
    assert caption_neighbours(pictures, pool=10).shape == (4, 3)  # at most the other pictures
    # blocks give the same answer as one pass
    assert np.array_equal(caption_neighbours(pictures, pool=3, block=1), near)


def test_neighbours_match_dense_tfidf_cosine_on_random_captions():
    rng = np.random.default_rng(0)
    pictures = [[rng.integers(0, 30, size=rng.integers(3, 9)) for _ in range(5)] for _ in range(40)]
    near = caption_neighbours(pictures, pool=5, block=7)
    counts = np.zeros((40, 30))
    for i, caps in enumerate(pictures):
        for c in caps:
            np.add.at(counts[i], c, 1)
    tfidf = counts * np.log(40 / (counts > 0).sum(0).clip(min=1))
    unit = tfidf / np.linalg.norm(tfidf, axis=1, keepdims=True)
    sim = unit @ unit.T
    np.fill_diagonal(sim, -np.inf)
    for i in range(40):
        best = sim[i, near[i]]
        assert np.all(np.diff(best) <= 1e-12)
        assert best[-1] >= np.sort(sim[i])[-5] - 1e-12


def _index(pictures: list[list[str]]) -> dict:
    keys, example_picture, picture_examples = [], [], []
    for p, caps in enumerate(pictures):
        picture_examples.append(np.arange(len(keys), len(keys) + len(caps)))
        keys += [c.encode() for c in caps]
        example_picture += [p] * len(caps)
    return {"example_picture": np.array(example_picture), "picture_examples": picture_examples,
            "caption_keys": keys, "picture_keys": [frozenset(c.encode() for c in caps) for caps in pictures]}


def test_companions_skip_pictures_with_the_anchor_caption_and_shared_captions():
    pictures = [["x", "y"], ["x", "z"], ["y", "w"], ["v", "u"]]
    index = _index(pictures)  # examples: 0 x, 1 y | 2 x, 3 z | 4 y, 5 w | 6 v, 7 u
    neighbours = np.array([[1, 2, 3], [0, 2, 3], [0, 1, 3], [0, 1, 2]])
    for seed in range(30):
        out = draw_companions(np.random.default_rng(seed), [0, 1], 1, neighbours=neighbours, **index)
        # anchor "x" of picture 0: picture 1 also says "x" (certain false negative), so never picture 1;
        # picture 2's "y" is a caption picture 0 has too, so only its "w"
        assert out[0, 0] in (5, 6, 7)
        # anchor "y": picture 2 says "y"; picture 1's "x" is picture 0's too
        assert out[1, 0] in (3, 6, 7)
    out = draw_companions(np.random.default_rng(0), [0], 3, neighbours=neighbours[:, :1], **index)
    assert len(set(index["example_picture"][out[0]].tolist())) == 3  # pool ran out: other pictures fill in
    assert 0 not in index["example_picture"][out[0]]
    with pytest.raises(ValueError, match="not enough training pictures"):
        draw_companions(np.random.default_rng(0), [0], 4, neighbours=neighbours, **index)


def test_retrieval_pairs_put_companions_first():
    ids = torch.tensor([10, 11, 12, 13, 20, 21, 22, 23])  # 4 examples, then one companion each
    companions = torch.arange(4, 8).view(4, 1)
    img, cap, target = retrieval_pairs(ids, generator=torch.Generator().manual_seed(0), negatives=2,
                                       companions=companions)
    assert img.shape == (4 + 2 * 2 * 4,)
    assert torch.equal(img[:4], torch.arange(4)) and torch.equal(cap[:4], torch.arange(4))
    neg_caption, neg_image = cap[4:12].view(4, 2), img[12:].view(4, 2)
    assert torch.equal(neg_caption[:, 0], torch.arange(4, 8)) and torch.equal(neg_image[:, 0], torch.arange(4, 8))
    assert (neg_caption[:, 1] < 4).all() and (neg_caption[:, 1] != torch.arange(4)).all()
    assert torch.equal(img[4:12], torch.arange(4).repeat_interleave(2))
    assert target[:4].eq(1).all() and target[4:].eq(0).all()
    # without companions the draws are the ones before the option existed
    plain = retrieval_pairs(ids[:4], generator=torch.Generator().manual_seed(3), negatives=2)
    none = retrieval_pairs(ids[:4], generator=torch.Generator().manual_seed(3), negatives=2, companions=None)
    assert all(torch.equal(a, b) for a, b in zip(plain, none))


def test_training_batches_carry_companions_and_train():
    torch.manual_seed(0)
    cfg = load_experiment(CONFIG, ["model.dim=32", "model.word_dim=16", "tasks.retrieval.negatives=2",
                                   "tasks.retrieval.hard_negatives=1", "tasks.retrieval.hard_pool=4"])
    built = build_parts(cfg, CPU)
    task = built.tasks["retrieval"]
    batch = next(task.batches("train"))
    b = task.config.batch_size
    assert batch["companions"].shape == (b, 1)
    assert batch["tokens"].shape[0] == batch["region_features"].shape[0] == 2 * b
    ids = batch["image_ids"]
    assert (ids[batch["companions"][:, 0]] != ids[:b]).all()
    # the same batch again (a resume) draws the same companions
    again = next(task.batches("train"))
    assert torch.equal(again["tokens"], batch["tokens"]) and torch.equal(again["image_ids"], ids)
    built.model.train()
    task.train()
    out = task(built.model, batch)
    assert torch.isfinite(out["loss"])
    out["loss"].backward()
    assert all(p.grad is not None for p in task.head.parameters())
    assert "companions" not in next(task.batches("val"))


@pytest.mark.parametrize("override, message", [
    ("tasks.retrieval.hard_negatives=2", "hard_negatives must be between 0 and negatives"),
    ("tasks.retrieval.hard_pool=0", "hard_pool must be >= 1"),
])
def test_bad_hard_negative_settings_name_the_key(override, message):
    with pytest.raises(ConfigError, match=message):
        build_parts(load_experiment(CONFIG, ["model.dim=32", "model.word_dim=16", override]), CPU)


def test_region_dropout_acts_in_training_only_and_is_validated():
    def losses(p: float) -> tuple[float, float]:
        torch.manual_seed(0)
        cfg = load_experiment(CONFIG, ["model.dim=32", "model.word_dim=16", "model.fc_dropout=0.0",
                                       "model.lstm_dropout=0.0", f"tasks.retrieval.region_dropout={p}"])
        built = build_parts(cfg, CPU)
        task, model = built.tasks["retrieval"], built.model
        batch = next(task.batches("train"))
        out = []
        for training in (False, True):
            model.train(training)
            task.train(training)
            torch.manual_seed(1)  # the same negatives drawn in every call
            with torch.no_grad():
                out.append(task(model, batch)["loss"].item())
        return out[0], out[1]

    plain_eval, plain_train = losses(0.0)
    dropped_eval, dropped_train = losses(0.5)
    assert dropped_eval == plain_eval  # evaluation sees every region
    assert plain_train == plain_eval  # nothing else random here
    assert dropped_train != plain_train  # training hides some
    with pytest.raises(ConfigError, match="region_dropout must be in"):
        build_parts(load_experiment(CONFIG, ["model.dim=32", "model.word_dim=16",
                                             "tasks.retrieval.region_dropout=1.0"]), CPU)
