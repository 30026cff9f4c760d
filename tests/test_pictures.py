"""Attention picture primitives on small arrays: the pixel maths and the PNGs they write."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from vlmt import pictures as P


def grey_image(h: int = 40, w: int = 60) -> np.ndarray:
    return np.full((h, w, 3), 200, dtype=np.uint8)


def test_region_heat_adds_weights_inside_boxes_and_scales_to_one():
    boxes = np.array([[0, 0, 10, 10], [5, 5, 20, 20]], dtype=np.float32)
    heat = P.region_heat(30, 30, boxes, np.array([0.2, 0.6]))
    assert heat.shape == (30, 30)
    assert heat[7, 7] == pytest.approx(1.0)            # covered by both: 0.8 / 0.8
    assert heat[2, 2] == pytest.approx(0.2 / 0.8)      # first box only
    assert heat[15, 15] == pytest.approx(0.6 / 0.8)    # second box only
    assert heat[25, 25] == 0.0                         # no box


def test_region_heat_clips_boxes_to_the_image_and_checks_lengths():
    heat = P.region_heat(8, 8, np.array([[-5, -5, 100, 3]]), np.array([1.0]))
    assert heat[:3].min() == 1.0 and heat[3:].max() == 0.0
    with pytest.raises(ValueError, match="2 boxes but 1 weights"):
        P.region_heat(8, 8, np.zeros((2, 4)), np.ones(1))


def test_overlay_keeps_attended_pixels_and_dims_the_rest():
    img = grey_image()
    out = P.attention_overlay(img, np.array([[0, 0, 20, 20], [30, 10, 50, 30]]), np.array([0.9, 0.1]), floor=0.2)
    assert out.shape == (40, 60, 3)
    assert out[5, 5, 0] == pytest.approx(200 / 255)                 # strongest region: unchanged
    assert out[35, 55, 0] == pytest.approx(0.2 * 200 / 255)          # outside every region: floor
    assert out[5, 5, 0] > out[20, 40, 0] > out[35, 55, 0]          # weak region in between


def test_attention_figure_writes_a_png(tmp_path):
    path = P.attention_figure(tmp_path / "a.png", image=grey_image(),
                              boxes=np.array([[0, 0, 20, 20], [30, 10, 50, 30]]),
                              region_weights=np.array([0.7, 0.3]), words=["what", "colour", "is", "the", "star"],
                              word_weights=np.array([0.05, 0.5, 0.05, 0.1, 0.3]), title="vqa", caption="answer: red")
    with Image.open(path) as im:
        assert im.format == "PNG" and im.width > 300 and im.height > 100
    assert [p.name for p in tmp_path.iterdir()] == ["a.png"]  # no temporary file left


def test_grounding_figure_draws_each_phrase_in_its_own_colour(tmp_path):
    img = np.full((64, 64, 3), 255, dtype=np.uint8)
    path = P.grounding_figure(tmp_path / "g.png", image=img, phrases=["a red star", "a blue square"],
                              predicted=np.array([[4, 4, 24, 24], [36, 36, 60, 60]]),
                              truth=[np.array([4, 4, 24, 24]), None], sentence="a red star above a blue square")
    with Image.open(path) as im:
        rgb = np.asarray(im.convert("RGB")).reshape(-1, 3).astype(int)
    def present(hex_colour: str) -> bool:
        target = np.array([int(hex_colour[i:i + 2], 16) for i in (1, 3, 5)])
        return bool((np.abs(rgb - target).sum(axis=1) < 30).any())
    assert present(P.PHRASE_COLOURS[0]) and present(P.PHRASE_COLOURS[1])


def test_word_and_phrase_counts_must_match(tmp_path):
    with pytest.raises(ValueError, match="2 words but 3 weights"):
        P.attention_figure(tmp_path / "x.png", image=grey_image(), boxes=np.zeros((1, 4)), region_weights=np.ones(1),
                           words=["a", "b"], word_weights=np.ones(3))
    with pytest.raises(ValueError, match="1 phrases but 2 predicted"):
        P.grounding_figure(tmp_path / "y.png", image=grey_image(), phrases=["a"], predicted=np.zeros((2, 4)))
    assert not list(tmp_path.iterdir())
