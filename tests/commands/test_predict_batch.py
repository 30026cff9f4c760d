"""`vlmt predict` on many: a folder of pictures or a JSONL of (picture, question) records answered
into a JSONL file (written whole or not at all) with a progress bar, the same answers as one call
each; bad records are one line naming the file, the line and the field; precomputed regions by
image id from a feature store or a bottom-up TSV file."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

import vlmt
from vlmt.cli import main

QUESTIONS = ["what color is the square?", "how many circles are there?"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> dict[str, Path]:
    """configs/tiny.yaml trained briefly and exported; four of its test pictures in a folder; its store."""
    from vlmt.config import from_dict
    from vlmt.serve.gallery import find_gallery

    torch.set_num_threads(1)
    tmp = tmp_path_factory.mktemp("predict_batch")
    assert main(["train", "tiny", "--out", str(tmp / "run"), "--set", "train.max_iters=30",
                 "--set", "train.progress=false"]) == 0
    assert main(["export", str(tmp / "run"), "--out", str(tmp / "model"), "--metrics", "none"]) == 0
    gallery = find_gallery(from_dict(vlmt.load(tmp / "model").info["experiment"]).data, limit=4)
    (tmp / "pictures").mkdir()
    for im in gallery.images:
        shutil.copyfile(im.path, tmp / "pictures" / f"{im.image_id}.png")
    assert gallery.features is not None
    return {"model": tmp / "model", "pictures": tmp / "pictures", "store": gallery.features,
            "ids": [im.image_id for im in gallery.images]}


def rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_a_folder_with_two_questions_gives_the_answers_one_call_each_gives(tiny, tmp_path, capsys):
    out = tmp_path / "answers.jsonl"
    argv = ["predict", str(tiny["model"]), "--images", str(tiny["pictures"]), "--out", str(out), "--top", "3"]
    for q in QUESTIONS:
        argv += ["--question", q]
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert "8 answers (4 pictures)" in err and "8/8" in err  # the summary and the progress bar
    got = rows(out)
    pictures = sorted(tiny["pictures"].iterdir())
    assert [(Path(r["image"]).name, r["question"]) for r in got] == [(p.name, q) for p in pictures for q in QUESTIONS]
    model = vlmt.load(tiny["model"])
    for r in got:
        alone = model.answer(r["image"], r["question"], top_k=3)
        assert [a["answer"] for a in r["answers"]] == [a["answer"] for a in alone] and r["answer"] == alone[0]["answer"]
        np.testing.assert_allclose([a["score"] for a in r["answers"]], [a["score"] for a in alone], atol=1e-4)
    assert [p.name for p in tmp_path.iterdir()] == ["answers.jsonl"]  # no temporary file left


def test_a_jsonl_of_pairs_keeps_its_order_and_ids(tiny, tmp_path):
    pictures = sorted(tiny["pictures"].iterdir())
    requests = tmp_path / "requests.jsonl"
    shutil.copytree(tiny["pictures"], tmp_path / "pics")
    lines = [{"image": f"pics/{pictures[i % 4].name}", "question": QUESTIONS[i % 2], "id": f"q{i}"} for i in range(6)]
    requests.write_text("\n".join(json.dumps(x) for x in lines) + "\n\n")
    out = tmp_path / "out" / "answers.jsonl"
    assert main(["predict", str(tiny["model"]), "--input", str(requests), "--out", str(out), "--batch-size", "4",
                 "--no-progress"]) == 0
    got = rows(out)
    assert [r["id"] for r in got] == [x["id"] for x in lines]
    assert all(set(r) == {"image", "question", "id", "answer", "answers", "unknown_words", "warnings"} for r in got)
    assert [Path(r["image"]).name for r in got] == [Path(x["image"]).name for x in lines]


@pytest.mark.parametrize("line, field, message", [
    ('{"image": "pics/a.png", "question": "what?"', None, "not JSON"),
    ('{"image": "pics/nope.png", "question": "what color?"}', "image", "no such picture file"),
    ('{"image": "pics/a.png"}', "question", "missing"),
    ('{"image": "pics/a.png", "question": "??"}', "question", "in words"),
    ('{"image": "pics/a.png", "question": "what?", "colour": 1}', "colour", "unknown field"),
    ('{"question": "what color?"}', None, "neither"),
    ('{"image_id": "x7", "question": "what color?"}', "image_id", "whole number"),
    ('{"image": "pics/broken.png", "question": "what color?"}', "image", "cannot read"),
])
def test_a_bad_record_is_one_line_naming_file_line_and_field(tiny, tmp_path, capsys, line, field, message):
    (tmp_path / "pics").mkdir()
    shutil.copyfile(sorted(tiny["pictures"].iterdir())[0], tmp_path / "pics" / "a.png")
    (tmp_path / "pics" / "broken.png").write_bytes(b"\x89PNG not really")
    requests = tmp_path / "requests.jsonl"
    requests.write_text(json.dumps({"image": "pics/a.png", "question": "what color?"}) + "\n" + line + "\n")
    out = tmp_path / "answers.jsonl"
    capsys.readouterr()
    rc = main(["predict", str(tiny["model"]), "--input", str(requests), "--out", str(out), "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert rc != 0 and "Traceback" not in err and len(err.splitlines()) == 1, err
    assert "requests.jsonl" in err and "line 2" in err and message in err
    if field is not None:
        assert f"field {field!r}" in err
    assert not out.exists() and [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_precomputed_regions_from_a_feature_store_or_a_bottom_up_tsv(tiny, tmp_path, capsys):
    from vlmt.data.features.convert import encode_tsv_line
    from vlmt.data.features.store import FeatureStore

    store = FeatureStore(tiny["store"])
    model = vlmt.load(tiny["model"])
    image_id = tiny["ids"][1]
    record = store.read(image_id)
    expected = model.answer(question=QUESTIONS[0], regions=record.features, boxes=record.boxes, top_k=3)
    tsv = tmp_path / "features.tsv"
    tsv.write_bytes(b"".join(encode_tsv_line(i, 128, 128, store.read(i).boxes, store.read(i).features)
                             for i in tiny["ids"]))
    for source in (["--store", str(tiny["store"])], ["--tsv", str(tsv)]):
        capsys.readouterr()
        assert main(["predict", str(tiny["model"]), "--image-id", str(image_id), "--question", QUESTIONS[0],
                     "--top", "3", "--json", *source]) == 0
        got = json.loads(capsys.readouterr().out)
        assert [a["answer"] for a in got["answers"]] == [a["answer"] for a in expected] and got["image_id"] == image_id
    requests = tmp_path / "requests.jsonl"
    requests.write_text("".join(json.dumps({"image_id": i, "question": QUESTIONS[0]}) + "\n" for i in tiny["ids"]))
    out = tmp_path / "answers.jsonl"
    assert main(["predict", str(tiny["model"]), "--input", str(requests), "--out", str(out), "--tsv", str(tsv),
                 "--top", "3", "--no-progress"]) == 0
    assert [a["answer"] for a in rows(out)[1]["answers"]] == [a["answer"] for a in expected]
    requests.write_text(json.dumps({"image_id": 999999, "question": QUESTIONS[0]}) + "\n")
    capsys.readouterr()
    assert main(["predict", str(tiny["model"]), "--input", str(requests), "--out", str(out), "--tsv", str(tsv)]) != 0
    err = capsys.readouterr().err
    assert "line 1" in err and "field 'image_id'" in err and "999999" in err


def test_a_model_trained_on_stored_features_answers_image_ids_and_refuses_pictures(tiny, tmp_path, capsys):
    from vlmt.data.datasets.sources import resolve_source

    stored = tmp_path / "stored"  # the tiny world with features from its store alone (as converted bottom-up ones)
    shutil.copytree(resolve_source("world:tiny"), stored, ignore=shutil.ignore_patterns("region_extractor", "images"))
    run = tmp_path / "run"
    assert main(["train", "tiny", "--out", str(run), "--set", f"data.root={stored}", "--set", "train.max_iters=20",
                 "--set", "train.progress=false"]) == 0
    requests = tmp_path / "requests.jsonl"
    requests.write_text(json.dumps({"image_id": tiny["ids"][0], "question": QUESTIONS[0]}) + "\n"
                        + json.dumps({"image": str(sorted(tiny["pictures"].iterdir())[0]), "question": QUESTIONS[0]})
                        + "\n")
    out = tmp_path / "answers.jsonl"
    capsys.readouterr()
    assert main(["predict", str(run), "--input", str(requests), "--out", str(out), "--store",
                 str(stored / "features")]) != 0
    err = capsys.readouterr().err
    assert "line 2" in err and "field 'image'" in err and "precomputed region features" in err and not out.exists()
    requests.write_text(json.dumps({"image_id": tiny["ids"][0], "question": QUESTIONS[0]}) + "\n")
    assert main(["predict", str(run), "--input", str(requests), "--out", str(out), "--store", str(stored / "features"),
                 "--no-progress"]) == 0
    features, boxes = vlmt.load(run).regions_from_store(stored / "features", tiny["ids"][0])
    expected = vlmt.load(run).answer(question=QUESTIONS[0], regions=features, boxes=boxes, top_k=5)
    assert [a["answer"] for a in rows(out)[0]["answers"]] == [a["answer"] for a in expected]
