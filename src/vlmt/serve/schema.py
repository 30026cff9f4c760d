"""The OpenAPI description of the JSON API (`/api/openapi.json`, shown at `/api/docs`): each route's
form fields come from the inputs its capability declares (`vlmt.tasks.capabilities.Input`: name,
kind, required, default, help) plus the route's own fields (`gallery`, `model`, ...), and its
answer's shape from the JSON `vlmt.serve.service` builds.

The routes read their forms themselves (so the body limit, the picture checks and the error
messages stay the server's), so these schemas are given to FastAPI as `openapi_extra` and
`responses`: they describe the routes, they do not parse them.
"""

from __future__ import annotations

from typing import Any, Iterable

from vlmt.serve.inputs import FORMAT_NAMES, Limits
from vlmt.tasks.capabilities import Input

# the fields every route that takes a picture has besides its capability's inputs
GALLERY = Input("gallery", "int", "instead of `image`: the index of a test picture of the model's gallery "
                "(GET /api/health says how many it has); it runs on the regions its feature store holds")
REGIONS = Input("regions", "image", "instead of a picture: precomputed regions, a file of bottom-up TSV lines "
                "(image_id, image_w, image_h, num_boxes, boxes, features: base64 float32), one picture a line, "
                "features of the model's width")
STORE_ID = Input("store_id", "int", "instead of a picture: an image id of the feature store the server was started "
                 "with (`vlmt serve --store`); its regions")
MODEL = Input("model", "text", "the served model to ask (GET /api/health lists them); default: the first "
              "one that can answer this call")


def _number(minimum: int = 1, maximum: int | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"type": "integer", "minimum": minimum}
    if maximum is not None:
        out["maximum"] = maximum
    return out


def field_schema(item: Input, limits: Limits, *, repeated: bool = False) -> dict[str, Any]:
    """The JSON schema of one form field; `repeated`: the field may be sent several times (a batch)."""
    text = {"type": "string", "minLength": 1, "maxLength": limits.max_text_chars}
    if item.name == "regions":
        one: dict[str, Any] = {"type": "string", "format": "binary", "description": item.help}
    elif item.kind in ("image", "images"):
        one = {"type": "string", "format": "binary",
               "description": f"a picture file ({FORMAT_NAMES}), at most "
                              f"{limits.max_upload_bytes:,} bytes and {limits.max_pixels:,} pixels"}
        repeated = repeated or item.kind == "images"
    elif item.kind == "text":
        one = dict(text)
    elif item.kind == "texts":
        one, repeated = dict(text), True
    elif item.kind == "int":
        one = _number(0 if item.default == 0 or item.name in ("gallery", "store_id") else 1,
                      limits.max_top_k if item.name == "top_k" else None)
        if item.default is not None:
            one["default"] = item.default
    else:  # bool: true/false, left out for the model's default
        one = {"type": "boolean"}
    schema = {"type": "array", "items": one} if repeated else one
    # a picture's help is the Python call's (a path, an array, ...): the route's is the file's
    schema["description"] = (one.pop("description") if item.kind in ("image", "images") else item.help) \
        + (" (repeat the field for several)" if repeated else "")
    return schema


def form_schema(inputs: Iterable[Input], limits: Limits, *, repeated: Iterable[str] = (),
                required: Iterable[str] | None = None) -> dict[str, Any]:
    """The multipart request body of a route with the fields `inputs` (in this order); `repeated`
    names fields that may be sent several times; `required` the fields a request must have (default:
    the inputs declared required, except pictures, which `gallery` may replace)."""
    inputs = list(inputs)
    many = set(repeated)
    needed = [i.name for i in inputs if i.required and i.kind not in ("image", "images")] if required is None \
        else list(required)
    body: dict[str, Any] = {"type": "object",
                            "properties": {i.name: field_schema(i, limits, repeated=i.name in many) for i in inputs}}
    if needed:
        body["required"] = needed
    return {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": body}}}}


def _obj(properties: dict[str, Any], description: str = "", required: Iterable[str] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"type": "object", "properties": properties,
                           "required": list(properties if required is None else required)}
    if description:
        out["description"] = description
    return out


def _list(items: dict[str, Any], description: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {"type": "array", "items": items}
    if description:
        out["description"] = description
    return out


NUMBER = {"type": "number"}
STRING = {"type": "string"}
BOX = {"type": "array", "items": NUMBER, "minItems": 4, "maxItems": 4,
       "description": "[x1, y1, x2, y2] in the picture's pixels"}
SCORED = _obj({"answer": STRING, "score": NUMBER})
LABELS = _list(_obj({"label": STRING, "score": NUMBER}))
REGIONS_FROM = {"type": "string", "enum": ["detector", "pixel proposals", "feature store", "bottom-up TSV"],
                "description": "where the picture's regions came from"}
WARNINGS = _list(STRING, "what the answer should be read with: the question's words the model never saw, a picture "
                         "far from the training pictures' size or shape")
MODEL_NAME = {"type": "string", "description": "the served model that answered"}

ONE_ANSWER = _obj({
    "model": MODEL_NAME, "question": STRING, "regions_from": REGIONS_FROM,
    "answers": _list(SCORED, "the top_k answers of the VQA head, best first; scores are sigmoids in [0, 1]"),
    "words": _list(STRING, "the question's words as the model read them"),
    "unknown_words": _list(STRING, "words the model never saw (read as <unk>)"),
    "word_attention": _list(NUMBER, "the VQA head's attention over the words"),
    "regions": _list(_obj({"box": BOX, "attention": NUMBER}), "the picture's regions and the head's attention"),
    "warnings": WARNINGS})
def _batch(one: dict[str, Any], what: str) -> dict[str, Any]:
    """The answer to several pictures: `{model, results}`, each result the single answer `one` with
    its picture's position."""
    return _obj({"model": MODEL_NAME,
                 "results": _list({**one, "properties": {**one["properties"],
                                                         "picture": {"type": "integer", "description": "its "
                                                                     "picture's position among the pictures sent "
                                                                     "(from 0)"}}}, what)})


def _one_or_many(one: dict[str, Any], what: str) -> dict[str, Any]:
    return {"oneOf": [one, _batch(one, f"one answer per picture, in the order the pictures were sent: {what}")],
            "description": "one picture: one answer; several pictures: {model, results}"}


BATCH = _batch(ONE_ANSWER, "one answer per (picture, question): every question asked of every picture, picture by "
                           "picture, each question in the order sent")
GROUNDED = _obj({"model": MODEL_NAME, "sentence": STRING, "regions_from": REGIONS_FROM,
                 "phrases": _list(_obj({"phrase": STRING, "box": BOX, "score": NUMBER}),
                                  "the best region of each noun phrase")})
RECOGNIZED = _obj({"model": MODEL_NAME, "regions_from": REGIONS_FROM,
                   "regions": _list(_obj({"box": BOX, "objects": LABELS, "attributes": LABELS}),
                                    "every region's top_k objects and attributes")})
CHOSEN = _obj({"model": MODEL_NAME, "question": STRING, "task": STRING,
               "scorer": {"type": "string", "enum": ["multiple_choice", "zero_shot"]},
               "answers": _list(SCORED, "the choices, best first"), "warnings": WARNINGS})
ANSWERS: dict[str, dict[str, Any]] = {
    "answer": {"oneOf": [ONE_ANSWER, BATCH], "description": "one picture and one question: one answer; several "
               "pictures or questions: {model, results}"},
    "ground": _one_or_many(GROUNDED, "the sentence grounded in each picture"),
    "retrieve": {"oneOf": [
        _obj({"model": MODEL_NAME, "candidates": {"type": "integer"}, "two_stage": {"type": "boolean"},
              "captions": _list(_obj({"caption": STRING, "image_id": {"type": "integer"}, "score": NUMBER,
                                      "stage": {"type": "string", "enum": ["full", "shortlist"]}}),
                                "the gallery's captions, best first")}, "a picture sent: captions ranked"),
        _obj({"model": MODEL_NAME, "caption": STRING, "candidates": {"type": "integer"},
              "two_stage": {"type": "boolean"},
              "images": _list(_obj({"index": {"type": "integer"}, "image_id": {"type": "integer"}, "score": NUMBER,
                                    "stage": {"type": "string", "enum": ["full", "shortlist"]}}),
                              "the gallery's pictures, best first")}, "a caption sent: pictures ranked")]},
    "recognize": _one_or_many(RECOGNIZED, "the regions of each picture"),
    "choose": _one_or_many(CHOSEN, "the choices ranked for each picture, by the same scorer"),
}
ERROR = {"description": "the request was not run: what was wrong, in words",
         "content": {"application/json": {"schema": _obj({"error": STRING})}}}


def responses(method: str, summary: str, returns: str = "") -> dict[int | str, dict[str, Any]]:
    """The answers of a route: its JSON on 200 (a declared capability's full result, `returns`, for a
    route a plugin's task adds), and the error object on 4xx / 5xx."""
    shape = ANSWERS.get(method) or _obj({"model": MODEL_NAME, "task": STRING, "variant": STRING, "warnings": WARNINGS},
                                        f"the task's full result: {returns}", required=["model", "task"])
    out: dict[int | str, dict[str, Any]] = {200: {"description": summary,
                                                  "content": {"application/json": {"schema": shape}}}}
    for status, what in ((400, "a field is missing or wrong"), (404, "no such model, or none with this head"),
                         (413, "the body or the picture is too large"), (415, "not a multipart form, or not a "
                         "served picture format"), (503, "the server is busy or still loading"),
                         (504, "the model did not answer in time")):
        out[status] = {**ERROR, "description": what}
    return out
