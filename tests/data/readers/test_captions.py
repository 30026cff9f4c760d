from __future__ import annotations

from vlmt.data.readers import captions


def test_karpathy_coco_ids_splits_and_tokens(fixtures):
    images = captions.read_karpathy(fixtures / "karpathy" / "dataset_coco.json")
    assert [(im.image_id, im.split) for im in images] == [
        (391895, "test"), (522418, "restval"), (184613, "val"), (318556, "train")]
    first = images[0]
    assert first.filename == "COCO_val2014_000000391895.jpg"
    assert len(first.captions) == 5 and len(first.tokens) == 5
    assert first.tokens[0][:3] == ("a", "man", "with")


def test_karpathy_flickr_uses_the_file_number_as_image_id(fixtures):
    images = captions.read_karpathy(fixtures / "karpathy" / "dataset_flickr30k.json")
    assert [(im.image_id, im.split) for im in images] == [
        (1000092795, "train"), (10002456, "val"), (1000268201, "test")]


def test_coco_captions_grouped_per_image_with_split_from_name(fixtures):
    images = captions.read_coco_captions(fixtures / "coco" / "captions_val2014.json")
    assert [(im.image_id, im.split, len(im.captions)) for im in images] == [(391895, "val2014", 2),
                                                                            (522418, "val2014", 2)]
    assert images[1].captions[0] == "A woman wearing a net on her head cutting a cake."
