"""Answering questions about pictures with a trained model's VQA head (`vlmt predict`): the same
path as `vlmt.load(...).answer`. One picture and question (`answer`, with the attention behind the
answer), or many (`answer_file`): a folder of pictures with questions, or a JSONL of (picture,
question) records, answered in batches (`TrainedModel.details_many`) into a JSONL file.

A JSONL request is one JSON object per line:

    {"image": "pictures/a.png", "question": "what color is the square?"}
    {"image_id": 42, "question": "how many circles?", "id": "q-17"}

`image` is a picture path (relative to the JSONL file's folder); `image_id` instead names the
picture's precomputed regions in a feature store (`store=`) or a bottom-up TSV file (`tsv=`), for
a model trained on such features; `id` (any JSON value) is copied to the answer. A bad record is
a `DataError` naming the file, the line and the field, before any answer is written.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from vlmt.data.features.proposals import load_image
from vlmt.errors import ConfigError, DataError, InvalidInput, VlmtError
from vlmt.inference.model import TrainedModel, load
from vlmt.io import atomic_path
from vlmt.tasks.vqa import VQATaskConfig
from vlmt.training.build import run_config

PICTURE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif")
FIELDS = ("image", "image_id", "question", "id")


def _check_run(path: Path) -> None:
    if (path / "config.yaml").is_file():  # a run: say early when it has no VQA task
        cfg = run_config(path)
        if not any(isinstance(t, VQATaskConfig) for t in cfg.tasks.values()):
            raise ConfigError(f"{path / 'config.yaml'}: this run has no VQA task (tasks: {', '.join(cfg.tasks)}); "
                              "predict answers questions with a run trained on VQA")


def answer(path: str | Path, image: str | Path | None, question: str, *, top: int = 5, checkpoint: str = "best",
           store: str | Path | None = None, tsv: str | Path | None = None, image_id: int | None = None
           ) -> dict[str, Any]:
    """Top answers (with sigmoid scores) of a model's VQA head for one picture and question, the
    regions with their attention weights and the word attention; "pixels", "boxes" and the weights
    as arrays for drawing. `path` is a run folder or an exported model folder. Instead of a
    picture, `image_id` names precomputed regions in a feature store (`store`) or a bottom-up TSV
    file (`tsv`)."""
    path = Path(path)
    _check_run(path)
    if not question.strip():
        raise ConfigError(f"--question: {question!r} has no word")
    if image_id is not None:
        regions = Regions(store=store, tsv=tsv)
        regions.want(image_id, where="--image-id")
        model = load(path, checkpoint=checkpoint)
        feats, boxes = regions.get(model, image_id, where="--image-id")
        pixels = None
        details = model.details("answer", question=question, regions=feats, boxes=boxes, top_k=top)
    else:
        if image is None:
            raise ConfigError("give a picture (--image) or precomputed regions (--image-id with --store or --tsv)")
        pixels = load_image(image)  # before the (slower) load: a wrong path fails at once
        details = load(path, checkpoint=checkpoint).details("answer", pixels, question, top_k=top)
    words = details["words"]
    return {
        "image": str(image) if image is not None else None, "image_id": image_id, "question": question,
        "words": words, "unknown_words": details["unknown_words"], "warnings": details["warnings"],
        "answer": details["answers"][0]["answer"],
        "answers": [{"answer": a["answer"], "score": round(a["score"], 4)} for a in details["answers"]],
        "regions": [{"box": [round(float(v), 1) for v in b], "attention": round(float(w), 4)}
                    for b, w in zip(details["boxes"], details["region_attention"])],
        "word_attention": {w: round(float(a), 4) for w, a in zip(words, details["word_attention"])},
        "pixels": pixels, "boxes": details["boxes"], "region_weights": details["region_attention"],
        "word_weights": details["word_attention"][:len(words)],
    }


# -- many: a folder or a JSONL ----------------------------------------------------------------------


@dataclass
class Request:
    """One (picture, question) to answer; `where` names it in errors ("file: record line N")."""

    file: str
    record: str
    question: str
    image: Path | None = None
    image_id: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def error(self, message: str, field: str | None = None) -> DataError:
        return DataError(self.file, message, record=self.record, field=field)


def folder_requests(folder: str | Path, questions: Sequence[str]) -> list[Request]:
    """Every picture of `folder` (PNG, JPEG, WebP, BMP, GIF; sorted by name) with every question."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ConfigError(f"--images {folder}: no such folder")
    pictures = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in PICTURE_SUFFIXES)
    if not pictures:
        raise ConfigError(f"--images {folder}: no picture ({', '.join(PICTURE_SUFFIXES)}) in it")
    for q in questions:
        if not q.strip():
            raise ConfigError(f"--question: {q!r} has no word")
    return [Request(str(p), "picture", q, image=p) for p in pictures for q in questions]


def jsonl_requests(path: str | Path) -> list[Request]:
    """The records of a JSONL request file (see the module docstring), every one checked."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise DataError(path, "no such file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(path, f"cannot read it as UTF-8 text ({e})") from None
    out = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        record = f"line {number}"
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(path, f"not JSON ({e.msg} at column {e.colno})", record=record) from None
        if not isinstance(row, dict):
            raise DataError(path, f"expected a JSON object, got {type(row).__name__}", record=record)
        unknown = sorted(set(row) - set(FIELDS))
        if unknown:
            raise DataError(path, f"unknown field; a record has {', '.join(FIELDS)}", record=record, field=unknown[0])
        question = row.get("question")
        if not isinstance(question, str) or not any(c.isalnum() for c in question):
            what = "missing" if question is None else f"expected a question in words, got {json.dumps(question)[:40]}"
            raise DataError(path, what, record=record, field="question")
        has_image, has_id = "image" in row, "image_id" in row
        if has_image == has_id:
            raise DataError(path, "give either image (a picture path) or image_id (precomputed regions), not "
                                  + ("both" if has_image else "neither"), record=record,
                            field="image" if has_image else None)
        request = Request(str(path), record, question, extra={"id": row["id"]} if "id" in row else {})
        if has_image:
            if not isinstance(row["image"], str) or not row["image"].strip():
                raise DataError(path, f"expected a picture path, got {json.dumps(row['image'])[:40]}", record=record,
                                field="image")
            image = Path(row["image"])
            request.image = image if image.is_absolute() else path.parent / image
            if not request.image.is_file():
                raise DataError(path, f"no such picture file: {request.image}", record=record, field="image")
        else:
            value = row["image_id"]
            if isinstance(value, bool) or not isinstance(value, (int, str)) or not str(value).strip().isdigit():
                raise DataError(path, f"expected a whole number, got {json.dumps(value)[:40]}", record=record,
                                field="image_id")
            request.image_id = int(value)
        out.append(request)
    if not out:
        raise DataError(path, "no record (one JSON object per line)")
    return out


class Regions:
    """Precomputed regions by image id: a feature store (`vlmt data convert` writes one) or a
    bottom-up TSV file (only the lines of the ids asked for are kept)."""

    def __init__(self, *, store: str | Path | None = None, tsv: str | Path | None = None):
        if (store is None) == (tsv is None):
            raise ConfigError("image_id records need precomputed regions: give --store (a feature store) or --tsv "
                              "(a bottom-up TSV file), one of them")
        self.store, self.tsv = store, tsv
        self.wanted: dict[int, str] = {}  # image id -> the record that first asked for it
        self.found: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def want(self, image_id: int, *, where: str) -> None:
        self.wanted.setdefault(image_id, where)

    def read_tsv(self) -> None:
        from vlmt.data.features.convert import read_tsv

        assert self.tsv is not None
        for raw in read_tsv(self.tsv):
            if raw.image_id in self.wanted and raw.image_id not in self.found:
                self.found[raw.image_id] = (np.asarray(raw.features, np.float32), np.asarray(raw.boxes, np.float32))

    def get(self, model: TrainedModel, image_id: int, *, where: str) -> tuple[np.ndarray, np.ndarray]:
        if self.tsv is not None:
            if not self.found:
                self.read_tsv()
            if image_id not in self.found:
                raise ConfigError(f"{where}: field 'image_id': image {image_id} is not in {self.tsv}")
            return self.found[image_id]
        if image_id not in self.found:
            try:
                self.found[image_id] = model.regions_from_store(self.store, image_id)  # type: ignore[arg-type]
            except KeyError:
                raise ConfigError(f"{where}: field 'image_id': image {image_id} is not in the feature store "
                                  f"{self.store}") from None
        return self.found[image_id]


def _chunks(items: Sequence[Request], size: int) -> Iterator[Sequence[Request]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def answer_file(path: str | Path, requests: Sequence[Request], out: str | Path, *, top: int = 5,
                checkpoint: str = "best", store: str | Path | None = None, tsv: str | Path | None = None,
                batch_size: int = 32, progress: bool = True) -> dict[str, Any]:
    """Answer every request, `batch_size` at a time, into the JSONL file `out` (one object per
    request, in their order: the request's picture or image id, question and `id`, the answer, the
    top answers, the unknown words and the warnings), written to a temporary name and renamed when
    every answer is in. Returns a summary (requests, pictures, out)."""
    from tqdm import tqdm

    path = Path(path)
    _check_run(path)
    regions = Regions(store=store, tsv=tsv) if any(r.image_id is not None for r in requests) else None
    for r in requests:
        if r.image_id is not None:
            assert regions is not None
            regions.want(r.image_id, where=f"{r.file}: record {r.record}")
    model = load(path, checkpoint=checkpoint)
    if "answer" not in model.methods:
        raise ConfigError(f"{path}: this model has no VQA head (heads: {model.describe_heads()})")
    if any(r.image is not None for r in requests) and model.preprocess.get("regions") == "feature_store":
        first = next(r for r in requests if r.image is not None)
        raise first.error("the model was trained on precomputed region features (a feature store) and cannot find "
                          "regions in a picture; give image_id records with --store or --tsv", field="image")
    pictures = len({r.image or r.image_id for r in requests})
    with atomic_path(out) as tmp, open(tmp, "w", encoding="utf-8") as f, \
            tqdm(total=len(requests), unit="answer", file=sys.stderr, disable=not progress) as bar:
        for chunk in _chunks(requests, batch_size):
            calls = []
            loaded: dict[Any, Any] = {}  # one array (or regions) per distinct picture of the chunk
            for r in chunk:
                key = r.image if r.image is not None else ("id", r.image_id)
                if key not in loaded:
                    try:
                        if r.image is not None:
                            loaded[key] = {"image": load_image(r.image)}
                        else:
                            assert regions is not None and r.image_id is not None
                            feats, boxes = regions.get(model, r.image_id, where=f"{r.file}: record {r.record}")
                            loaded[key] = {"regions": feats, "boxes": boxes}
                    except DataError as e:
                        raise r.error(e.reason if e.file == str(r.image) else str(e),
                                      "image" if r.image is not None else "image_id") from None
                calls.append({**loaded[key], "question": r.question})
            for r, full in zip(chunk, _answer_chunk(model, chunk, calls, top)):
                row = {"image": str(r.image) if r.image is not None else None, "image_id": r.image_id,
                       "question": r.question, **r.extra, "answer": full["answers"][0]["answer"],
                       "answers": [{"answer": a["answer"], "score": round(a["score"], 4)} for a in full["answers"]],
                       "unknown_words": full["unknown_words"], "warnings": full["warnings"]}
                if r.image is None:
                    del row["image"]
                else:
                    del row["image_id"]
                f.write(json.dumps(row) + "\n")
            bar.update(len(chunk))
    return {"requests": len(requests), "pictures": pictures, "out": str(out)}


def _answer_chunk(model: TrainedModel, chunk: Sequence[Request], calls: list[dict[str, Any]], top: int
                  ) -> list[dict[str, Any]]:
    """The answers of one chunk; a request the model refuses is named by its file, line and field."""
    try:
        return model.details_many("answer", calls, top_k=top, batch_size=len(calls))
    except InvalidInput:
        pass
    for r, call in zip(chunk, calls):  # find the request it refused, one by one
        try:
            model.details_many("answer", [call], top_k=top)
        except InvalidInput as e:
            message = str(e).removeprefix("call 0: ")
            field = "question" if message.startswith("question") else "image" if r.image is not None else "image_id"
            raise r.error(message, field) from None
    raise VlmtError("the batch was refused but no request alone is")  # not reached: details_many is per call
