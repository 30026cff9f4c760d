"""One model of every shipped family (hierarchical, SVLR, composed, easy-VQA), loaded in Python and
served: every capability its tasks declare answers the same way through `vlmt.load` and the JSON API,
and where two scorers can answer (`choose`: multiple choice, zero-shot) the answer says which did."""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("fastapi", reason="the serving extra (pip install 'vlmt[serve]') is not installed")
from starlette.testclient import TestClient  # noqa: E402

import vlmt  # noqa: E402
from vlmt.serve.app import create_app  # noqa: E402
from vlmt.serve.inputs import Limits  # noqa: E402
from vlmt.serve.models import load_models  # noqa: E402

QUESTION, CHOICES = "what color is the square?", ["red", "blue", "green", "yellow"]
# method -> (Python call's arguments after the picture, the API's form fields); a method a family declares that
# is missing here fails the test, so a new capability is served and tested before it ships
CALLS: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "answer": ({"question": QUESTION, "top_k": 3}, {"question": QUESTION, "top_k": "3"}),
    "ground": ({"sentence": "the red square left of the blue circle"},
               {"sentence": "the red square left of the blue circle"}),
    "retrieve": ({}, {"top_k": "3"}),
    "rank": ({}, {}),
    "recognize": ({"top_k": 2}, {"top_k": "2"}),
    "choose": ({"question": QUESTION, "choices": CHOICES}, {"question": QUESTION, "choices": "\n".join(CHOICES)}),
}


@pytest.fixture(scope="module")
def served(family_dirs):
    # the easy-VQA conversion lies in the test's own folder: the operator names it as a gallery root
    roots = [p.parent for p in family_dirs.values()]
    models = load_models(list(family_dirs.values()), gallery_roots=roots, log=lambda _: None)
    return models, TestClient(create_app(models, limits=Limits(), workers=2, page=False))


def png(pixels: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="PNG")
    return out.getvalue()


def python_call(model: Any, method: str, pixels: np.ndarray) -> Any:
    kwargs = CALLS[method][0]
    if method == "retrieve":
        return model.retrieve([pixels, pixels], ["a red square", "two blue circles"])
    if method == "rank":
        return model.rank(images=[pixels], captions=["a red square", "two blue circles"], query="image")
    return getattr(model, method)(pixels, **kwargs)


def test_every_family_serves_every_capability_it_declares(served, family_dirs):
    models, client = served
    expected = {"tiny", "svlr", "composed"} | ({"easy"} if "easy" in family_dirs else set())
    assert set(models) >= expected
    for name, sm in models.items():
        model = vlmt.load(family_dirs[name])
        assert model.methods and set(model.methods) <= set(CALLS), (name, model.methods)
        pixels = sm.gallery_pixels(0)
        for method in model.methods:
            got = python_call(model, method, pixels)
            assert len(got), (name, method)
            if method == "rank":
                continue  # served as the gallery ranking of `retrieve`
            answer = client.post(f"/api/{method}", data={**CALLS[method][1], "model": name},
                                 files={"image": ("x.png", png(pixels), "image/png")})
            assert answer.status_code == 200, (name, method, answer.text)
            body = answer.json()
            assert body["model"] == name
            if method == "answer":  # the same answers through both fronts
                assert [a["answer"] for a in body["answers"]] == [a["answer"] for a in got]
        health = client.get("/api/health").json()["models"][name]
        assert health["methods"] == [m for m in model.methods if m != "rank"]


@pytest.mark.parametrize("family", ["svlr", "composed"])
def test_both_choose_scorers_answer_and_say_which(served, family_dirs, family):
    models, client = served
    model = vlmt.load(family_dirs[family])
    pixels = models[family].gallery_pixels(0)
    picture = {"image": ("x.png", png(pixels), "image/png")}
    fields = {"question": QUESTION, "choices": "\n".join(CHOICES), "model": family}
    for zero_shot, scorer in ((None, "multiple_choice"), ("false", "multiple_choice"), ("true", "zero_shot")):
        data = fields if zero_shot is None else {**fields, "zero_shot": zero_shot}
        body = client.post("/api/choose", data=data, files=picture).json()
        assert body["scorer"] == scorer, (family, zero_shot, body)
        flag = None if zero_shot is None else zero_shot == "true"
        details = model.details("choose", pixels, QUESTION, CHOICES, zero_shot=flag)
        assert details["variant"] == scorer
        assert [a["answer"] for a in body["answers"]] == [a["answer"] for a in details["answers"]]
    mc = model.choose(pixels, QUESTION, CHOICES)
    zs = model.choose(pixels, QUESTION, CHOICES, zero_shot=True)
    assert mc != zs  # two scorers (Eq. 7 and Eq. 9)
