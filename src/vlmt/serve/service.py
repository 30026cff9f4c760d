"""One request of the page or the API turned into a result: the same functions serve both, so a
picture and a question give the same answers in the browser and over HTTP.

Each function takes a served model and checked inputs (`vlmt.serve.inputs`) and returns a
JSON-ready dict; the page also draws it (`attention_picture`, `enlarge`, `distinct_regions`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from vlmt.errors import ConfigError
from vlmt.serve.inputs import InputError
from vlmt.serve.models import Picture, ServedModel
from vlmt.tasks.capabilities import jsonable


def pick_model(served: dict[str, ServedModel], name: str | None, method: str) -> ServedModel:
    """The model `name`, or the first one whose heads support `method`; 404 / 400 otherwise."""
    if name:
        if name not in served:
            raise InputError(f"model: no model {name!r} here; served: {', '.join(served)}", status=404)
        chosen = served[name]
        if method not in chosen.methods:
            raise InputError(f"model {name!r} has no head for {method} (its heads: "
                             f"{chosen.model.describe_heads()}); models with one: "
                             f"{', '.join(n for n, m in served.items() if method in m.methods) or 'none'}")
        return chosen
    for model in served.values():
        if method in model.methods:
            return model
    raise InputError(f"no served model has a head for {method}; served: "
                     + "; ".join(f"{n} ({m.model.describe_heads()})" for n, m in served.items()), status=404)


def regions_from(picture: Picture, sm: ServedModel) -> str:
    """Where a picture's regions came from: what the client sent, the gallery's feature store, or the
    model's own way of finding regions in pixels (its detector, else the pixel proposals)."""
    if picture.source:
        return picture.source
    if picture.features is not None:
        return "feature store"
    return "detector" if sm.model.preprocess.get("regions") == "detector" and sm.model.detector else "pixel proposals"


def _round(values: Any, digits: int = 4) -> list[float]:
    return [round(float(v), digits) for v in np.asarray(values).reshape(-1)]


def answer(sm: ServedModel, picture: Picture, question: str, top_k: int) -> dict[str, Any]:
    details = sm.model.details("answer", question=question, top_k=top_k, **picture.inputs())
    return _answer(sm, picture, question, details)


def answer_batch(sm: ServedModel, pictures: list[Picture], questions: list[str], top_k: int) -> dict[str, Any]:
    """Every question of every picture in one pass of the model (`TrainedModel.details_many`): the
    answers picture by picture, each question in its order, each with its picture's position."""
    calls = [{**p.inputs(), "question": q} for p in pictures for q in questions]
    found = sm.model.details_many("answer", calls, top_k=top_k, batch_size=len(calls))
    results = []
    for k, details in enumerate(found):
        i, j = divmod(k, len(questions))
        results.append({**_answer(sm, pictures[i], questions[j], details), "picture": i})
    return {"model": sm.name, "results": results}


def _answer(sm: ServedModel, picture: Picture, question: str, details: dict[str, Any]) -> dict[str, Any]:
    words = details["words"]
    return {"model": sm.name, "question": question, "regions_from": regions_from(picture, sm),
            "answers": [{"answer": a["answer"], "score": round(a["score"], 6)} for a in details["answers"]],
            "words": words, "unknown_words": details["unknown_words"],
            "word_attention": _round(details["word_attention"][:len(words)]),
            "regions": [{"box": _round(b, 1), "attention": round(float(w), 4)}
                        for b, w in zip(details["boxes"], details["region_attention"])],
            "warnings": details["warnings"]}


def _many(sm: ServedModel, method: str, pictures: list[Picture], **shared: Any) -> list[dict[str, Any]]:
    """The full result of `method` for each picture, in their order, from one call of the model
    (`TrainedModel.details_many`: the pictures' regions found in one pass of the detector and the
    region CNN); `shared` are the inputs every picture is asked with."""
    return sm.model.details_many(method, [p.inputs() for p in pictures], batch_size=len(pictures), **shared)


def _batch(sm: ServedModel, results: list[dict[str, Any]]) -> dict[str, Any]:
    """The answer to several pictures: each picture's single answer, with its position among them."""
    return {"model": sm.name, "results": [{**r, "picture": i} for i, r in enumerate(results)]}


def ground(sm: ServedModel, picture: Picture, sentence: str) -> dict[str, Any]:
    try:
        phrases = sm.model.ground(sentence=sentence, **picture.inputs())
    except ConfigError as e:
        raise InputError(str(e)) from None
    return _grounded(sm, picture, sentence, phrases)


def ground_batch(sm: ServedModel, pictures: list[Picture], sentence: str) -> dict[str, Any]:
    """The sentence grounded in each picture (`{"model", "results"}`, picture by picture)."""
    try:
        found = _many(sm, "ground", pictures, sentence=sentence)
    except ConfigError as e:
        raise InputError(str(e)) from None
    return _batch(sm, [_grounded(sm, p, sentence, d["phrases"]) for p, d in zip(pictures, found)])


def _grounded(sm: ServedModel, picture: Picture, sentence: str, phrases: list[dict[str, Any]]) -> dict[str, Any]:
    return {"model": sm.name, "sentence": sentence, "regions_from": regions_from(picture, sm),
            "phrases": [{"phrase": p["phrase"], "box": _round(p["box"], 1), "score": round(p["score"], 4)}
                        for p in phrases]}


def retrieve_captions(sm: ServedModel, picture: Picture, top_k: int, *, k: int | None = 20) -> dict[str, Any]:
    """The gallery's captions ranked for a picture."""
    captions = sm.gallery.captions()
    if not captions:
        raise InputError(f"model {sm.name!r} has no gallery captions to rank ({sm.gallery.source})", status=404)
    feats, boxes, _ = sm.model.regions(**picture.inputs())
    ranked = sm.model.rank(captions=[c for _, c in captions], regions=[(feats, boxes)], query="image", k=k)
    return {"model": sm.name, "candidates": len(captions),
            "two_stage": any(r["stage"] == "shortlist" for r in ranked),
            "captions": [{"caption": captions[r["index"]][1],
                          "image_id": sm.gallery.images[captions[r["index"]][0]].image_id,
                          "score": round(r["score"], 6), "stage": r["stage"]} for r in ranked[:top_k]]}


def retrieve_images(sm: ServedModel, caption: str, top_k: int, *, k: int | None = 20) -> dict[str, Any]:
    """The gallery's pictures ranked for a caption."""
    if not sm.regions:
        raise InputError(f"model {sm.name!r} has no gallery pictures to rank ({sm.gallery.source})", status=404)
    ranked = sm.model.rank(captions=[caption], regions=sm.regions, query="caption", k=k)
    return {"model": sm.name, "caption": caption, "candidates": len(sm.regions),
            "two_stage": any(r["stage"] == "shortlist" for r in ranked),
            "images": [{"index": r["index"], "image_id": sm.gallery.images[r["index"]].image_id,
                        "score": round(r["score"], 6), "stage": r["stage"]} for r in ranked[:top_k]]}


def recognize(sm: ServedModel, picture: Picture, top_k: int) -> dict[str, Any]:
    return _recognized(sm, picture, sm.model.recognize(top_k=top_k, **picture.inputs()))


def recognize_batch(sm: ServedModel, pictures: list[Picture], top_k: int) -> dict[str, Any]:
    """The objects and attributes of every region of each picture (`{"model", "results"}`)."""
    found = _many(sm, "recognize", pictures, top_k=top_k)
    return _batch(sm, [_recognized(sm, p, d["regions"]) for p, d in zip(pictures, found)])


def _recognized(sm: ServedModel, picture: Picture, regions: list[dict[str, Any]]) -> dict[str, Any]:
    return {"model": sm.name, "regions_from": regions_from(picture, sm), "regions": [
        {"box": _round(r["box"], 1),
         "objects": [{"label": o["label"], "score": round(o["score"], 4)} for o in r["objects"]],
         "attributes": [{"label": a["label"], "score": round(a["score"], 4)} for a in r["attributes"]]}
        for r in regions]}


def choose(sm: ServedModel, picture: Picture, question: str, choices: list[str], zero_shot: bool | None
           ) -> dict[str, Any]:
    """The choices ranked by the scorer `zero_shot` picks (None: the model's default, its multiple-choice
    head when it has one); "scorer" says which answered."""
    try:
        details = sm.model.details("choose", question=question, choices=choices, zero_shot=zero_shot,
                                   **picture.inputs())
    except ConfigError as e:
        raise InputError(f"model {sm.name!r}: {e}") from None
    return _chosen(sm, question, details)


def choose_batch(sm: ServedModel, pictures: list[Picture], question: str, choices: list[str],
                 zero_shot: bool | None) -> dict[str, Any]:
    """The choices ranked for each picture, by one scorer (`{"model", "results"}`)."""
    try:
        found = _many(sm, "choose", pictures, question=question, choices=choices, zero_shot=zero_shot)
    except ConfigError as e:
        raise InputError(f"model {sm.name!r}: {e}") from None
    return _batch(sm, [_chosen(sm, question, d) for d in found])


def _chosen(sm: ServedModel, question: str, details: dict[str, Any]) -> dict[str, Any]:
    return {"model": sm.name, "question": question, "scorer": details["variant"], "task": details["task"],
            "answers": [{"answer": a["answer"], "score": round(a["score"], 6)} for a in details["answers"]],
            "warnings": details["warnings"]}


def call(sm: ServedModel, method: str, picture: Picture | None, values: dict[str, Any]) -> dict[str, Any]:
    """Any other capability a task of the model declares (a plugin's task, say): the task's full
    result, JSON-ready, with the task and the scorer that answered."""
    inputs = picture.inputs() if picture is not None else {}
    try:
        details = sm.model.details(method, **inputs, **values)
    except ConfigError as e:
        raise InputError(f"model {sm.name!r}: {e}") from None
    return {"model": sm.name, **jsonable(details)}


# -- pictures for the page --------------------------------------------------------------------------


def attention_picture(pixels: np.ndarray, result: dict[str, Any], *, size: int = 384) -> np.ndarray:
    """The picture lit by the VQA head's attention over its regions, enlarged to about `size`."""
    from vlmt.pictures import attention_overlay

    boxes = np.array([r["box"] for r in result["regions"]], dtype=np.float32)
    weights = np.array([r["attention"] for r in result["regions"]], dtype=np.float32)
    lit = (attention_overlay(pixels, boxes, weights) * 255).astype(np.uint8)
    return enlarge(lit, size)


def enlarge(pixels: np.ndarray, size: int) -> np.ndarray:
    """Nearest-neighbour enlargement of a small picture (the world's are 128 x 128), so regions stay crisp."""
    scale = max(1, size // max(pixels.shape[:2]))
    return np.repeat(np.repeat(pixels, scale, axis=0), scale, axis=1) if scale > 1 else pixels


def distinct_regions(regions: list[dict[str, Any]], *, iou: float = 0.3, limit: int = 6) -> list[dict[str, Any]]:
    """The recognised regions to draw: greedy non-maximum suppression by the best object score, so
    overlapping proposals of one object show once, at most `limit` (the API returns them all)."""
    def overlap(a: list[float], b: list[float]) -> float:
        w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
        h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
        union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - w * h
        return w * h / union if union > 0 else 0.0

    kept: list[dict[str, Any]] = []
    for r in sorted(regions, key=lambda r: -r["objects"][0]["score"]):
        if all(overlap(r["box"], k["box"]) <= iou for k in kept):
            kept.append(r)
    return kept[:limit]
