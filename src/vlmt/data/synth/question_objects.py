"""Which objects a synthetic-world question is about, with their true boxes: the world's stand-in
for human attention (SVLR Table 2 and Fig. 7 compare model attention with VQA-HAT maps; on the
world the "human" map of a question is the map of the boxes of the objects it asks about).

The world does not write this to its files: every question is generated from a claim about its
scene (`Question.claim`: the object it describes, the two objects of a relation or a size
comparison, the shape and colour it counts or looks for). The world is a pure function of its
size and seed, so `world_question_objects(root)` samples it again from the folder's
`.synth_config.json` (seconds, no images) and reads the claims; worlds generated before this
module need nothing new. The question texts are returned too, so a caller can check that they
are the questions of the files it read.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from vlmt.data.synth.language import Question
from vlmt.data.synth.scene import Box, Scene, SceneObject
from vlmt.errors import DataError

CONFIG_FILE = ".synth_config.json"  # written by `world.generate` into every world folder


@dataclass(frozen=True)
class QuestionObjects:
    """The objects one question is about: their pixel boxes (x1, y1, x2, y2) in an image of
    width x height; no boxes when it names none that exist (e.g. "is there a red star?": no)."""

    question_id: int
    image_id: int
    text: str
    boxes: tuple[Box, ...]
    width: int
    height: int


def question_objects(scene: Scene, question: Question) -> list[SceneObject]:
    """The objects of `scene` a question is about, from its claim: the described object (colour,
    shape, size questions), both objects of a relation or size comparison, or every object that
    fits the shape and colour a count or existence question names."""
    claim = question.claim
    indices = [claim[key] for key in ("subject", "object", "bigger", "than") if isinstance(claim.get(key), int)]
    if "shape" in claim:
        return scene.matching(shape=claim["shape"], colour=claim.get("colour"))
    return [scene.objects[i] for i in dict.fromkeys(indices)]


def world_question_objects(root: str | Path) -> dict[int, QuestionObjects]:
    """Question id -> `QuestionObjects` for every VQA question of the synthetic world in `root`
    (sampled again from its size and seed). DataError when `root` holds no synthetic world."""
    from vlmt.data.synth import writers
    from vlmt.data.synth.world import SIZES, WorldSize, build

    path = Path(root) / CONFIG_FILE
    if not path.is_file():
        raise DataError(path, "not found: only a synthetic world knows which objects its questions are about")
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
        spec: dict = {k: tuple(v) if isinstance(v, list) else v for k, v in config["spec"].items()}
        size = SIZES.get(config["size"]) or WorldSize(**spec)
        seed = int(config["seed"])
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise DataError(path, f"not a synthetic-world description: {e}") from None
    world = build(size, seed)
    out = {}
    for image_id, questions in world.questions.items():
        scene = world.scenes[image_id]
        for k, q in enumerate(questions):
            qid = writers.question_id(image_id, k)
            boxes = tuple(o.box for o in question_objects(scene, q))
            out[qid] = QuestionObjects(qid, image_id, q.text, boxes, scene.width, scene.height)
    return out
