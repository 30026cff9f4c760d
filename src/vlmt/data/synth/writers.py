"""Writers for the official dataset formats the synthetic world is published in (the same
formats the readers parse for the real datasets):

- VQA v2 open-ended: `v2_OpenEnded_mscoco_<split>_questions.json`, `v2_mscoco_<split>_annotations.json`
- VQA v1 multiple choice: `MultipleChoice_mscoco_<split>_questions.json` (18 `multiple_choices`)
  with `mscoco_<split>_annotations.json`
- Karpathy caption splits: `dataset_<name>.json`
- Flickr30k Entities: `Sentences/<id>.txt`, `Annotations/<id>.xml`, `<split>.txt` image lists
- Visual Genome: `objects.json`, `attributes.json`, `image_data.json`

Every file is written atomically.
"""

from __future__ import annotations

import re
from pathlib import Path
from xml.sax.saxutils import escape

from vlmt.data.synth import taxonomy as tx
from vlmt.data.synth.language import Caption, Question
from vlmt.data.synth.scene import Scene
from vlmt.io import atomic_write, write_json

VQA_INFO = {
    "description": "vlmt synthetic world, written in the VQA format",
    "url": "", "version": "1.0", "year": 2026, "contributor": "vlmt", "date_created": "2026-01-01",
}
VQA_LICENSE = {"name": "CC0 1.0", "url": "https://creativecommons.org/publicdomain/zero/1.0/"}
TOKEN_RE = re.compile(r"[a-z0-9]+")


def question_id(image_id: int, k: int) -> int:
    """VQA convention: question ids are the image id times 1000 plus a counter."""
    return image_id * 1000 + k


def write_vqa(out: Path, subtype: str, items: list[tuple[int, int, Question]]) -> list[Path]:
    """Write the v2 open-ended questions + annotations and the v1 multiple-choice questions of one
    split (`subtype` like "train2014"); `items` are (image_id, question_id, question)."""
    questions = [{"image_id": i, "question": q.text, "question_id": qid} for i, qid, q in items]
    annotations = [{
        "question_type": q.question_type,
        "multiple_choice_answer": q.multiple_choice_answer,
        "answers": [{"answer": a, "answer_confidence": c, "answer_id": n + 1}
                    for n, (a, c) in enumerate(zip(q.answers, q.confidences))],
        "image_id": i,
        "answer_type": q.answer_type,
        "question_id": qid,
    } for i, qid, q in items]
    mc = [{"image_id": i, "question": q.text, "multiple_choices": list(q.choices), "question_id": qid}
          for i, qid, q in items]
    paths = [out / f"v2_OpenEnded_mscoco_{subtype}_questions.json", out / f"v2_mscoco_{subtype}_annotations.json",
             out / f"MultipleChoice_mscoco_{subtype}_questions.json", out / f"mscoco_{subtype}_annotations.json"]
    write_json(paths[0], {"info": VQA_INFO, "task_type": "Open-Ended", "data_type": "mscoco",
                          "license": VQA_LICENSE, "data_subtype": subtype, "questions": questions}, indent=None)
    write_json(paths[1], {"info": VQA_INFO, "license": VQA_LICENSE, "data_subtype": subtype,
                          "annotations": annotations, "data_type": "mscoco"}, indent=None)
    write_json(paths[2], {"info": VQA_INFO, "task_type": "Multiple-Choice", "data_type": "mscoco",
                          "license": VQA_LICENSE, "data_subtype": subtype, "questions": mc, "num_choices": 18},
               indent=None)
    # VQA v1 pairs its multiple-choice questions with `mscoco_<split>_annotations.json` (same fields)
    write_json(paths[3], {"info": VQA_INFO, "license": VQA_LICENSE, "data_subtype": subtype,
                          "annotations": annotations, "data_type": "mscoco"}, indent=None)
    return paths


def tokens(text: str) -> list[str]:
    """Karpathy-style tokens: lower case, punctuation dropped."""
    return TOKEN_RE.findall(text.lower())


def write_karpathy(path: Path, name: str, images: list[tuple[int, str, str, list[Caption]]]) -> None:
    """`dataset_<name>.json`: images (image_id, filename, split, captions) with sentences and
    tokens; `cocoid` carries the image id that every other file of the world uses."""
    out, sentid = [], 0
    for imgid, (image_id, filename, split, caps) in enumerate(images):
        sentences = []
        for cap in caps:
            sentences.append({"tokens": tokens(cap.text), "raw": cap.text, "imgid": imgid, "sentid": sentid})
            sentid += 1
        out.append({"filepath": "images", "sentids": [s["sentid"] for s in sentences], "filename": filename,
                    "imgid": imgid, "split": split, "sentences": sentences, "cocoid": image_id})
    write_json(path, {"images": out, "dataset": name}, indent=None)


def write_entities(out: Path, scene: Scene, filename: str, caps: list[Caption]) -> None:
    """Flickr30k Entities `Sentences/<id>.txt` (one marked-up caption per line) and
    `Annotations/<id>.xml` (one <object> per box of an entity, 1-based pixel coordinates
    as in the release, whose readers subtract 1; <nobndbox>/<scene> flags for entities without a
    box)."""
    with atomic_write(out / "Sentences" / f"{scene.image_id}.txt", "w", encoding="utf-8") as f:
        for cap in caps:
            f.write(cap.markup() + "\n")
    entities: dict[int, tuple[tuple[int, ...], bool]] = {}
    for cap in caps:
        for p in cap.phrases:
            entities.setdefault(p.entity_id, (p.objects, p.scene))
    lines = ["<annotation>", f"<filename>{escape(filename)}</filename>",
             f"<size><width>{scene.width}</width><height>{scene.height}</height><depth>3</depth></size>"]
    for eid in sorted(entities):
        objects, is_scene = entities[eid]
        if objects:
            for idx in objects:
                x1, y1, x2, y2 = pixel_box(scene.objects[idx].box, scene.width, scene.height)
                lines.append(f"<object><name>{eid}</name><bndbox><xmin>{x1 + 1}</xmin><ymin>{y1 + 1}</ymin>"
                             f"<xmax>{x2 + 1}</xmax><ymax>{y2 + 1}</ymax></bndbox></object>")
        else:
            lines.append(f"<object><name>{eid}</name><nobndbox>{0 if is_scene else 1}</nobndbox>"
                         f"<scene>{1 if is_scene else 0}</scene></object>")
    lines.append("</annotation>")
    with atomic_write(out / "Annotations" / f"{scene.image_id}.xml", "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")


def pixel_box(box: tuple[float, float, float, float], width: int, height: int) -> tuple[int, int, int, int]:
    """A float box rounded to whole pixels (each side within half a pixel), kept inside the image
    the way the integer formats require (x2 <= W - 1 once read back 0-based)."""
    x1, y1 = max(0, round(box[0])), max(0, round(box[1]))
    x2, y2 = min(width - 1, round(box[2])), min(height - 1, round(box[3]))
    return x1, y1, max(x2, x1 + 1), max(y2, y1 + 1)


def write_id_list(path: Path, ids: list[int]) -> None:
    with atomic_write(path, "w", encoding="utf-8") as f:
        f.write("".join(f"{i}\n" for i in ids))


def genome_object_id(image_id: int, index: int) -> int:
    return image_id * 10 + index


def write_genome(out: Path, scenes: list[Scene], filenames: dict[int, str]) -> list[Path]:
    """Visual Genome `objects.json`, `attributes.json`, `image_data.json` (boxes as integer x, y,
    w, h; object names with WordNet synsets; attributes per object; no coco_id: the images are
    disjoint from the VQA images)."""
    objects, attributes, image_data = [], [], []
    for s in scenes:
        objs, attrs = [], []
        for o in s.objects:
            x1, y1, x2, y2 = pixel_box(o.box, s.width, s.height)
            base = {"object_id": genome_object_id(s.image_id, o.index), "x": x1, "y": y1,
                    "w": x2 - x1, "h": y2 - y1, "names": [o.shape], "synsets": [tx.SHAPE_SYNSETS[o.shape]]}
            objs.append({**base, "merged_object_ids": []})
            attrs.append({**base, "attributes": [o.colour, o.size, o.texture]})
        url = f"images/{filenames[s.image_id]}"
        objects.append({"image_id": s.image_id, "objects": objs, "image_url": url})
        attributes.append({"image_id": s.image_id, "attributes": attrs})
        image_data.append({"width": s.width, "url": url, "height": s.height, "image_id": s.image_id,
                           "coco_id": None, "flickr_id": None})
    paths = [out / "objects.json", out / "attributes.json", out / "image_data.json"]
    for p, data in zip(paths, (objects, attributes, image_data)):
        write_json(p, data, indent=None)
    return paths
