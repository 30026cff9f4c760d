from __future__ import annotations

import pytest

from vlmt.data.readers import flickr30k_entities as fe
from vlmt.errors import DataError


def test_sentence_markup_gives_plain_sentence_and_word_indices():
    sentence, phrases = fe.parse_sentence(
        "[/EN#283585/people Two young guys] with [/EN#283587/bodyparts shaggy hair] look .")
    assert sentence == "Two young guys with shaggy hair look ."
    assert phrases == [("283585", ("people",), "Two young guys", 0), ("283587", ("bodyparts",), "shaggy hair", 4)]
    _, phrases = fe.parse_sentence("on [/EN#3/other/scene a large rig] .")
    assert phrases == [("3", ("other", "scene"), "a large rig", 1)]


@pytest.mark.parametrize("line", ["[/EN#1/people Two men standing .", "Two men] standing .",
                                  "[/EN#x/people Two men] .", "[/EN#1 Two men] .", "[/EN#1/people ] ."])
def test_malformed_markup_is_an_error(line):
    with pytest.raises(DataError, match="phrase"):
        fe.parse_sentence(line, file="s.txt", record="line 1")


def test_multi_box_entity_is_grounded_by_the_union(fixtures):
    sentences = fe.read_image(fixtures / "flickr30k_entities", 1000092795)
    assert len(sentences) == 5
    guys = sentences[0].phrases[0]
    assert guys.entity_id == "283585" and guys.text == "Two young guys" and guys.first_word_index == 0
    # 1-based VOC pixels become 0-based: (1, 50, 160, 330) and (301, 8, 480, 320)
    assert guys.boxes == ((0.0, 49.0, 159.0, 329.0), (300.0, 7.0, 479.0, 319.0))
    assert guys.ground_truth_box == (0.0, 7.0, 479.0, 329.0)
    hair = sentences[0].phrases[1]
    assert hair.nobox and not hair.boxes and hair.ground_truth_box is None
    yard = sentences[0].phrases[3]
    assert yard.scene and yard.phrase_types == ("scene",)
    assert sentences[0].words[yard.first_word_index:yard.first_word_index + yard.num_words] == ["the", "yard"]
    notvisual = sentences[4].phrases[1]
    assert notvisual.entity_id == "0" and notvisual.boxes == ()


def test_release_splits(fixtures):
    root = fixtures / "flickr30k_entities"
    assert fe.read_split(root, "train") == [1000092795]
    assert fe.read_split(root, "val") == [10002456]
    assert {s.image_id for s in fe.read_flickr30k_entities(root, split="test")} == {1000268201}
    with pytest.raises(DataError, match="unknown split"):
        fe.read_split(root, "dev")


@pytest.mark.parametrize("xml", [
    # entity expansion ("billion laughs", two levels here)
    '<?xml version="1.0"?><!DOCTYPE a [<!ENTITY x "xx"><!ENTITY y "&x;&x;&x;&x;">]>'
    '<annotation><size><width>&y;</width></size></annotation>',
    # an external entity that would make the parser fetch a URL
    '<?xml version="1.0"?><!DOCTYPE a [<!ENTITY e SYSTEM "http://127.0.0.1:9/x">]><annotation>&e;</annotation>',
])
def test_hostile_xml_is_refused_without_expanding_or_fetching(tmp_path, xml):
    from vlmt.data.readers._common import collector

    path = tmp_path / "1.xml"
    path.write_text(xml)
    problems, report = collector()
    assert fe.read_annotation(path, report=report) is None
    assert problems == [f"{path}: refused: it declares a DTD or entities (DTDForbidden), which Flickr30k Entities "
                        "annotations never do"]
