"""Everything the world says is true in its pictures: captions, phrase boxes and answers are read
back from the written files and checked against the scene graph (geometry and attributes)."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from collections import Counter

from synth_parse import REL_OF, REL_RE, fits, parse_description, relation_in, resolve

from vlmt.data.synth import taxonomy as tx
from vlmt.data.synth.scene import relation_holds
from vlmt.data.synth.writers import pixel_box

PHRASE_RE = re.compile(r"\[/EN#(\d+)/(\w+) ([^\]]+)\]")


def _entity_boxes(path):
    boxes, nobox, scene = {}, set(), set()
    for obj in ET.parse(path).getroot().findall("object"):
        eid = obj.find("name").text
        bb = obj.find("bndbox")
        if bb is not None:
            boxes.setdefault(eid, []).append(tuple(int(bb.find(k).text) - 1 for k in ("xmin", "ymin", "xmax", "ymax")))
        else:
            if int(obj.find("nobndbox").text):
                nobox.add(eid)
            if int(obj.find("scene").text):
                scene.add(eid)
    return boxes, nobox, scene


def test_phrase_boxes_are_the_boxes_of_the_objects_the_phrase_describes(tiny_world):
    out, world = tiny_world
    checked = nobox_seen = 0
    for i in world.main_ids():
        scene = world.scenes[i]
        boxes, nobox, scene_ids = _entity_boxes(out / "flickr30k_entities" / "Annotations" / f"{i}.xml")
        by_box = {pixel_box(o.box, scene.width, scene.height): o for o in scene.objects}
        lines = (out / "flickr30k_entities" / "Sentences" / f"{i}.txt").read_text().splitlines()
        assert len(lines) == 5
        for line in lines:
            for eid, ptype, text in PHRASE_RE.findall(line):
                if eid not in boxes:  # the background / "the picture": entities without a box
                    assert eid in nobox or eid in scene_ids
                    assert ("background" in text) == (eid in scene_ids) == (ptype == "scene")
                    nobox_seen += 1
                    continue
                objs = [by_box[b] for b in boxes[eid]]  # KeyError: a box that is no object's box
                d = parse_description(text)
                assert all(fits(o, d) for o in objs), (i, text, objs)
                if d["count"] is not None:
                    assert d["count"] == len(objs), (i, text)
                else:
                    assert len(objs) == 1
                    assert resolve(scene, text) == objs, (i, text)  # singular phrases pick out one object
                checked += 1
    assert checked > 100 and nobox_seen > 10


def test_every_relation_stated_in_a_caption_holds_in_the_picture(tiny_world):
    out, world = tiny_world
    stated = 0
    for i in world.main_ids():
        scene = world.scenes[i]
        boxes, _, _ = _entity_boxes(out / "flickr30k_entities" / "Annotations" / f"{i}.xml")
        by_box = {pixel_box(o.box, scene.width, scene.height): o for o in scene.objects}
        for line in (out / "flickr30k_entities" / "Sentences" / f"{i}.txt").read_text().splitlines():
            phrases = list(PHRASE_RE.finditer(line))
            for a, b in zip(phrases, phrases[1:]):
                rel = relation_in(line[a.end():b.start()])
                if rel is None or b.group(1) not in boxes:
                    continue
                for sa in boxes[a.group(1)]:
                    for sb in boxes[b.group(1)]:
                        assert relation_holds(rel, by_box[sa], by_box[sb], scene.width), (i, line)
                stated += 1
    assert stated > 30


def _answer_from_scene(scene, question: str):
    q = question.lower().rstrip("?")
    one = lambda text: resolve(scene, text)  # noqa: E731
    if m := re.fullmatch(r"what (?:color is|is the color of) the (.+?)( in the picture)?", q):
        (o,) = one(m.group(1))
        return o.colour
    if m := re.fullmatch(r"what size is the (.+)", q):
        (o,) = one(m.group(1))
        return o.size
    if m := re.fullmatch(r"what shape is (" + REL_RE + r") the (.+)", q):
        (b,) = one(m.group(2))
        (a,) = [o for o in scene.objects if relation_holds(REL_OF[m.group(1)], o, b, scene.width)]
        return a.shape
    if m := re.fullmatch(r"what (?:shape is|is) the (.+)", q):
        (o,) = one(m.group(1))
        return o.shape
    if m := re.fullmatch(r"how many (.+?) (?:are there|are in the picture|can you see)", q):
        return str(len(one(m.group(1))))
    if m := re.fullmatch(r"(?:is there|are there any) (.+)", q):
        return "yes" if one(m.group(1)) else "no"
    if m := re.fullmatch(r"is the (.+?) (?:bigger|larger) than the (.+)", q):
        (a,), (b,) = one(m.group(1)), one(m.group(2))
        return "yes" if a.area > b.area else "no"
    if m := re.fullmatch(r"is the (.+?) (" + REL_RE + r") the (.+)", q):
        (a,), (b,) = one(m.group(1)), one(m.group(3))
        return "yes" if relation_holds(REL_OF[m.group(2)], a, b, scene.width) else "no"
    raise AssertionError(f"question not understood: {question!r}")


def test_every_answer_is_true_in_the_picture(tiny_world):
    out, world = tiny_world
    kinds = Counter()
    for sub in ("train2014", "val2014", "test2015"):
        qs = json.loads((out / f"v2_OpenEnded_mscoco_{sub}_questions.json").read_text())["questions"]
        anns = {a["question_id"]: a
                for a in json.loads((out / f"v2_mscoco_{sub}_annotations.json").read_text())["annotations"]}
        mc = {q["question_id"]: q
              for q in json.loads((out / f"MultipleChoice_mscoco_{sub}_questions.json").read_text())["questions"]}
        for q in qs:
            a = anns[q["question_id"]]
            truth = _answer_from_scene(world.scenes[q["image_id"]], q["question"])
            assert a["multiple_choice_answer"] == truth, q
            raw = [x["answer"] for x in a["answers"]]
            assert len(raw) == 10 and Counter(raw).most_common(1)[0][0] == truth and raw.count(truth) >= 5
            choices = mc[q["question_id"]]["multiple_choices"]
            assert len(choices) == 18 and len(set(choices)) == 18 and truth in choices
            kinds[a["answer_type"]] += 1
            kinds[q["question"].split()[0].lower()] += 1
    assert kinds["yes/no"] and kinds["number"] and kinds["other"] > 20
    assert {"what", "how", "is", "are"} <= set(kinds)


def test_answers_are_noisy_like_human_annotations(tiny_world):
    """Not all ten answers agree: synonyms and mistakes occur, so soft scores below 1 exist."""
    out, _ = tiny_world
    anns = json.loads((out / "v2_mscoco_train2014_annotations.json").read_text())["annotations"]
    disagree = [a for a in anns if len({x["answer"] for x in a["answers"]}) > 1]
    synonyms = {x["answer"] for a in anns for x in a["answers"]} - {a["multiple_choice_answer"] for a in anns}
    assert 0.3 < len(disagree) / len(anns) < 0.95
    assert synonyms & {w for syns in tx.COLOUR_SYNONYMS.values() for w in syns[1:]} | set(tx.NUMBER_WORDS)


def test_captions_vary(tiny_world):
    out, world = tiny_world
    data = json.loads((out / "dataset_synth.json").read_text())
    raws = [s["raw"] for im in data["images"] for s in im["sentences"]]
    starts = Counter(" ".join(r.split()[:2]) for r in raws)
    assert len(set(raws)) > 0.8 * len(raws)
    assert len(starts) > 15
    assert all(len(set(s["raw"] for s in im["sentences"])) == 5 for im in data["images"])
