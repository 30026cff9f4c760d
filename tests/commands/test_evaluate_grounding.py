"""`vlmt evaluate grounding` on a Flickr30k Entities folder written in the official format."""

import json
from pathlib import Path

import pytest

from vlmt.cli import main

FIXTURES = Path(__file__).parent.parent / "fixtures" / "metrics"
ENTITIES = FIXTURES / "flickr30k_entities"


def _run(*extra, predictions=FIXTURES / "grounding_predictions.json"):
    return main(["evaluate", "grounding", "--predictions", str(predictions),
                 "--annotations", str(ENTITIES), *extra])


def test_not_an_entities_folder_is_a_clear_error(tmp_path, capsys):
    assert main(["evaluate", "grounding", "--predictions", str(FIXTURES / "grounding_predictions.json"),
                 "--annotations", str(tmp_path)]) == 1
    assert "needs Sentences/ and Annotations/" in capsys.readouterr().err


def test_json_object_hand_worked(capsys):
    pytest.importorskip("vlmt.data.readers.flickr30k_entities")
    assert _run("--json") == 0
    out = json.loads(capsys.readouterr().out)
    # 5 phrases with boxes (the scene phrase has none): first hits at 0, 3, miss, 1, 0
    assert out == {"r1": 40.0, "r5": 80.0, "r10": 80.0, "phrases": 5, "perPhraseType": {
        "clothing": {"r1": 0.0, "r5": 100.0, "r10": 100.0, "phrases": 1},
        "instruments": {"r1": 50.0, "r5": 50.0, "r10": 50.0, "phrases": 2},
        "people": {"r1": 50.0, "r5": 100.0, "r10": 100.0, "phrases": 2}}}


def test_missing_phrase_prediction_names_it(tmp_path, capsys):
    pytest.importorskip("vlmt.data.readers.flickr30k_entities")
    preds = json.loads((FIXTURES / "grounding_predictions.json").read_text())
    del preds["7"]["1"]["3"]
    (tmp_path / "p.json").write_text(json.dumps(preds))
    assert _run(predictions=tmp_path / "p.json") == 1
    assert "image 7 sentence 1 entity 3" in capsys.readouterr().err


def test_listed_image_without_predictions_is_an_error(tmp_path, capsys):
    (tmp_path / "test.txt").write_text("7\n8\n")
    assert _run("--images", str(tmp_path / "test.txt")) == 1
    assert "no predictions for 1 listed image(s), first 8" in capsys.readouterr().err


def test_split_option_reads_the_release_list(tmp_path, capsys):
    import shutil

    root = tmp_path / "entities"
    shutil.copytree(ENTITIES, root)
    (root / "test.txt").write_text("7\n")
    assert main(["evaluate", "grounding", "--predictions", str(FIXTURES / "grounding_predictions.json"),
                 "--annotations", str(root), "--split", "test", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["phrases"] == 5


def test_ground_truth_boxes_score_100_on_the_reader_fixture(tmp_path, capsys):
    from vlmt.data.readers.flickr30k_entities import read_flickr30k_entities
    from vlmt.metrics.grounding import write_grounding_predictions

    root = Path(__file__).parent.parent / "fixtures" / "flickr30k_entities"
    sentences = read_flickr30k_entities(root, split="test")
    preds = {(s.image_id, s.sentence_index, p.entity_id): [[0, 0, 1, 1], list(p.ground_truth_box)]
             for s in sentences for p in s.phrases if p.boxes}
    write_grounding_predictions(tmp_path / "p.json", preds)
    assert main(["evaluate", "grounding", "--predictions", str(tmp_path / "p.json"), "--annotations",
                 str(root), "--split", "test", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert (out["r1"], out["r5"], out["phrases"]) == (0.0, 100.0, len(preds))


def test_inclusive_pixels_flag_changes_only_the_iou_convention(tmp_path, capsys):
    # the hat box is (12, 10, 22, 18) in the XML, (11, 9, 21, 17) in the reader's 0-based pixels;
    # predicting (11, 9, 21, 13) gives continuous IoU 40 / 80 = 0.5 exactly, a hit;
    # (11, 9, 21, 12.9) gives 39 / 80, a miss, but 11 * 4.9 / (11 * 9) = 0.54 with inclusive pixels
    preds = json.loads((FIXTURES / "grounding_predictions.json").read_text())
    preds["7"]["0"]["2"] = [[11, 9, 21, 13]]
    (tmp_path / "p.json").write_text(json.dumps(preds))
    assert _run("--json", predictions=tmp_path / "p.json") == 0
    assert json.loads(capsys.readouterr().out)["perPhraseType"]["clothing"]["r1"] == 100.0
    preds["7"]["0"]["2"] = [[11, 9, 21, 12.9]]
    (tmp_path / "p.json").write_text(json.dumps(preds))
    assert _run("--json", predictions=tmp_path / "p.json") == 0
    assert json.loads(capsys.readouterr().out)["perPhraseType"]["clothing"]["r1"] == 0.0
    assert _run("--json", "--inclusive-pixels", predictions=tmp_path / "p.json") == 0
    assert json.loads(capsys.readouterr().out)["perPhraseType"]["clothing"]["r1"] == 100.0
