"""A run's predictions written in the formats the official evaluations read.

    VQA (open-ended and multiple choice): `[{"question_id": int, "answer": str}, ...]`, the
        results format of the VQA evaluation code and its test-dev server;
    grounding: `{image_id: {sentence_index: {entity_id: [[x1, y1, x2, y2], ...]}}}`, boxes ranked
        best first (what `vlmt evaluate grounding --predictions` reads);
    retrieval: the images x captions score matrix as .npy (what `vlmt evaluate retrieval
        --scores` reads; caption j belongs to image j // captions_per_image).

A task offers predictions through one of these methods: `predict` / `predictions` returning
{question id: answer} or {(image, sentence, entity): ranked boxes}, or `score_matrix`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from vlmt.io import atomic_path, write_json


def write_predictions(tasks: dict[str, Any], model: nn.Module, split: str, out_dir: str | Path, *,
                      device: torch.device) -> list[Path]:
    """Write every task's predictions on `split` into `out_dir`; returns the files written.
    Tasks without a prediction method (e.g. recognition) are passed over."""
    out_dir = Path(out_dir)
    written: list[Path] = []
    for name, task in tasks.items():
        if hasattr(task, "score_matrix"):
            path = out_dir / f"{name}_{split}_scores.npy"
            if getattr(task, "rerank_k", None):  # the two-stage matrix its metrics come from
                matrix = task.reranked_matrix(model, split, k=task.rerank_k, device=device)[0]
            else:
                matrix = task.score_matrix(model, split, device=device)
            scores = np.asarray(matrix, dtype=np.float32)
            with atomic_path(path) as tmp:
                with open(tmp, "wb") as f:
                    np.save(f, scores)
            written.append(path)
            continue
        method = getattr(task, "predict", None) or getattr(task, "predictions", None)
        if method is None:
            continue
        result = method(model, split, device=device)
        path = out_dir / f"{name}_{split}_results.json"
        write_json(path, _as_json(result), indent=None)
        written.append(path)
    return written


def _as_json(result: dict) -> Any:
    if all(isinstance(k, int) for k in result):  # question id -> answer
        return [{"question_id": qid, "answer": answer} for qid, answer in sorted(result.items())]
    nested: dict[str, dict[str, dict[str, list]]] = {}
    for (image_id, sentence, entity), boxes in sorted(result.items()):
        nested.setdefault(str(image_id), {}).setdefault(str(sentence), {})[str(entity)] = \
            np.asarray(boxes, dtype=float).round(2).tolist()
    return nested
