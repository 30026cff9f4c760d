"""The OpenAPI description (`/api/openapi.json`, the page at `/api/docs`): each route lists its form
fields as its capability declares them (name, type, required, help) and the shape of its answer,
and the answers the server gives have that shape."""

from __future__ import annotations

from typing import Any

import pytest

pytest.importorskip("fastapi", reason="the serving extra (pip install 'vlmt[serve]') is not installed")
from starlette.testclient import TestClient  # noqa: E402

from vlmt.serve.api import FORM_FIELDS  # noqa: E402
from vlmt.serve.app import create_app  # noqa: E402
from vlmt.serve.inputs import Limits  # noqa: E402
from vlmt.serve.models import load_models  # noqa: E402

LIMITS = Limits(max_upload_bytes=2_000_000, max_pixels=4_000_000, max_side=4_000, max_text_chars=200)
TYPES = {"object": dict, "array": list, "string": str, "integer": int, "number": (int, float), "boolean": bool}


@pytest.fixture(scope="module")
def served(model_dirs):
    return load_models([model_dirs["tiny"], model_dirs["svlr"]], log=lambda _: None)


@pytest.fixture(scope="module")
def client(served) -> TestClient:
    return TestClient(create_app(served, limits=LIMITS, page=False))


@pytest.fixture(scope="module")
def spec(client) -> dict[str, Any]:
    got = client.get("/api/openapi.json")
    assert got.status_code == 200
    return got.json()


def form(spec: dict[str, Any], route: str) -> dict[str, Any]:
    return spec["paths"][route]["post"]["requestBody"]["content"]["multipart/form-data"]["schema"]


def answer_schema(spec: dict[str, Any], route: str) -> dict[str, Any]:
    return spec["paths"][route]["post"]["responses"]["200"]["content"]["application/json"]["schema"]


def conforms(value: Any, schema: dict[str, Any], where: str = "answer") -> None:
    """`value` has the shape `schema` declares (the subset of JSON schema the API's schemas use)."""
    if "oneOf" in schema:
        fits = 0
        for option in schema["oneOf"]:
            try:
                conforms(value, option, where)
                fits += 1
            except AssertionError:
                pass
        assert fits == 1, f"{where}: fits {fits} of the oneOf options"
        return
    kind = schema.get("type")
    if kind:
        assert isinstance(value, TYPES[kind]) and not (kind in ("integer", "number") and isinstance(value, bool)), \
            f"{where}: {value!r} is not {kind}"
    if "enum" in schema:
        assert value in schema["enum"], f"{where}: {value!r} not in {schema['enum']}"
    if kind == "object":
        missing = set(schema.get("required", ())) - set(value)
        assert not missing, f"{where}: missing {missing}"
        for key, sub in schema.get("properties", {}).items():
            if key in value:
                conforms(value[key], sub, f"{where}.{key}")
        undeclared = set(value) - set(schema.get("properties", {}))
        assert not undeclared, f"{where}: undeclared {undeclared}"
    if kind == "array":
        for i, item in enumerate(value):
            conforms(item, schema["items"], f"{where}[{i}]")


def test_answer_lists_its_declared_fields_with_types_defaults_and_help(spec):
    body = form(spec, "/api/answer")
    fields = body["properties"]
    assert list(fields) == ["image", "gallery", "regions", "store_id", "question", "top_k", "model"]
    # image, gallery and question repeat for a batch (every question of every picture)
    assert fields["image"]["items"]["format"] == "binary" and "PNG" in fields["image"]["description"]
    assert fields["question"]["type"] == "array" and fields["question"]["description"].startswith("the question")
    assert fields["question"]["items"] == {"type": "string", "minLength": 1, "maxLength": LIMITS.max_text_chars}
    assert fields["top_k"] == {"type": "integer", "minimum": 1, "maximum": 100, "default": 5,
                               "description": "how many answers"}
    assert fields["gallery"]["items"] == {"type": "integer", "minimum": 0}
    assert fields["regions"]["items"]["format"] == "binary" and "bottom-up TSV" in fields["regions"]["description"]
    assert fields["store_id"]["items"]["type"] == "integer" and "--store" in fields["store_id"]["description"]
    assert body["required"] == ["question"]  # a picture is `image` or `gallery`
    errors = spec["paths"]["/api/answer"]["post"]["responses"]
    assert {"400", "413", "415", "504"} <= set(errors)
    assert errors["400"]["content"]["application/json"]["schema"]["required"] == ["error"]


def test_every_route_documents_exactly_the_fields_it_reads(spec):
    for method, fields in FORM_FIELDS.items():
        assert set(form(spec, f"/api/{method}")["properties"]) == set(fields), method


def test_repeated_fields_are_arrays_and_flags_booleans(spec):
    choose = form(spec, "/api/choose")
    assert choose["properties"]["choices"]["type"] == "array"
    assert choose["properties"]["choices"]["items"]["type"] == "string"
    assert choose["properties"]["zero_shot"]["type"] == "boolean"
    assert set(choose["required"]) == {"question", "choices"}
    retrieve = form(spec, "/api/retrieve")["properties"]
    assert retrieve["k"]["default"] == 20 and retrieve["caption"]["type"] == "string"


def test_the_answers_have_the_declared_shape(client, spec, picture):
    image = {"image": ("x.png", picture, "image/png")}
    calls = {"/api/answer": {"question": "what color is the square?", "top_k": "3"},
             "/api/ground": {"sentence": "the red square"},
             "/api/recognize": {"top_k": "2"},
             "/api/choose": {"question": "what color is the square?", "choices": ["red", "blue"]}}
    for route, data in calls.items():
        got = client.post(route, files=image, data=data)
        assert got.status_code == 200, got.text
        conforms(got.json(), answer_schema(spec, route), route)
    for data, files in (({}, image), ({"caption": "a red square"}, None)):
        got = client.post("/api/retrieve", files=files, data=data or None)
        if files is None:  # a form with only a text field
            got = client.post("/api/retrieve", data=data, headers={"content-type": "application/x-www-form-urlencoded"})
        assert got.status_code == 200, got.text
        conforms(got.json(), answer_schema(spec, "/api/retrieve"), "/api/retrieve")
    batch = client.post("/api/answer", files=image, data={"question": ["what color?", "how many?"], "gallery": "1"})
    assert batch.status_code == 200 and len(batch.json()["results"]) == 4
    conforms(batch.json(), answer_schema(spec, "/api/answer"), "batch")
    bad = client.post("/api/answer", files=image, data={})
    conforms(bad.json(), spec["paths"]["/api/answer"]["post"]["responses"]["400"]["content"]["application/json"]
             ["schema"], "error")


def test_the_routes_that_take_several_pictures_document_repeated_picture_fields(client, spec, picture):
    pictures = ("image", "gallery", "regions", "store_id")
    for route in ("/api/answer", "/api/ground", "/api/recognize", "/api/choose"):
        fields = form(spec, route)["properties"]
        for name in pictures:
            assert fields[name]["type"] == "array" and "(repeat the field for several)" in fields[name]["description"]
        shape = answer_schema(spec, route)
        assert "several pictures" in shape["description"] and len(shape["oneOf"]) == 2
    retrieve = form(spec, "/api/retrieve")["properties"]  # `rank` ranks captions for one picture
    assert all(retrieve[name].get("type") != "array" for name in pictures)
    image = [("image", ("x.png", picture, "image/png"))] * 2
    calls = {"/api/ground": {"sentence": "the red square", "gallery": "0"}, "/api/recognize": {"top_k": "2"},
             "/api/choose": {"question": "what color is the square?", "choices": ["red", "blue"], "gallery": "1"}}
    for route, data in calls.items():
        got = client.post(route, files=image, data=data)
        assert got.status_code == 200 and len(got.json()["results"]) == 2 + ("gallery" in data), got.text
        conforms(got.json(), answer_schema(spec, route), f"{route} batch")


def test_a_route_no_served_model_answers_is_left_out_of_the_docs(served):
    svlr_only = TestClient(create_app({"svlr": served["svlr"]}, limits=LIMITS, page=False))
    paths = svlr_only.get("/api/openapi.json").json()["paths"]
    assert "/api/recognize" in paths and "/api/choose" in paths
    assert "/api/answer" not in paths and "/api/ground" not in paths


def test_the_docs_page_is_served(client):
    page = client.get("/api/docs")
    assert page.status_code == 200 and "/api/openapi.json" in page.text
