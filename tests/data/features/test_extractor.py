from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from vlmt.data.features.extractor import (
    GEOMETRY_DIM,
    SQUARE_MARGIN,
    RegionCNN,
    RegionExample,
    RegionExtractor,
    box_geometry,
    crop_regions,
    crop_window,
    train_region_extractor,
)


def test_crop_of_the_whole_image_at_its_own_size_is_the_image():
    img = torch.rand(2, 3, 16, 20)
    boxes = torch.tensor([[0.0, 0.0, 20.0, 16.0]])
    crop = torch.nn.functional.interpolate(img[1:2], size=(16, 16), mode="bilinear", align_corners=False)
    out = crop_regions(img, boxes, torch.tensor([1]), 16)
    assert torch.allclose(out, crop, atol=1e-5)


def test_crop_takes_the_right_region():
    img = torch.zeros(1, 3, 32, 32)
    img[:, 0, 8:16, 20:28] = 1.0  # red patch at x 20..28, y 8..16
    out = crop_regions(img, torch.tensor([[20.0, 8.0, 28.0, 16.0], [0.0, 16.0, 8.0, 24.0]]), torch.tensor([0, 0]), 4)
    assert torch.allclose(out[0, 0], torch.ones(4, 4)) and out[1].abs().max() == 0


def test_square_crops_keep_the_object_aspect_whatever_the_box():
    boxes = torch.tensor([[10.0, 20.0, 50.0, 30.0], [0.0, 0.0, 8.0, 8.0]])
    assert torch.equal(crop_window(boxes, "box"), boxes)
    win = crop_window(boxes, "square")
    side = win[:, 2] - win[:, 0]
    assert torch.allclose(side, win[:, 3] - win[:, 1])  # square
    assert torch.allclose(side, torch.tensor([40.0, 8.0]) * (1 + 2 * SQUARE_MARGIN))  # longer side plus margins
    assert torch.allclose((win[:, :2] + win[:, 2:]) / 2, (boxes[:, :2] + boxes[:, 2:]) / 2)  # same centre
    # a wide box over a round blob: the stretched crop squashes it, the square crop keeps it round
    img = torch.zeros(1, 3, 64, 64)
    yy, xx = torch.meshgrid(torch.arange(64.0), torch.arange(64.0), indexing="ij")
    img[0, :, ((yy - 32) ** 2 + (xx - 32) ** 2) < 64] = 1.0  # a disc of radius 8 at (32, 32)
    wide = torch.tensor([[16.0, 24.0, 48.0, 40.0]])  # 32 x 16 around the disc
    for crop, round_ in (("box", False), ("square", True)):
        c = crop_regions(img, crop_window(wide, crop), torch.tensor([0]), 32)[0, 0] > 0.5
        width, height = int(c.any(0).sum()), int(c.any(1).sum())
        assert (abs(width - height) <= 1) == round_, (crop, width, height)
    with pytest.raises(ValueError, match="unknown crop 'tight'"):
        crop_window(boxes, "tight")
    with pytest.raises(ValueError, match="unknown crop 'tight'"):
        RegionCNN(num_objects=2, num_attributes=2, crop="tight")


def test_the_crop_is_saved_with_the_weights_and_older_files_read_as_box(tmp_path):
    rng = np.random.default_rng(1)
    images, regions = _toy_data(rng, 8)
    ext = train_region_extractor(images, regions, object_names=["red square", "blue square"],
                                 attribute_names=["red", "blue"], feature_dim=16, epochs=1, batch_size=8, seed=0,
                                 crop="square")
    boxes = [np.array([r.box]) for r in regions]
    ext.save(tmp_path / "ext")
    again = RegionExtractor.load(tmp_path / "ext")
    assert again.model.config.crop == "square"
    assert np.allclose(again.extract(images, boxes)[2], ext.extract(images, boxes)[2], atol=1e-6)
    meta_path = tmp_path / "ext" / RegionExtractor.META
    meta = json.loads(meta_path.read_text())
    del meta["config"]["crop"]  # as written before the choice existed
    meta_path.write_text(json.dumps(meta))
    old = RegionExtractor.load(tmp_path / "ext")
    assert old.model.config.crop == "box"
    assert not np.allclose(old.extract(images, boxes)[2], ext.extract(images, boxes)[2], atol=1e-6)


def test_geometry():
    g = box_geometry(torch.tensor([[0.0, 0.0, 50.0, 25.0]]), 100.0, 50.0)
    assert torch.allclose(g[0, :5], torch.tensor([0.0, 0.0, 0.5, 0.5, 0.5]))
    assert np.isclose(float(g[0, 5]), np.log(2.0))


def _toy_data(rng, n):
    """Images of one coloured square on grey: the class is the colour."""
    colours = [(255, 0, 0), (0, 0, 255)]
    images, regions = [], []
    for k in range(n):
        im = np.full((40, 48, 3), 128, np.uint8)
        c = k % 2
        x, y = rng.integers(0, 30), rng.integers(0, 22)
        im[y:y + 14, x:x + 14] = colours[c]
        images.append(im)
        regions.append(RegionExample(k, (float(x), float(y), float(x + 14), float(y + 14)), c, (c,)))
    return images, regions


def test_extractor_learns_saves_and_reloads(tmp_path):
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    images, regions = _toy_data(rng, 40)
    ext = train_region_extractor(images, regions, object_names=["red square", "blue square"],
                                 attribute_names=["red", "blue"], feature_dim=16, epochs=15, batch_size=16, seed=0)
    boxes = [np.array([r.box]) for r in regions]
    preds = ext.predict(images, boxes)
    acc = np.mean([p[0]["object"] == ("red square", "blue square")[r.object] for p, r in zip(preds, regions)])
    assert acc > 0.9
    feats = ext.extract(images, boxes)
    assert feats[0].shape == (1, 16) and feats[0].dtype == np.float32
    ext.save(tmp_path / "ext")
    again = RegionExtractor.load(tmp_path / "ext")
    assert np.allclose(again.extract(images, boxes)[3], feats[3], atol=1e-6)
    # any images and boxes: different image sizes and box counts, last dims are the geometry
    odd = [np.zeros((30, 30, 3), np.uint8), np.zeros((50, 20, 3), np.uint8)]
    out = again.extract(odd, [np.array([[0, 0, 30, 30.0]]), np.array([[0, 0, 10, 10.0], [5, 5, 20, 50.0]])])
    assert [o.shape for o in out] == [(1, 16), (2, 16)]
    assert np.allclose(out[0][0, -GEOMETRY_DIM:-1], [0, 0, 1, 1, 1])


def test_genome_training_regions_label_true_jittered_and_background_boxes():
    from vlmt.data.examples import GenomeImage, GenomeObject
    from vlmt.data.features.extractor import _box_iou, genome_training_regions

    im = GenomeImage(5, 100, 80, objects=(
        GenomeObject(1, (10.0, 10.0, 40.0, 40.0), ("circle",), attributes=("red", "shiny")),
        GenomeObject(2, (60.0, 20.0, 90.0, 70.0), ("unicorn",)),  # not a known name: ignored
    ))
    regions = genome_training_regions([im], ["square", "circle"], ["red", "blue"], seed=0)
    positives = [r for r in regions if r.object >= 0]
    assert len(positives) == 2 and all(r.object == 1 and r.attributes == (0,) for r in positives)
    assert positives[0].box == (10.0, 10.0, 40.0, 40.0)
    assert _box_iou(positives[1].box, (10, 10, 40, 40)) >= 0.5
    background = [r for r in regions if r.object == -1]
    assert len(background) == 2
    assert all(_box_iou(r.box, o.box) < 0.3 for r in background for o in im.objects)
    assert all(0 <= r.box[0] < r.box[2] <= 100 and 0 <= r.box[1] < r.box[3] <= 80 for r in regions)


def test_proposal_training_regions_label_each_box_by_its_best_true_box():
    from vlmt.data.examples import GenomeImage, GenomeObject
    from vlmt.data.features.extractor import proposal_training_regions

    im = GenomeImage(1, 100, 100, objects=(
        GenomeObject(1, (10.0, 10.0, 30.0, 30.0), ("star",), attributes=("red", "shiny")),
        GenomeObject(2, (60.0, 60.0, 90.0, 90.0), ("zebra",)),  # a name outside the labels
    ))
    props = np.array([
        [11, 11, 30, 30],   # IoU 0.90 with the star -> star, red
        [10, 10, 30, 22],   # IoU 0.60 -> star
        [10, 10, 30, 18],   # IoU 0.40 -> neither: unused
        [60, 60, 90, 88],   # IoU 0.93 with the zebra -> unnamed object: unused, never background
        [0, 40, 50, 55],    # touches nothing -> background
        [5, 5, 5, 40],      # empty -> unused
    ], np.float32)
    regions = proposal_training_regions([im], [props], ["star", "circle"], ["red", "blue"])
    got = [(r.box, r.object, r.attributes) for r in regions]
    assert got == [((10.0, 10.0, 30.0, 30.0), 0, (0,)),  # the true box of the named object
                   ((11.0, 11.0, 30.0, 30.0), 0, (0,)), ((10.0, 10.0, 30.0, 22.0), 0, (0,)),
                   ((0.0, 40.0, 50.0, 55.0), -1, ())]
    without = proposal_training_regions([im], [props], ["star"], ["red"], with_true_boxes=False)
    assert [r.box for r in without] == [g[0] for g in got[1:]]
    with pytest.raises(ValueError, match="1 images but 2 proposal arrays"):
        proposal_training_regions([im], [props, props], ["star"], ["red"])
    with pytest.raises(ValueError, match="background_iou <= foreground_iou"):
        proposal_training_regions([im], [props], ["star"], ["red"], foreground_iou=0.2, background_iou=0.3)
