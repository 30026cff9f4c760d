"""Scene geometry, rendering and proposals on hand-made and sampled scenes."""

from __future__ import annotations

import numpy as np
import pytest
from synth_parse import parse_description, resolve

from vlmt.data.synth import taxonomy as tx
from vlmt.data.synth.language import unique_description
from vlmt.data.synth.proposals import make_proposals
from vlmt.data.synth.render import render
from vlmt.data.synth.scene import Scene, SceneObject, iou, relation_holds, relations, sample_scene


def _obj(i, box, shape="square", colour="red", size="medium", texture="plain"):
    return SceneObject(i, shape, colour, size, texture, box)


def test_relations_follow_the_boxes():
    a = _obj(0, (10, 10, 30, 30))
    b = _obj(1, (60, 12, 80, 32))    # right of a, same height
    c = _obj(2, (12, 70, 32, 90))    # below a
    d = _obj(3, (33, 12, 53, 32))    # 3 px right of a: next to it
    assert relation_holds("left of", a, b, 128) and relation_holds("right of", b, a, 128)
    assert not relation_holds("left of", b, a, 128)
    assert relation_holds("above", a, c, 128) and relation_holds("below", c, a, 128)
    assert not relation_holds("above", a, b, 128) and not relation_holds("below", a, b, 128)
    assert relation_holds("next to", a, d, 128) and not relation_holds("next to", a, b, 128)
    assert not relation_holds("next to", a, a, 128)
    scene = Scene(1, 128, 128, "gray", (a, b, c, d))
    assert (0, "left of", 1) in relations(scene) and (1, "left of", 0) not in relations(scene)


def test_overlapping_boxes_are_neither_left_nor_right():
    a, b = _obj(0, (10, 10, 40, 40)), _obj(1, (25, 10, 55, 40))
    assert not relation_holds("left of", a, b, 128) and not relation_holds("right of", a, b, 128)
    assert relation_holds("next to", a, b, 128)


@pytest.mark.parametrize("colour", ["red", "blue", "white", "black"])
def test_rendered_object_has_its_colour_inside_and_background_outside(colour):
    obj = _obj(0, (40, 40, 80, 80), shape="circle", colour=colour)
    img = np.asarray(render(Scene(7, 128, 128, "beige", (obj,)))).astype(int)
    assert np.abs(img[60, 60] - np.array(tx.COLOURS[colour])).max() < 6
    assert np.abs(img[5, 5] - np.array([225, 212, 185])).max() < 20
    assert np.abs(img[42, 42] - np.array([225, 212, 185])).max() < 20   # corner of the box is outside a circle


def test_later_objects_cover_earlier_ones():
    low = _obj(0, (20, 20, 70, 70), colour="red")
    high = _obj(1, (50, 50, 100, 100), colour="blue")
    img = np.asarray(render(Scene(3, 128, 128, "gray", (low, high)))).astype(int)
    assert np.abs(img[60, 60] - np.array(tx.COLOURS["blue"])).max() < 6


def test_textures_differ_from_plain():
    plain = np.asarray(render(Scene(3, 128, 128, "gray", (_obj(0, (30, 30, 90, 90)),)))).astype(int)
    for texture in ("striped", "dotted", "checkered"):
        img = np.asarray(render(Scene(3, 128, 128, "gray", (_obj(0, (30, 30, 90, 90), texture=texture),)))).astype(int)
        spread = img[35:85, 35:85].reshape(-1, 3).std(0).max()  # per-channel spread of the fill
        assert spread > plain[35:85, 35:85].reshape(-1, 3).std(0).max() + 20, texture


def test_proposals_hold_the_true_boxes_and_have_a_fixed_count():
    rng = np.random.default_rng(0)
    boxes = [(10.0, 10.0, 30.0, 30.0), (50.5, 60.2, 90.1, 100.0)]
    props = make_proposals(boxes, rng, width=128, height=128, count=16)
    assert props.shape == (16, 4) and props.dtype == np.float32
    for b in boxes:
        assert max(iou(b, tuple(p)) for p in props) > 0.999
    assert (props[:, 0] >= 0).all() and (props[:, 2] <= 128).all() and (props[:, 2] > props[:, 0]).all()
    with pytest.raises(ValueError):
        make_proposals(boxes * 10, rng, width=128, height=128, count=16)


def test_sampled_scenes_respect_counts_bans_and_occlusion_bound():
    banned = tx.RARITY.unseen_in_vqa_train
    for seed in range(60):
        s = sample_scene(np.random.default_rng(seed), image_id=seed, image_size=128, family="main", banned_pairs=banned)
        assert 2 <= len(s.objects) <= 6
        assert not {(o.colour, o.shape) for o in s.objects} & banned
        for o in s.objects:
            assert 0 <= o.box[0] < o.box[2] <= 128 and 0 <= o.box[1] < o.box[3] <= 128
            for p in s.objects:
                if p.index < o.index:
                    ix = max(0, min(o.box[2], p.box[2]) - max(o.box[0], p.box[0]))
                    iy = max(0, min(o.box[3], p.box[3]) - max(o.box[1], p.box[1]))
                    assert ix * iy <= 0.3 * min(o.area, p.area) + 1e-6


def test_unique_descriptions_pick_out_one_object():
    described = 0
    for seed in range(40):
        rng = np.random.default_rng(seed)
        s = sample_scene(rng, image_id=seed, image_size=128, family="main")
        for o in s.objects:
            for without in (None, "colour", "size"):
                d = unique_description(o, s, rng, without=without)
                if d is not None:
                    assert resolve(s, " ".join(d)) == [o], (seed, d)
                    assert without is None or without not in parse_description(" ".join(d))
                    described += 1
            d = unique_description(o, s, rng, generic_noun=True)
            if d is not None:
                assert resolve(s, " ".join(d)) == [o] and parse_description(" ".join(d))["noun"] in ("object", "thing")
    assert described > 300
