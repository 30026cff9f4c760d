from __future__ import annotations

import json

from vlmt.data.examples import GenomeImage
from vlmt.data.readers import visual_genome as vg


def _read(d):
    return vg.read_visual_genome(d / "image_data.json", d / "objects.json", d / "attributes.json")


def test_objects_names_synsets_attributes_and_xyxy_boxes(fixtures):
    images = {im.image_id: im for im in _read(fixtures / "visual_genome")}
    assert sorted(images) == [1, 2, 3] and images[3].coco_id == 262148 and images[1].coco_id is None
    tree = images[1].objects[0]
    assert tree.object_id == 1058549 and tree.names == ("trees",) and tree.synsets == ("tree.n.01",)
    assert tree.attributes == ("green", "tall") and tree.box == (0.0, 0.0, 799.0, 557.0)
    assert images[2].objects[0].names == ("car", "vehicle")


def test_older_release_field_names(tmp_path):
    (tmp_path / "image_data.json").write_text(json.dumps([{"id": 7, "width": 100, "height": 80, "url": "u",
                                                            "coco_id": 5}]))
    (tmp_path / "objects.json").write_text(json.dumps([{"image": {"id": 7}, "objects": [
        {"id": 70, "x": 1, "y": 2, "w": 10, "h": 20, "name": "dog", "synsets": ["dog.n.01"]}]}]))
    (im,) = vg.read_visual_genome(tmp_path / "image_data.json", tmp_path / "objects.json")
    assert im.image_id == 7 and im.objects[0].object_id == 70 and im.objects[0].names == ("dog",)
    assert im.objects[0].box == (1.0, 2.0, 11.0, 22.0)


def test_overlap_rule_drops_vqa_images_by_coco_id_and_by_content(fixtures, tmp_path):
    images = _read(fixtures / "visual_genome")
    kept, dropped = vg.drop_vqa_overlap(images, {262148, 393225})
    assert [im.image_id for im in dropped] == [3] and [im.image_id for im in kept] == [1, 2]
    # image 2 has no coco_id, but its file is byte-identical to a VQA image
    (tmp_path / "vg2.jpg").write_bytes(b"\xff\xd8same pixels")
    (tmp_path / "vg1.jpg").write_bytes(b"\xff\xd8other pixels")
    (tmp_path / "COCO_val2014_000000393225.jpg").write_bytes(b"\xff\xd8same pixels")
    kept, dropped = vg.drop_vqa_overlap(images, {262148},
                                        genome_image_files={1: tmp_path / "vg1.jpg", 2: tmp_path / "vg2.jpg"},
                                        vqa_image_files=[tmp_path / "COCO_val2014_000000393225.jpg"])
    assert sorted(im.image_id for im in dropped) == [2, 3]
    assert all(isinstance(im, GenomeImage) for im in kept)


def test_streamed_reading_and_the_id_only_scan_agree_and_name_every_bad_field(tmp_path):
    import pytest

    from vlmt.data.readers._common import collector
    from vlmt.errors import DataError

    (tmp_path / "image_data.json").write_text(json.dumps([{"image_id": 1, "width": 100, "height": 80},
                                                          {"image_id": 2, "width": 100, "height": 80}]))
    good = {"object_id": 10, "x": 1, "y": 2, "w": 10, "h": 20, "names": ["dog"], "synsets": ["dog.n.01"]}
    bad = [dict(good, object_id=11, synsets=""), dict(good, object_id=12, w=True),
           dict(good, object_id=13, names=[" "]), dict(good, object_id=14, x=float("nan")),
           dict(good, object_id=15, h=500)]
    (tmp_path / "objects.json").write_text(json.dumps([{"image_id": 1, "objects": [good, *bad]},
                                                       {"image_id": 2, "objects": [dict(good, object_id=20)]}]))
    (tmp_path / "attributes.json").write_text(json.dumps([{"image_id": 2, "attributes": [
        dict(good, object_id=20, attributes=["brown"]), dict(good, object_id=21, attributes=["old"])]}]))
    problems, report = collector()
    images = vg.read_visual_genome(tmp_path / "image_data.json", tmp_path / "objects.json",
                                   tmp_path / "attributes.json", report=report)
    assert [[o.object_id for o in im.objects] for im in images] == [[10], [20]]
    assert images[1].objects[0].attributes == ("brown",)
    fields = ["'synsets'", "'w'", "'names'", "'x/y/w/h'", "'x/y/w/h'", "'object_id'"]
    assert len(problems) == len(fields) and all(f in p for f, p in zip(fields, problems)), problems
    scanned, again = collector()
    images2, n_objects = vg.scan_visual_genome(tmp_path / "image_data.json", tmp_path / "objects.json",
                                               tmp_path / "attributes.json", report=again)
    assert scanned == problems and n_objects == 2 and [im.image_id for im in images2] == [1, 2]
    (tmp_path / "objects.json").write_text(json.dumps({"objects": []}))
    with pytest.raises(DataError, match="top level must be a JSON list, got dict"):
        vg.read_visual_genome(tmp_path / "image_data.json", tmp_path / "objects.json")


def test_the_column_table_holds_what_the_object_reader_reads(fixtures, tmp_path):
    """`read_genome_table` and `read_visual_genome` agree image by image, also where the release
    repeats an image entry or an object id, and where attributes.json replaces objects.json's."""
    d = fixtures / "visual_genome"
    table = vg.read_genome_table(d / "image_data.json", d / "objects.json", d / "attributes.json")
    want = _read(d)
    assert table.num_images == len(want)
    for i, im in enumerate(want):
        got = table.image(i)
        assert (got.image_id, got.width, got.height, got.coco_id) == (im.image_id, im.width, im.height, im.coco_id)
        assert [(o.object_id, o.box, o.names, o.attributes) for o in got.objects] == \
            [(o.object_id, o.box, o.names, o.attributes) for o in im.objects]

    (tmp_path / "image_data.json").write_text(json.dumps([{"image_id": 5, "width": 100, "height": 80},
                                                          {"image_id": 6, "width": 100, "height": 80}]))
    obj = {"object_id": 1, "x": 1, "y": 2, "w": 10, "h": 20, "names": ["dog"], "attributes": ["old"]}
    (tmp_path / "objects.json").write_text(json.dumps([
        {"image_id": 6, "objects": [obj, dict(obj, object_id=2, names=["cat"])]},
        {"image_id": 5, "objects": [dict(obj, object_id=3, names=["cow", " ox "])]},
        {"image_id": 6, "objects": [dict(obj, object_id=4), dict(obj, names=["puppy"], x=3)]}]))
    (tmp_path / "attributes.json").write_text(json.dumps([
        {"image_id": 6, "attributes": [dict(obj, object_id=2, attributes=["black"])]},
        {"image_id": 6, "attributes": [dict(obj, object_id=2, attributes=["small", "black"]),
                                       dict(obj, object_id=4, attributes=[])]}]))
    files = [tmp_path / n for n in ("image_data.json", "objects.json", "attributes.json")]
    table = vg.read_genome_table(*files)
    want = vg.read_visual_genome(*files)
    got = [table.image(i) for i in range(table.num_images)]
    assert [[(o.object_id, o.box, o.names, o.attributes) for o in im.objects] for im in got] == \
        [[(o.object_id, o.box, o.names, o.attributes) for o in im.objects] for im in want]
    # object 1 of image 6 keeps its first place with its last content; 2 has the last attribute entry
    assert [(o.object_id, o.names, o.attributes) for o in got[1].objects] == \
        [(1, ("puppy",), ("old",)), (2, ("cat",), ("small", "black")), (4, ("dog",), ())]
    assert got[0].objects[0].names == ("cow", "ox")


def test_the_column_table_reports_an_attribute_of_an_unknown_object_as_the_object_reader_does(tmp_path):
    from vlmt.data.readers._common import collector

    (tmp_path / "image_data.json").write_text(json.dumps([{"image_id": 1, "width": 100, "height": 80}]))
    obj = {"object_id": 10, "x": 1, "y": 2, "w": 10, "h": 20, "names": ["dog"]}
    (tmp_path / "objects.json").write_text(json.dumps([{"image_id": 1, "objects": [obj]}]))
    (tmp_path / "attributes.json").write_text(json.dumps([{"image_id": 1, "attributes": [
        dict(obj, attributes=["brown"]), dict(obj, object_id=99, attributes=["red"])]}]))
    files = [tmp_path / n for n in ("image_data.json", "objects.json", "attributes.json")]
    seen = []
    for read in (vg.read_visual_genome, vg.read_genome_table):
        problems, report = collector()
        read(*files, report=report)
        seen.append(problems)
    assert seen[0] == seen[1] and len(seen[0]) == 1 and "object 99 is not in objects.json" in seen[0][0]
