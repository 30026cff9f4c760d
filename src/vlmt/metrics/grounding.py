"""Phrase grounding Recall@K (Flickr30k Entities protocol).

A phrase is correct at K when one of its K best-ranked predicted boxes overlaps its ground-truth
box with IoU >= 0.5. A phrase whose entity has several boxes is compared with their union box;
phrases without boxes (non-visual, scene) are left out of the count.

Predictions file (JSON), ranked boxes per phrase, best first, pixel x1, y1, x2, y2 in the
coordinates of `Phrase.boxes` (the Flickr30k Entities reader's 0-based pixels):

    {"<image_id>": {"<sentence_index>": {"<entity_id>": [[x1, y1, x2, y2], ...], ...}, ...}, ...}

`sentence_index` is the 0-based line of the sentence in the image's Sentences/<image_id>.txt,
`entity_id` the number in its "[/EN#<entity_id>/..." tag. A sentence that mentions one entity
twice has one ground truth for both mentions (boxes belong to entities), so one ranked list
serves both.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping

import numpy as np

from vlmt.data.examples import GroundedSentence
from vlmt.errors import DataError

PhraseKey = tuple[int, int, str]   # image id, sentence index, entity id
RECALL_KS = (1, 5, 10)


def box_iou(a: np.ndarray, b: np.ndarray, *, pixel_offset: float = 0.0) -> np.ndarray:
    """IoU of every box in `a` (N, 4) with every box in `b` (M, 4), xyxy -> (N, M).

    Areas are (x2 - x1 + offset) * (y2 - y1 + offset): offset 0 treats coordinates as
    continuous (default); 1 treats them as inclusive integer pixel indices.
    """
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    iw = np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0]) + pixel_offset
    ih = np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1]) + pixel_offset
    inter = np.clip(iw, 0, None) * np.clip(ih, 0, None)
    area_a = (a[:, 2] - a[:, 0] + pixel_offset) * (a[:, 3] - a[:, 1] + pixel_offset)
    area_b = (b[:, 2] - b[:, 0] + pixel_offset) * (b[:, 3] - b[:, 1] + pixel_offset)
    union = area_a[:, None] + area_b[None, :] - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = np.where(union > 0, inter / union, 0.0)
    return iou


@dataclass(frozen=True)
class RecallCounts:
    """Recall@1/5/10 in percent over `phrases` evaluated phrases."""

    r1: float
    r5: float
    r10: float
    phrases: int

    def to_json(self) -> dict:
        return {"r1": self.r1, "r5": self.r5, "r10": self.r10, "phrases": self.phrases}


@dataclass(frozen=True)
class GroundingMetrics:
    overall: RecallCounts
    per_phrase_type: dict[str, RecallCounts] = field(default_factory=dict)

    def to_json(self) -> dict:
        """The object `vlmt evaluate grounding --json` prints."""
        out = self.overall.to_json()
        out["perPhraseType"] = {k: v.to_json() for k, v in self.per_phrase_type.items()}
        return out


def first_hit_rank(ranked_boxes: np.ndarray, truth: tuple[float, float, float, float] | np.ndarray, *,
                   iou_threshold: float = 0.5, pixel_offset: float = 0.0) -> int | None:
    """0-based position of the first predicted box with IoU >= threshold with a ground-truth box
    (`truth` is one box or (G, 4) boxes, any of which counts), None if none has."""
    boxes = np.asarray(ranked_boxes, dtype=np.float64).reshape(-1, 4)
    if len(boxes) == 0:
        return None
    iou = box_iou(boxes, np.asarray(truth, dtype=np.float64), pixel_offset=pixel_offset)
    hits = np.flatnonzero((iou >= iou_threshold).any(axis=1))
    return int(hits[0]) if len(hits) else None


def _recall(first_hits: list[int | None]) -> RecallCounts:
    n = len(first_hits)
    r = [100.0 * sum(1 for h in first_hits if h is not None and h < k) / n if n else 0.0 for k in RECALL_KS]
    return RecallCounts(r[0], r[1], r[2], n)


def grounding_recall(sentences: Iterable[GroundedSentence], predictions: Mapping[PhraseKey, np.ndarray], *,
                     iou_threshold: float = 0.5, pixel_offset: float = 0.0, any_box: bool = False,
                     predictions_path: str | Path = "<predictions>") -> GroundingMetrics:
    """Recall@1/5/10 over every phrase with boxes in `sentences`.

    `predictions[(image_id, sentence_index, entity_id)]` is an (R, 4) array of ranked boxes.
    A phrase with boxes but no prediction is a `DataError` (never silently skipped); fewer than
    K boxes simply give K fewer chances. `any_box=True` scores against each of the entity's
    boxes instead of their union (the "any box" protocol some later papers report; not the
    Flickr30k Entities one).
    """
    overall: list[int | None] = []
    by_type: dict[str, list[int | None]] = {}
    for sent in sentences:
        for phrase in sent.phrases:
            if not phrase.boxes:
                continue
            truth = np.asarray(phrase.boxes if any_box else [phrase.ground_truth_box], dtype=np.float64)
            key = (sent.image_id, sent.sentence_index, phrase.entity_id)
            if key not in predictions:
                raise DataError(predictions_path, f"no ranked boxes for phrase {phrase.text!r}",
                                record=f"image {key[0]} sentence {key[1]} entity {key[2]}")
            hit = first_hit_rank(predictions[key], truth, iou_threshold=iou_threshold,
                                 pixel_offset=pixel_offset)
            overall.append(hit)
            for t in phrase.phrase_types:
                by_type.setdefault(t, []).append(hit)
    if not overall:
        raise DataError(predictions_path, "no phrase with ground-truth boxes to evaluate")
    return GroundingMetrics(_recall(overall), {t: _recall(h) for t, h in sorted(by_type.items())})


def read_grounding_predictions(path: str | Path) -> dict[PhraseKey, np.ndarray]:
    """Read the predictions file described in the module docstring, checking every box."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(path, "file not found") from None
    except json.JSONDecodeError as e:
        raise DataError(path, f"not valid JSON ({e.msg} at line {e.lineno})") from None
    if not isinstance(data, dict):
        raise DataError(path, "must be an object {image_id: {sentence_index: {entity_id: [boxes]}}}")
    out: dict[PhraseKey, np.ndarray] = {}
    for image_key, sentences in data.items():
        image_id = _int_key(path, image_key, f"image {image_key}")
        if not isinstance(sentences, dict):
            raise DataError(path, "must map sentence indices to phrases", record=f"image {image_key}")
        for sent_key, phrases in sentences.items():
            rec = f"image {image_key} sentence {sent_key}"
            sent_index = _int_key(path, sent_key, rec)
            if not isinstance(phrases, dict):
                raise DataError(path, "must map entity ids to ranked boxes", record=rec)
            for entity_id, boxes in phrases.items():
                prec = f"{rec} entity {entity_id}"
                out[(image_id, sent_index, str(entity_id))] = _boxes(path, prec, boxes)
    return out


def _int_key(path: Path, key: str, record: str) -> int:
    try:
        value = int(key)
    except ValueError:
        raise DataError(path, f"key {key!r} is not an integer", record=record) from None
    if value < 0:
        raise DataError(path, f"key {key!r} is negative", record=record)
    return value


def _boxes(path: Path, record: str, boxes: object) -> np.ndarray:
    if not isinstance(boxes, list):
        raise DataError(path, "must be a list of [x1, y1, x2, y2] boxes", record=record)
    for i, b in enumerate(boxes):
        if (not isinstance(b, list) or len(b) != 4
                or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in b)):
            raise DataError(path, f"box {i} must be 4 finite numbers [x1, y1, x2, y2]", record=record)
        if b[2] < b[0] or b[3] < b[1]:
            raise DataError(path, f"box {i} has x2 < x1 or y2 < y1", record=record)
    return np.asarray(boxes, dtype=np.float64).reshape(-1, 4)


def write_grounding_predictions(path: str | Path, predictions: Mapping[PhraseKey, np.ndarray]) -> None:
    """Write ranked boxes per phrase in the predictions format above (atomically)."""
    from vlmt.io import write_json

    nested: dict[str, dict[str, dict[str, list]]] = {}
    for (image_id, sent_index, entity_id), boxes in predictions.items():
        rows = np.asarray(boxes, dtype=np.float64).reshape(-1, 4).tolist()
        nested.setdefault(str(int(image_id)), {}).setdefault(str(int(sent_index)), {})[str(entity_id)] = rows
    write_json(path, nested, indent=None)


def _image_list(path: Path) -> list[int]:
    """Image ids listed one per line."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise DataError(path, "file not found") from None
    ids = []
    for i, line in enumerate(lines):
        if line.strip():
            try:
                ids.append(int(line.strip()))
            except ValueError:
                raise DataError(path, f"{line.strip()!r} is not an image id", record=f"line {i + 1}") from None
    return ids


def read_sentences(root: Path, image_ids: list[int]) -> list[GroundedSentence]:
    """The Flickr30k Entities sentences (with their phrases and boxes) of `image_ids`."""
    from vlmt.data.readers.flickr30k_entities import read_image

    sentences: list[GroundedSentence] = []
    for image_id in image_ids:
        sentences.extend(read_image(root, image_id))
    return sentences


def evaluate_grounding_files(predictions: str | Path, annotations: str | Path, *, image_list: Path | None = None,
                             split: str | None = None, any_box: bool = False, inclusive_pixels: bool = False
                             ) -> tuple[GroundingMetrics, list[int]]:
    """Recall@K of a predictions file (`read_grounding_predictions`) against a Flickr30k Entities
    folder, and the images evaluated: those of `image_list` (a file of ids) or of the release `split`,
    every one of which must be predicted, else the predicted images."""
    from vlmt.data.readers.flickr30k_entities import read_split

    root = Path(annotations)
    if not (root / "Sentences").is_dir() or not (root / "Annotations").is_dir():
        raise DataError(root, "not a Flickr30k Entities folder (needs Sentences/ and Annotations/)")
    ranked = read_grounding_predictions(predictions)
    predicted_images = sorted({k[0] for k in ranked})
    if image_list is not None or split is not None:
        image_ids = read_split(root, split) if split is not None else _image_list(Path(str(image_list)))
        missing = [i for i in image_ids if i not in set(predicted_images)]
        if missing:
            raise DataError(predictions, f"no predictions for {len(missing)} listed image(s), "
                            f"first {missing[0]}", record=f"image {missing[0]}")
    else:
        image_ids = predicted_images
    sentences = read_sentences(root, image_ids)
    known = {(s.image_id, s.sentence_index) for s in sentences}
    for key in ranked:
        if key[0] in set(image_ids) and (key[0], key[1]) not in known:
            raise DataError(predictions, "no such sentence in the annotations",
                            record=f"image {key[0]} sentence {key[1]}")
    metrics = grounding_recall(sentences, ranked, any_box=any_box, pixel_offset=1.0 if inclusive_pixels else 0.0,
                               predictions_path=predictions)
    return metrics, image_ids
