"""SVLR Table 2 and Fig. 7 on the synthetic world: how well a model's VQA attention agrees with
"human" attention, here the true boxes of the objects each question is about.

The paper compares attention maps with the VQA-HAT maps of Das et al.: both resized to 14 x 14,
Spearman's rank correlation per question, mean over questions (Table 2), with a centre-focused
baseline; Fig. 7 repeats the mean on the subsets of questions whose human map correlates with the
centre map at most t, for thresholds t. On the world a question's human map is
`regions_to_map` of the boxes of the objects it asks about (`vlmt.data.synth.question_objects`);
a question about no existing object ("is there a red star?" - no), or whose map is constant,
has no defined correlation and is left out (counted in the report). The model map spreads the
attention a(R) of the answer the model picks over the boxes of the image's regions.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from vlmt.data.synth.question_objects import world_question_objects
from vlmt.errors import DataError
from vlmt.metrics.attention_agreement import GRID, centre_map, regions_to_map, spearman
from vlmt.tasks.svlr_data import SVLRData
from vlmt.tasks.svlr_vqa_mc import SVLRVQATask

THRESHOLDS = tuple(round(float(t), 1) + 0.0 for t in np.arange(-1.0, 1.0001, 0.1))  # Fig. 7's x axis (the paper: 0..1)


def world_human_maps(data: SVLRData, split: str) -> tuple[dict[int, np.ndarray], dict[str, int]]:
    """question id -> GRID x GRID "human" map of every question of `split` that names at least one
    existing object and whose map is not constant; and the counts of questions kept and left out.
    DataError when the data is not a synthetic world or its questions differ from the world's."""
    objects = world_question_objects(data.root)
    centre = centre_map()
    maps: dict[int, np.ndarray] = {}
    without = constant = 0
    for q in data.vqa[split]:
        info = objects.get(q.question_id)
        if info is None or info.text != q.question:
            raise DataError(data.root, "the VQA files are not the questions of the synthetic world that "
                            "generated them", record=f"question_id {q.question_id}")
        if not info.boxes:
            without += 1
            continue
        human = regions_to_map(np.asarray(info.boxes), np.ones(len(info.boxes)), info.width, info.height)
        if not np.isfinite(spearman(centre, human)):
            constant += 1
            continue
        maps[q.question_id] = human
    return maps, {"questions": len(data.vqa[split]), "kept": len(maps), "no_object": without,
                  "constant_map": constant}


def centre_correlations(human: dict[int, np.ndarray]) -> dict[int, float]:
    """question id -> Spearman's rho of the centre baseline with its human map."""
    centre = centre_map()
    return {qid: spearman(centre, h) for qid, h in human.items()}


def model_correlations(model: nn.Module, task: SVLRVQATask, split: str, human: dict[int, np.ndarray], *,
                       device: torch.device) -> dict[int, float]:
    """question id -> Spearman's rho of the model's attention map (chosen answer) with the human
    map, for the questions of `human`. A constant model map (all attention on regions that cover
    the grid evenly) agrees with nothing: rho 0."""
    attention = task.chosen_attention(model, split, device=device)
    image_of = {q.question_id: q.image_id for q in task.data.vqa[split]}
    out = {}
    for qid, h in human.items():
        record = task.data.store.read(image_of[qid])
        m = regions_to_map(record.boxes, attention[qid], record.width, record.height, GRID)
        rho = spearman(m, h)
        out[qid] = rho if np.isfinite(rho) else 0.0
    return out
