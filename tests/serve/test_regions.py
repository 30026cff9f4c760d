"""Precomputed regions through the API, for a model trained on stored features: an image id of the
feature store the operator names (`vlmt serve --store`) or a file of bottom-up TSV lines, answered
as the Python API answers the same regions; bad lines are a 400 naming the line and the field."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("fastapi", reason="the serving extra (pip install 'vlmt[serve]') is not installed")
from starlette.testclient import TestClient  # noqa: E402

import vlmt  # noqa: E402
from vlmt.data.features.convert import encode_tsv_line  # noqa: E402
from vlmt.data.features.store import FeatureStore  # noqa: E402
from vlmt.serve.app import create_app  # noqa: E402
from vlmt.serve.gallery import find_gallery  # noqa: E402
from vlmt.serve.inputs import Limits  # noqa: E402
from vlmt.serve.models import load_models  # noqa: E402

QUESTION = "what color is the square?"


@pytest.fixture(scope="module")
def world(model_dirs):
    from vlmt.config import from_dict

    data = from_dict(json.loads((model_dirs["tiny"] / "config.json").read_text())["experiment"]).data
    gallery = find_gallery(data, limit=3)
    assert gallery.features is not None
    return gallery.features, [im.image_id for im in gallery.images]


@pytest.fixture(scope="module")
def client(model_dirs, world) -> TestClient:
    served = load_models([model_dirs["tiny"]], log=lambda _: None)
    return TestClient(create_app(served, limits=Limits(), page=False, store=world[0]))


def expected(model_dirs, features, boxes, top_k=3) -> list[str]:
    got = vlmt.load(model_dirs["tiny"]).answer(question=QUESTION, regions=features, boxes=boxes, top_k=top_k)
    return [a["answer"] for a in got]


def test_a_store_id_is_answered_from_the_servers_feature_store(client, model_dirs, world):
    store, ids = world
    record = FeatureStore(store).read(ids[1])
    got = client.post("/api/answer", data={"store_id": str(ids[1]), "question": QUESTION, "top_k": "3"})
    assert got.status_code == 200, got.text
    body = got.json()
    assert body["regions_from"] == "feature store" and len(body["regions"]) == len(record.boxes)
    assert [a["answer"] for a in body["answers"]] == expected(model_dirs, record.features, record.boxes)
    ground = client.post("/api/ground", data={"store_id": str(ids[0]), "sentence": "the red square"})
    assert ground.status_code == 200 and ground.json()["regions_from"] == "feature store"
    health = client.get("/api/health").json()
    assert health["feature_store"] == {"images": len(FeatureStore(store))} and str(store) not in json.dumps(health)


def test_bottom_up_tsv_lines_are_answered_one_picture_a_line(client, model_dirs, world):
    store, ids = world
    records = [FeatureStore(store).read(i) for i in ids[:2]]
    tsv = b"".join(encode_tsv_line(i, 128, 128, r.boxes, r.features) for i, r in zip(ids, records))
    got = client.post("/api/answer", files={"regions": ("regions.tsv", tsv, "text/tab-separated-values")},
                      data={"question": QUESTION, "top_k": "3"})
    assert got.status_code == 200, got.text
    results = got.json()["results"]
    assert [r["picture"] for r in results] == [0, 1] and {r["regions_from"] for r in results} == {"bottom-up TSV"}
    for r, record in zip(results, records):
        assert [a["answer"] for a in r["answers"]] == expected(model_dirs, record.features, record.boxes)


def test_bad_precomputed_regions_are_4xx_errors_naming_what(client, world, model_dirs):
    store, ids = world
    record = FeatureStore(store).read(ids[0])
    good = encode_tsv_line(ids[0], 128, 128, record.boxes, record.features)
    cols = good.rstrip(b"\r\n").split(b"\t")
    broken = b"\t".join([*cols[:5], b"not base64!"]) + b"\r\n"
    narrow = encode_tsv_line(ids[0], 128, 128, record.boxes, record.features[:, :3])
    for tsv, status, words in ((good + broken, 400, ["line 2", "field 'features'", "base64"]),
                               (b"", 400, ["empty"]),
                               (b"1\t2\t3\n", 400, ["regions (bottom-up TSV)"]),
                               (narrow, 400, ["regions", f"({len(record.boxes)}, 3)"])):
        got = client.post("/api/answer", files={"regions": ("r.tsv", tsv, "text/plain")}, data={"question": QUESTION})
        assert got.status_code == status, got.text
        error = got.json()["error"]
        assert all(w in error for w in words), error
        assert "/tmp" not in error and "vlmt-regions-" not in error  # no server path
    missing = client.post("/api/answer", data={"store_id": "999999", "question": QUESTION})
    assert missing.status_code == 404 and "no image 999999" in missing.json()["error"]
    assert str(store) not in missing.json()["error"]
    word = client.post("/api/answer", data={"store_id": "seven", "question": QUESTION})
    assert word.status_code == 400 and "whole number" in word.json()["error"]
    no_store = TestClient(create_app(load_models([model_dirs["tiny"]], log=lambda _: None), page=False))
    refused = no_store.post("/api/answer", data={"store_id": str(ids[0]), "question": QUESTION})
    assert refused.status_code == 400 and "vlmt serve --store" in refused.json()["error"]


def test_ground_takes_several_precomputed_pictures_and_names_a_bad_one(client, world):
    store, ids = world
    records = [FeatureStore(store).read(i) for i in ids[:2]]
    tsv = b"".join(encode_tsv_line(i, 128, 128, r.boxes, r.features) for i, r in zip(ids, records))
    regions = {"regions": ("regions.tsv", tsv, "text/tab-separated-values")}
    sentence = {"sentence": "the red square left of the blue circle"}
    got = client.post("/api/ground", files=regions, data={**sentence, "store_id": [str(ids[2]), str(ids[0])]})
    assert got.status_code == 200, got.text
    results = got.json()["results"]
    # the lines of the regions file, then the store ids, in the order sent
    assert [(r["picture"], r["regions_from"]) for r in results] == [
        (0, "bottom-up TSV"), (1, "bottom-up TSV"), (2, "feature store"), (3, "feature store")]
    for i, image_id in enumerate([*ids[:2], ids[2], ids[0]]):
        alone = client.post("/api/ground", data={**sentence, "store_id": str(image_id)}).json()
        assert {k: v for k, v in results[i].items() if k not in ("picture", "regions_from")} == \
            {k: v for k, v in alone.items() if k != "regions_from"}  # the same regions: the same numbers
    missing = client.post("/api/ground", data={**sentence, "store_id": [str(ids[0]), "999999"]})
    assert missing.status_code == 404 and missing.json()["error"].startswith("store_id 2: the server's feature store "
                                                                             "has no image 999999")
    two_files = [("regions", ("a.tsv", tsv, "text/plain")), ("regions", ("b.tsv", b"1\t2\t3\n", "text/plain"))]
    bad = client.post("/api/ground", files=two_files, data=sentence)
    assert bad.status_code == 400 and bad.json()["error"].startswith("regions 2 (bottom-up TSV)"), bad.text


def test_a_model_trained_on_stored_features_is_served_from_regions_and_refuses_pictures(world, picture, tmp_path):
    import shutil

    from vlmt.cli import main
    from vlmt.data.datasets.sources import resolve_source

    stored = tmp_path / "stored"  # the tiny world with features from its store alone (as converted bottom-up ones)
    shutil.copytree(resolve_source("world:tiny"), stored, ignore=shutil.ignore_patterns("region_extractor", "images"))
    run = tmp_path / "run"
    assert main(["train", "tiny", "--out", str(run), "--set", f"data.root={stored}", "--set", "train.max_iters=20",
                 "--set", "train.progress=false"]) == 0
    client = TestClient(create_app(load_models([run], log=lambda _: None), page=False, store=stored / "features"))
    refused = client.post("/api/answer", files={"image": ("x.png", picture, "image/png")}, data={"question": QUESTION})
    assert refused.status_code == 400
    assert "precomputed region features" in refused.json()["error"] and str(tmp_path) not in refused.json()["error"]
    image_id = world[1][0]
    got = client.post("/api/answer", data={"store_id": str(image_id), "question": QUESTION, "top_k": "3"})
    assert got.status_code == 200, got.text
    record = FeatureStore(stored / "features").read(image_id)
    expected = vlmt.load(run).answer(question=QUESTION, regions=record.features, boxes=record.boxes, top_k=3)
    assert [a["answer"] for a in got.json()["answers"]] == [a["answer"] for a in expected]
