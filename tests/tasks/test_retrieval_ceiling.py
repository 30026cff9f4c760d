"""The retrieval ceiling: the truth matcher reads the world's captions right, and the tie rule is
the exact expectation over random orders."""

from __future__ import annotations

import itertools
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from vlmt.data.synth.cache import ensure_world
from vlmt.data.synth.language import Caption, PhraseSpan
from vlmt.data.synth.scene import Scene, SceneObject
from vlmt.data.synth.world import build, world_size
from vlmt.errors import DataError
from vlmt.tasks.retrieval_ceiling import (
    Count,
    Description,
    caption_claims,
    caption_hits,
    caption_kind,
    expected_recall,
    folder_ceiling,
    generator_scores,
    oracle_scores,
    parse_count,
    parse_description,
    satisfies,
    world_ceiling,
)


def obj(index: int, shape: str, colour: str, box: tuple[float, float, float, float], size: str = "small",
        texture: str = "plain") -> SceneObject:
    return SceneObject(index, shape, colour, size, texture, box)


SCENE = Scene(1, 128, 128, "gray", (
    obj(0, "square", "red", (0, 0, 20, 20), size="large", texture="striped"),
    obj(1, "circle", "blue", (60, 0, 80, 20)),
    obj(2, "square", "red", (100, 100, 120, 120)),
))


def test_descriptions_use_the_taxonomy_synonyms_and_multi_word_entries():
    assert parse_description(["A", "big", "stripy", "box"]) == Description("box", size="large", texture="striped")
    assert parse_description(["a", "medium", "sized", "polka", "dot", "plus", "sign"]) == \
        Description("plus sign", size="medium", texture="dotted")
    assert parse_description(["an", "oval"]) == Description("oval")
    with pytest.raises(ValueError, match="unknown word"):
        parse_description(["a", "shiny", "square"])
    assert parse_count(["three", "colorful", "objects"]) == Count(3)
    assert parse_count(["two", "red", "squares"]) == Count(2, "square", "red")
    assert parse_count(["two", "crosses"]) == Count(2, "cross")


def caption(words: str, phrases: list[tuple[int, int, tuple[int, ...], bool]], relations=(), counts=()) -> Caption:
    ws = tuple(words.split())
    spans = tuple(PhraseSpan(k + 1, "scene" if scene else "other", start, ws[start:end], objs, scene)
                  for k, (start, end, objs, scene) in enumerate(phrases))
    return Caption(ws, spans, tuple(relations), tuple(counts))


def test_relations_counts_background_and_the_two_readings():
    # "A red square is left of a blue circle ." : true literally (object 0 is left of 1), but "a red
    # square" names two objects, so the generator could not have written it
    left = caption_claims(caption("A red square is left of a blue circle .", [(0, 3, (0,), False), (6, 9, (1,), False)],
                                  relations=[(0, "left of", 1)]))
    assert satisfies(left, SCENE, reading="literal")
    assert not satisfies(left, SCENE, reading="generated")
    # a large red square is unique, and it is left of the circle
    unique = caption_claims(caption("A large red square is left of a blue circle .",
                                    [(0, 4, (0,), False), (7, 10, (1,), False)], relations=[(0, "left of", 1)]))
    assert satisfies(unique, SCENE, reading="generated")
    right = caption_claims(caption("A large red square is right of a blue circle .",
                                   [(0, 4, (0,), False), (7, 10, (1,), False)], relations=[(0, "right of", 1)]))
    assert not satisfies(right, SCENE, reading="literal")
    # counts are exact; the background must match
    count = caption_claims(caption("There are three shapes on a gray background .",
                                   [(2, 4, (0, 1, 2), False), (5, 8, (), True)], counts=[(0, 3)]))
    assert satisfies(count, SCENE) and not satisfies(count, Scene(2, 128, 128, "beige", SCENE.objects))
    two = caption_claims(caption("two squares are above a blue circle .", [(0, 2, (0, 2), False), (4, 7, (1,), False)],
                                 relations=[(0, "above", 1)], counts=[(0, 2)]))
    assert not satisfies(two, SCENE, reading="literal")  # object 2 is below the circle: every member must be
    # a list names different objects: two squares are here, three are not
    lst = caption_claims(caption("a square , a square and a square .",
                                 [(0, 2, (0,), False), (3, 5, (2,), False), (6, 8, (1,), False)]))
    assert not satisfies(lst, SCENE, reading="literal")


def test_every_generated_caption_is_true_of_its_own_picture():
    w = build(world_size("tiny"), 0)
    for i in w.main_ids():
        for c in w.captions[i]:
            for reading in ("generated", "literal"):
                assert satisfies(caption_claims(c), w.scenes[i], reading=reading), (reading, c.text)


def brute_force_recall(scores: np.ndarray, per_image: int, k: int) -> tuple[float, float]:
    """Average recall over every order of the tied items (small matrices only)."""
    n_img, n_cap = scores.shape
    owner = np.arange(n_cap) // per_image
    i2t = []
    for i in range(n_img):
        hits = []
        for order in itertools.permutations(range(n_cap)):
            ranked = sorted(range(n_cap), key=lambda j: (-scores[i, j], order.index(j)))
            hits.append(any(owner[j] == i for j in ranked[:k]))
        i2t.append(np.mean(hits))
    t2i = []
    for j in range(n_cap):
        hits = []
        for order in itertools.permutations(range(n_img)):
            ranked = sorted(range(n_img), key=lambda i: (-scores[i, j], order.index(i)))
            hits.append(owner[j] in ranked[:k])
        t2i.append(np.mean(hits))
    return 100 * float(np.mean(i2t)), 100 * float(np.mean(t2i))


def test_expected_recall_is_the_average_over_random_tie_orders():
    rng = np.random.default_rng(0)
    scores = rng.integers(0, 3, size=(3, 6)).astype(float)
    for k in (1, 2, 4):
        got = expected_recall(scores, 2, ks=(k,))
        i2t, t2i = brute_force_recall(scores, 2, k)
        assert got["i2t"][f"r{k}"] == pytest.approx(i2t)
        assert got["t2i"][f"r{k}"] == pytest.approx(t2i)
    # no ties: the official rule's numbers
    assert expected_recall(np.eye(2).repeat(1, axis=1), 1) == {
        "i2t": {"r1": 100.0, "r5": 100.0, "r10": 100.0}, "t2i": {"r1": 100.0, "r5": 100.0, "r10": 100.0}}


def test_world_ceiling_on_the_tiny_world_is_below_perfect_and_above_chance():
    c = world_ceiling("tiny", 0)
    assert (c.images, c.captions) == (8, 40)
    for reading in ("generated", "literal"):
        for side in ("i2t", "t2i"):
            assert 100 / 8 < c.recall[reading][side]["r1"] <= 100.0
    # the generator's presupposition rules pictures out, never in
    assert c.images_per_caption["generated"] <= c.images_per_caption["literal"]
    assert c.recall["generated"]["t2i"]["r1"] >= c.recall["literal"]["t2i"]["r1"]


def test_generator_posterior_sums_to_one_per_caption():
    w = build(world_size("tiny"), 0)
    ids = w.main_ids("test")
    scenes = [w.scenes[i] for i in ids]
    kept = [c for i in ids for c in w.captions[i]]
    truth = oracle_scores(scenes, [caption_claims(c) for c in kept])
    post = generator_scores(scenes, [c.text for c in kept], truth, samples=5)
    assert np.allclose(post.sum(axis=0), 1.0)
    assert np.all(post[truth == 0] == 0)  # the generator never writes a false caption


def test_folder_ceiling_checks_the_caption_file(tmp_path: Path):
    root = ensure_world("tiny", 0)
    assert folder_ceiling(root).to_json() == {**world_ceiling("tiny", 0).to_json(), "world": "tiny"}
    copy = tmp_path / "world"
    copy.mkdir()
    shutil.copy(root / "world.json", copy / "world.json")
    data = json.loads((root / "dataset_synth.json").read_text())
    test_image = next(im for im in data["images"] if im["split"] == "test")
    test_image["sentences"][0]["raw"] = "A purple star."
    (copy / "dataset_synth.json").write_text(json.dumps(data))
    with pytest.raises(DataError, match=f"image {test_image['cocoid']}"):
        folder_ceiling(copy)
    (copy / "world.json").write_text("{}")
    with pytest.raises(DataError, match="world.json"):
        folder_ceiling(copy)


def test_caption_kinds_and_per_caption_hits_match_the_split_figures():
    w = build(world_size("tiny"), 0)
    ids = w.main_ids("test")
    kept = [c for i in ids for c in w.captions[i][:5]]
    claims = [caption_claims(c) for c in kept]
    kinds = {caption_kind(c) for c in claims}
    assert kinds <= {"relation", "count", "objects"} and len(kinds) >= 2
    assert caption_kind(caption_claims(kept[0])) in kinds
    truth = oracle_scores([w.scenes[i] for i in ids], claims)
    expected = expected_recall(truth, 5)["t2i"]
    for k in (1, 5, 10):
        assert 100 * caption_hits(truth, 5, k, expected=True).mean() == pytest.approx(expected[f"r{k}"])
    # the official rule: a tie ranks above the true image
    scores = np.array([[1.0, 0.0], [1.0, 2.0]])  # caption 0: tied with image 1; caption 1: image 1 is its own
    assert caption_hits(scores, 1, 1).tolist() == [0.0, 1.0]
    assert caption_hits(scores, 1, 1, expected=True).tolist() == [0.5, 1.0]
