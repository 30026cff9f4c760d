"""Answering a question about any picture with a trained run's VQA task (`vlmt predict`).

The picture goes the way the run's training images went: pixel proposals
(`vlmt.data.features.proposals`: foreground box, whole image, quadrants), then region features
from the region CNN saved beside the run's data (`<data root>/region_extractor/`, as written by
the easy-VQA conversion and the synthetic world), then the encoder and the VQA task's head.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from vlmt.data.features.extractor import RegionExtractor
from vlmt.data.features.proposals import load_image, proposals
from vlmt.data.text import tokenize
from vlmt.errors import ConfigError, DataError
from vlmt.models.hierarchical import HierarchicalVL
from vlmt.tasks.vqa import VQATask, VQATaskConfig
from vlmt.training import checkpoint as ckpt
from vlmt.training.build import rebuild, run_config


def vqa_task_name(run_dir: str | Path) -> str:
    """Name of the run's VQA task, from its config; ConfigError when it has none."""
    cfg = run_config(run_dir)
    names = [name for name, t in cfg.tasks.items() if isinstance(t, VQATaskConfig)]
    if not names:
        raise ConfigError(f"{Path(run_dir) / 'config.yaml'}: this run has no VQA task (tasks: {', '.join(cfg.tasks)}); "
                          "predict answers questions with a run trained on VQA")
    return names[0]


def answer(run_dir: str | Path, image: str | Path, question: str, *, top: int = 5,
           checkpoint: str = "best") -> dict[str, Any]:
    """Top answers (with sigmoid scores) of a run's VQA head for one picture and question, the
    regions with their attention weights and the word attention; "pixels", "boxes" and the
    weights as arrays for drawing."""
    run_dir = Path(run_dir)
    task_name = vqa_task_name(run_dir)
    pixels = load_image(image)  # before the (slower) rebuild: a wrong path fails at once
    tokens = tokenize(question, "vqa")
    if not tokens:
        raise ConfigError(f"--question: {question!r} has no word")
    if ckpt.checkpoint_dir(run_dir, checkpoint) is None and ckpt.checkpoint_dir(run_dir, "last") is None:
        raise ConfigError(f"{run_dir / ckpt.CHECKPOINTS}: no checkpoint yet; train the run first")
    _, parts = rebuild(run_dir, checkpoint, device="cpu")
    task, model = parts.tasks[task_name], parts.model
    assert isinstance(task, VQATask) and isinstance(model, HierarchicalVL)  # a VQA task reads the hierarchical encoder
    data = task.data
    extractor_dir = data.root / "region_extractor"
    if not (extractor_dir / RegionExtractor.META).is_file():
        raise DataError(extractor_dir / RegionExtractor.META, "the run's data has no region extractor, so features "
                        "cannot be computed for a new picture")
    extractor = RegionExtractor.load(extractor_dir)
    feature_dim = model.config.region_feature_dim
    if extractor.feature_dim != feature_dim:
        raise DataError(extractor_dir / RegionExtractor.META, f"extractor gives {extractor.feature_dim}-d features, "
                        f"the model reads {feature_dim}-d ones")
    boxes = proposals(pixels)
    features = extractor.extract([pixels], [boxes])[0]
    ids = data.encode_words(tokens)
    unknown = [w for w, i in zip(tokens, ids.tolist()) if i == data.vocab.unk_index]
    batch = {"tokens": torch.from_numpy(ids)[None], "lengths": torch.tensor([len(ids)]),
             "region_features": torch.from_numpy(features)[None],
             "region_mask": torch.ones(1, len(boxes), dtype=torch.bool)}
    with torch.no_grad():
        scores = torch.sigmoid(task.logits(model, batch))[0]
        maps = task.attention_maps(model, batch)
    order = scores.argsort(descending=True)[:max(1, top)].tolist()
    answers = [{"answer": task.pool.answers[a], "score": round(float(scores[a]), 4)} for a in order]
    region_weights = maps["regions"][0].numpy()
    word_weights = maps["words"][0].numpy()[:len(tokens)]
    return {
        "image": str(image), "question": question, "words": tokens, "unknown_words": unknown,
        "answer": answers[0]["answer"], "answers": answers,
        "regions": [{"box": [round(float(v), 1) for v in b], "attention": round(float(w), 4)}
                    for b, w in zip(boxes, region_weights)],
        "word_attention": {w: round(float(a), 4) for w, a in zip(tokens, word_weights)},
        "pixels": pixels, "boxes": np.asarray(boxes), "region_weights": np.asarray(region_weights),
        "word_weights": word_weights,
    }
