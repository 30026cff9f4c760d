"""The objects a world question is about (the "human attention" of SVLR Table 2 on the world):
they are the ones its answer is about, and the world folder alone gives them for every question
id of its VQA files."""

from __future__ import annotations

import json

import pytest

from vlmt.data.synth.question_objects import question_objects, world_question_objects
from vlmt.data.synth.writers import question_id
from vlmt.errors import DataError


def test_the_objects_of_a_question_are_the_ones_its_answer_describes(tiny_world):
    _, world = tiny_world
    kinds = set()
    for i in world.main_ids():
        scene = world.scenes[i]
        for q in world.questions[i]:
            objs = question_objects(scene, q)
            kinds.add(q.kind)
            if q.kind == "colour":
                assert [o.colour for o in objs] == [q.answer]
            elif q.kind == "shape":
                assert [o.shape for o in objs] == [q.answer]
            elif q.kind == "count":
                assert len(objs) == int(q.answer)
            elif q.kind == "exists":
                assert bool(objs) == (q.answer == "yes")
            elif q.kind == "size" and q.answer_type == "other":
                assert [o.size for o in objs] == [q.answer]
            else:  # relations and size comparisons name two distinct objects
                assert len(objs) == 2 and objs[0] is not objs[1], q.text
                if q.answer_type == "other":  # "what shape is left of the blue square?"
                    assert q.answer in {o.shape for o in objs}
    assert kinds == {"colour", "shape", "count", "exists", "relation", "size"}


def test_the_world_folder_gives_every_question_its_true_boxes(tiny_world, tmp_path):
    out, world = tiny_world
    found = world_question_objects(out)
    for subtype in ("train2014", "val2014", "test2015"):
        for q in json.loads((out / f"MultipleChoice_mscoco_{subtype}_questions.json").read_text())["questions"]:
            info = found[q["question_id"]]
            assert (info.text, info.image_id) == (q["question"], q["image_id"])
    image_id = world.main_ids("test")[0]
    scene, first = world.scenes[image_id], world.questions[image_id][0]
    info = found[question_id(image_id, 0)]
    assert info.boxes == tuple(o.box for o in question_objects(scene, first))
    assert (info.width, info.height) == (scene.width, scene.height)
    with pytest.raises(DataError, match="only a synthetic world"):
        world_question_objects(tmp_path)
