from __future__ import annotations

from pathlib import Path

import pytest

from vlmt.data.text import HypernymMap
from vlmt.data.text.optional import nltk_wordnet
from vlmt.errors import DataError

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "text"


@pytest.mark.parametrize("name", ["hypernyms_tiny.tsv", "hypernyms_tiny.json"])
def test_closure_is_ordered_nearest_first(name):
    hyp = HypernymMap.from_file(FIXTURES / name)
    assert hyp.hypernyms("square") == ["rectangle", "polygon", "shape"]
    assert hyp.hypernyms("dog") == ["canine", "pet", "animal"]  # two parents, shared root once
    assert hyp.hypernyms("shape") == [] and hyp.hypernyms("unicorn") == []
    assert hyp.parents("dog") == ["canine", "pet"]
    assert hyp.hypernyms("square", within={"polygon", "shape", "square"}) == ["polygon", "shape"]


def test_tsv_and_json_describe_the_same_map():
    tsv = HypernymMap.from_file(FIXTURES / "hypernyms_tiny.tsv")
    js = HypernymMap.from_file(FIXTURES / "hypernyms_tiny.json")
    assert tsv.to_dict() == js.to_dict()


def test_save_round_trip(tmp_path):
    hyp = HypernymMap.from_file(FIXTURES / "hypernyms_tiny.tsv")
    hyp.save(tmp_path / "h.json")
    again = HypernymMap.from_file(tmp_path / "h.json")
    assert again.to_dict() == hyp.to_dict()
    assert again.hypernyms("triangle") == ["polygon", "shape"]


def test_cycle_in_tsv_names_file_line_and_words(tmp_path):
    path = tmp_path / "h.tsv"
    path.write_text("square\trectangle\nrectangle\tpolygon\n# comment\npolygon\tsquare\n")
    with pytest.raises(DataError) as e:
        HypernymMap.from_file(path)
    msg = str(e.value)
    assert str(path) in msg and "line 4" in msg
    assert "square -> rectangle -> polygon -> square" in msg


def test_cycle_in_json_and_self_loop(tmp_path):
    path = tmp_path / "h.json"
    path.write_text('{"a": ["b"], "b": ["a"]}')
    with pytest.raises(DataError, match="a -> b -> a"):
        HypernymMap.from_file(path)
    with pytest.raises(DataError, match="x -> x"):
        HypernymMap({"x": ["x"]})


@pytest.mark.parametrize(
    "name,content,text",
    [
        ("h.tsv", "dog\tcanine\tanimal\n", "line 1"),
        ("h.tsv", "dog\t \n", "'parent'"),
        ("h.json", '{"dog": "canine"}', "'parents'"),
        ("h.json", "[1, 2]", "JSON object"),
        ("h.json", "{oops", "not valid JSON"),
    ],
)
def test_malformed_files_are_errors(tmp_path, name, content, text):
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(DataError) as e:
        HypernymMap.from_file(path)
    assert str(path) in str(e.value) and text in str(e.value)


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match="not found"):
        HypernymMap.from_file(tmp_path / "none.tsv")


@pytest.mark.skipif(nltk_wordnet() is None, reason="NLTK WordNet data not installed")
def test_wordnet_hypernyms_reach_the_root():
    hyp = HypernymMap.from_wordnet(["dog", "man.n.01"])
    assert "canine" in hyp.hypernyms("dog")
    assert hyp.hypernyms("dog")[-1] == "entity"
    assert hyp.hypernyms("man.n.01")[-1] == "entity"


def test_each_hypernym_precedes_its_own_hypernyms_when_paths_differ_in_length():
    # man -> adult -> person -> organism -> object -> entity, and person -> agent -> entity:
    # breadth first would put "entity" before "object"; it must come last
    hyp = HypernymMap({
        "man": ["adult"], "adult": ["person"], "person": ["organism", "agent"],
        "organism": ["object"], "object": ["entity"], "agent": ["entity"],
    })
    order = hyp.hypernyms("man")
    assert order == ["adult", "person", "organism", "agent", "object", "entity"]
    for word in order:
        for ancestor in hyp.hypernyms(word):
            assert order.index(ancestor) > order.index(word)
