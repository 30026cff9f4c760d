"""The JSON API of `vlmt serve`: each method answers, and every bad input gets a 4xx JSON error
that says what was wrong, after which the server answers normally."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("fastapi", reason="the serving extra (pip install 'vlmt[serve]') is not installed")
from starlette.testclient import TestClient  # noqa: E402

import vlmt  # noqa: E402
from vlmt.serve.app import create_app  # noqa: E402
from vlmt.serve.inputs import Limits  # noqa: E402
from vlmt.serve.models import load_models  # noqa: E402

LIMITS = Limits(max_upload_bytes=2_000_000, max_pixels=4_000_000, max_side=4_000, max_text_chars=200)


@pytest.fixture(scope="module")
def client(model_dirs) -> TestClient:
    served = load_models([model_dirs["tiny"], model_dirs["svlr"]], log=lambda _: None)
    return TestClient(create_app(served, limits=LIMITS, workers=2, page=False))


def png(width: int, height: int) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), (200, 30, 30)).save(out, format="PNG")
    return out.getvalue()


def test_health_lists_the_models_their_heads_and_methods(client):
    health = client.get("/api/health").json()
    assert health["status"] == "ok"
    assert health["models"]["tiny"]["methods"] == ["retrieve", "answer", "ground"]  # in the order of its tasks
    assert health["models"]["svlr"]["methods"] == ["recognize", "choose"]
    assert health["models"]["tiny"]["gallery"] > 0


def test_answer_matches_the_python_api(client, model_dirs, picture):
    got = client.post("/api/answer", files={"image": ("x.png", picture, "image/png")},
                      data={"question": "what color is the square?", "top_k": "4"})
    assert got.status_code == 200, got.text
    body = got.json()
    expected = vlmt.load(model_dirs["tiny"]).answer(np.asarray(Image.open(io.BytesIO(picture)).convert("RGB")),
                                                    "what color is the square?", top_k=4)
    assert [a["answer"] for a in body["answers"]] == [a["answer"] for a in expected]
    assert [a["score"] for a in body["answers"]] == pytest.approx([a["score"] for a in expected], abs=1e-6)
    assert body["words"] == ["what", "color", "is", "the", "square"]
    assert abs(sum(r["attention"] for r in body["regions"]) - 1) < 1e-2 and len(body["word_attention"]) == 5


def test_a_gallery_picture_runs_on_the_regions_of_the_feature_store(client, model_dirs):
    from vlmt.config import from_dict
    from vlmt.data.features.store import FeatureStore
    from vlmt.serve.gallery import find_gallery

    data = from_dict(json.loads((model_dirs["tiny"] / "config.json").read_text())["experiment"]).data
    gallery = find_gallery(data)
    first = gallery.images[0]
    assert gallery.features == gallery.folder / "features"
    stored = FeatureStore(gallery.features).read(first.image_id)
    got = client.post("/api/answer", data={"gallery": "0", "question": "what color is the square?", "top_k": "3"})
    assert got.status_code == 200, got.text
    body = got.json()
    assert body["regions_from"] == "feature store"
    assert [r["box"] for r in body["regions"]] == [[round(float(v), 1) for v in b] for b in stored.boxes]
    expected = vlmt.load(model_dirs["tiny"]).answer(question="what color is the square?", regions=stored.features,
                                                    boxes=stored.boxes, top_k=3)
    assert [a["answer"] for a in body["answers"]] == [a["answer"] for a in expected]
    upload = client.post("/api/answer", files={"image": ("x.png", first.path.read_bytes(), "image/png")},
                         data={"question": "what color is the square?"})
    # an upload's regions are found as the training pictures' were: by the world's detector, the same number
    assert upload.json()["regions_from"] == "detector" and len(upload.json()["regions"]) == len(stored.boxes)


def test_answer_takes_several_pictures_and_questions_in_one_request(client, picture):
    questions = ["what color is the square?", "how many circles are there?"]
    files = [("image", ("a.png", picture, "image/png")), ("image", ("b.png", png(64, 48), "image/png"))]
    got = client.post("/api/answer", files=files, data={"question": questions, "gallery": ["0"], "top_k": "3"})
    assert got.status_code == 200, got.text
    results = got.json()["results"]
    assert [(r["picture"], r["question"]) for r in results] == [(i, q) for i in range(3) for q in questions]
    assert [r["regions_from"] for r in results[::2]] == ["detector", "detector", "feature store"]
    for r in results:  # each as its own request answers it
        one = {"files": {"image": files[r["picture"]][1]}} if r["picture"] < 2 else {}
        alone = client.post("/api/answer", data={"question": r["question"], "top_k": "3",
                                                 **({"gallery": "0"} if r["picture"] == 2 else {})}, **one).json()
        assert [a["answer"] for a in alone["answers"]] == [a["answer"] for a in r["answers"]]
        assert [a["score"] for a in alone["answers"]] == pytest.approx([a["score"] for a in r["answers"]], abs=1e-5)
    too_many = client.post("/api/answer", data={"gallery": ["0"] * 2, "question": ["what color?"] * 40})
    assert too_many.status_code == 413 and "the limit is 64" in too_many.json()["error"]
    two = client.post("/api/retrieve", data={"gallery": ["0", "1"]})  # `rank` ranks captions for one picture
    assert two.status_code == 400 and "this call takes one" in two.json()["error"]
    assert "/api/ground, /api/recognize, /api/choose" in two.json()["error"]


# the other routes that take several pictures: what each is sent besides its pictures
BATCHED = {"/api/ground": {"sentence": "the red square left of the blue circle"},
           "/api/recognize": {"top_k": "2"},
           "/api/choose": {"question": "what color is the square?", "choices": "red, blue\ngreen"}}


def same(batched: object, alone: object, where: str = "result") -> None:
    """`batched` is `alone` but for float noise: the pictures' regions come from one pass of the
    detector and the region CNN instead of one pass each (numbers are rounded to 0.1 to 1e-6)."""
    if isinstance(alone, dict):
        assert isinstance(batched, dict) and set(batched) == set(alone), where
        for key in alone:
            same(batched[key], alone[key], f"{where}.{key}")
    elif isinstance(alone, list):
        assert isinstance(batched, list) and len(batched) == len(alone), where
        for i, (b, a) in enumerate(zip(batched, alone)):
            same(b, a, f"{where}[{i}]")
    elif isinstance(alone, float):
        assert batched == pytest.approx(alone, abs=1e-3), where
    else:
        assert batched == alone, where


@pytest.mark.parametrize("route", list(BATCHED))
def test_several_pictures_in_one_request_answer_as_one_request_each(client, picture, route):
    files = [("image", ("a.png", picture, "image/png")), ("image", ("b.png", png(64, 48), "image/png"))]
    got = client.post(route, files=files, data={**BATCHED[route], "gallery": ["1", "0"]})
    assert got.status_code == 200, got.text
    body = got.json()
    assert set(body) == {"model", "results"} and [r["picture"] for r in body["results"]] == [0, 1, 2, 3]
    assert [r["regions_from"] for r in body["results"] if "regions_from" in r] in (
        [], ["detector", "detector", "feature store", "feature store"])
    # each picture as its own request: image files first, then gallery indices, in the order sent
    alone = [client.post(route, files={"image": f}, data=BATCHED[route]) for _, f in files] + \
        [client.post(route, data={**BATCHED[route], "gallery": g}) for g in ("1", "0")]
    for i, (result, one) in enumerate(zip(body["results"], alone)):
        assert one.status_code == 200, one.text
        assert result.pop("picture") == i and "results" not in one.json()  # one picture: the answer as before
        same(result, one.json(), f"{route} picture {i}")


@pytest.mark.parametrize("route", list(BATCHED))
def test_pictures_over_the_limit_are_refused_naming_the_fields(client, picture, route):
    gallery = client.post(route, data={**BATCHED[route], "gallery": ["0"] * 10, "store_id": ["1"] * 7})
    assert gallery.status_code == 413
    assert gallery.json()["error"].startswith("17 pictures in one request (gallery x 10, store_id x 7); the limit "
                                              "is 16")
    files = [("image", (f"{i}.png", picture, "image/png")) for i in range(17)]
    images = client.post(route, files=files, data=BATCHED[route])
    assert images.status_code == 413 and "(image x 17); the limit is 16" in images.json()["error"]
    more = client.post(route, files=files * 2, data=BATCHED[route])  # past the form parser's own bound on files
    assert more.status_code == 413 and "picture files (image, regions)" in more.json()["error"]
    assert client.post(route, files=files[:16], data=BATCHED[route]).status_code == 200


@pytest.mark.parametrize("route", list(BATCHED))
def test_a_bad_picture_among_several_is_named_by_field_and_position(client, picture, route):
    good = ("image", ("a.png", picture, "image/png"))
    files = [good, ("image", ("b.png", b"hello, not a picture", "image/png")), good]
    bad = client.post(route, files=files, data=BATCHED[route])
    assert bad.status_code == 415 and bad.json()["error"].startswith("image 2: not a picture file"), bad.text
    truncated = client.post(route, files=[good, good, ("image", ("c.png", picture[:200], "image/png"))],
                            data=BATCHED[route])
    assert truncated.status_code == 400 and truncated.json()["error"].startswith("image 3: the picture file is "
                                                                                 "damaged")
    index = client.post(route, files=[good], data={**BATCHED[route], "gallery": ["0", "9999"]})
    assert index.status_code == 400 and index.json()["error"].startswith("gallery 2: expected a picture index")


def test_ground_retrieve_recognize_and_choose_answer(client, picture):
    image = {"image": ("x.png", picture, "image/png")}
    ground = client.post("/api/ground", files=image, data={"sentence": "the red square left of the blue circle"})
    assert ground.status_code == 200 and all(len(p["box"]) == 4 for p in ground.json()["phrases"])
    captions = client.post("/api/retrieve", files=image, data={"top_k": "3"}).json()
    assert len(captions["captions"]) == 3 and captions["candidates"] > 3
    assert captions["captions"][0]["score"] >= captions["captions"][1]["score"]
    pictures = client.post("/api/retrieve", data={"caption": "a red square", "top_k": "2"}).json()
    assert len(pictures["images"]) == 2 and {"image_id", "score", "stage"} <= set(pictures["images"][0])
    regions = client.post("/api/recognize", data={"gallery": "0", "top_k": "2"}).json()["regions"]
    assert regions and len(regions[0]["objects"]) == 2
    for zero_shot, scorer in (("false", "multiple_choice"), ("true", "zero_shot")):
        chosen = client.post("/api/choose", files=image, data={"question": "what color is the square?",
                                                               "choices": "red, blue\ngreen", "zero_shot": zero_shot})
        assert chosen.status_code == 200, chosen.text
        assert chosen.json()["scorer"] == scorer
        assert sorted(a["answer"] for a in chosen.json()["answers"]) == ["blue", "green", "red"]


BAD = [  # (what, files, data, status, words of the message)
    ("not a picture", {"image": ("x.png", b"hello, not a picture", "image/png")}, {"question": "what?"}, 415,
     "not a picture file"),
    ("empty file", {"image": ("x.png", b"", "image/png")}, {"question": "what?"}, 400, "empty"),
    ("truncated", "truncated", {"question": "what?"}, 400, "damaged or truncated"),
    ("enormous picture", {"image": ("x.png", png(5000, 1000), "image/png")}, {"question": "what?"}, 413,
     "5000 x 1000 pixels"),
    ("too many bytes", {"image": ("x.bin", b"\0" * 2_500_000, "image/png")}, {"question": "what?"}, 413, "bytes"),
    ("empty question", "picture", {"question": "   "}, 400, "question: empty"),
    ("long question", "picture", {"question": "why " * 80}, 400, "the limit is 200"),
    ("no question", "picture", {}, 400, "missing field 'question'"),
    ("no image", None, {"question": "what?"}, 400, "missing field 'image'"),
    ("bad top_k", "picture", {"question": "what?", "top_k": "many"}, 400, "top_k: expected a whole number"),
    ("top_k 0", "picture", {"question": "what?", "top_k": "0"}, 400, "top_k"),
    ("top_k huge", "picture", {"question": "what?", "top_k": "100000"}, 400, "top_k"),
    ("unknown model", "picture", {"question": "what?", "model": "gpt"}, 404, "no model 'gpt'"),
    ("wrong head", "picture", {"question": "what?", "model": "svlr"}, 400, "has no head for answer"),
    ("unknown field", "picture", {"question": "what?", "colour": "red"}, 400, "unknown field(s) colour"),
    ("bad gallery index", None, {"question": "what?", "gallery": "9999"}, 400, "gallery: expected a picture index"),
]


@pytest.mark.parametrize("what,files,data,status,message", BAD, ids=[b[0] for b in BAD])
def test_bad_input_gets_a_4xx_json_error_and_the_server_goes_on(client, picture, what, files, data, status, message):
    if files == "picture":
        files = {"image": ("x.png", picture, "image/png")}
    elif files == "truncated":
        files = {"image": ("x.png", picture[: len(picture) // 3], "image/png")}
    got = client.post("/api/answer", files=files, data=data)
    assert got.status_code == status, got.text
    assert message in got.json()["error"]
    assert set(got.json()) == {"error"}
    ok = client.post("/api/answer", files={"image": ("x.png", picture, "image/png")}, data={"question": "what?"})
    assert ok.status_code == 200 and client.get("/api/health").json()["status"] == "ok"


def test_requests_that_are_not_forms_or_not_endpoints_are_4xx(client):
    assert client.post("/api/answer", json={"question": "what?"}).status_code == 415
    missing = client.get("/api/nothing")
    assert missing.status_code == 404 and "GET /api/health" in missing.json()["error"]
    assert client.get("/api/answer").status_code == 405
    choices = client.post("/api/choose", data={"gallery": "0", "question": "what?", "choices": "red"})
    assert choices.status_code == 400 and "two or more" in choices.json()["error"]
    both = client.post("/api/retrieve", data={"gallery": "0", "caption": "a square"})
    assert both.status_code == 400 and "either a picture" in both.json()["error"]
    flag = client.post("/api/choose", data={"gallery": "0", "question": "what?", "choices": "a, b",
                                            "zero_shot": "maybe"})
    assert flag.status_code == 400 and "zero_shot" in flag.json()["error"]


def test_the_page_is_mounted_beside_the_api(model_dirs):
    pytest.importorskip("gradio", reason="the serving extra (pip install 'vlmt[serve]') is not installed")
    served = load_models([model_dirs["tiny"]], log=lambda _: None)
    with TestClient(create_app(served, limits=LIMITS)) as client:
        page = client.get("/")
        assert page.status_code == 200 and "<html" in page.text.lower()
        assert client.get("/api/health").json()["models"]["tiny"]["heads"]["vqa"] == "vqa"
        assert "error" in json.loads(client.get("/api/nothing").text)
