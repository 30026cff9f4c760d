"""`vlmt predict RUN --image PATH --question "..." [--top K] [--json] [--attention OUT.png]`:
answer a question about any picture with a trained run that has a VQA task.

The picture goes the way the run's training images went: pixel proposals
(`vlmt.data.features.proposals`: foreground box, whole image, quadrants), then region features from
the region CNN saved beside the run's data (`<data root>/region_extractor/`, as written by the
easy-VQA conversion and the synthetic world), then the model's VQA decoder. `--attention` draws
the decoder's attention over those regions on the picture.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", metavar="RUN", help="run folder written by `vlmt train` (with a VQA task)")
    parser.add_argument("--image", required=True, help="picture to ask about (PNG, JPEG, ...)")
    parser.add_argument("--question", required=True, help="the question, in words")
    parser.add_argument("--top", type=int, default=5, help="how many answers to list (default 5)")
    parser.add_argument("--checkpoint", default="best", choices=("best", "last"),
                        help="which checkpoint (default best; a run without one uses last)")
    parser.add_argument("--attention", metavar="OUT.png", default=None,
                        help="also draw the VQA decoder's attention over the regions into this PNG")
    parser.add_argument("--json", action="store_true", help="print the result as one JSON object")


def _vqa_task_name(run_dir: Path) -> str:
    """Name of the run's VQA task, from its config; ConfigError when it has none."""
    from vlmt import config as C
    from vlmt.errors import ConfigError
    from vlmt.tasks.vqa_task import VQATaskConfig

    config_path = run_dir / "config.yaml"
    if not config_path.is_file():
        raise ConfigError(f"{config_path}: not found; is {run_dir} a run folder written by `vlmt train`?")
    cfg = C.load_config(config_path)
    names = [name for name, t in cfg.tasks.items() if isinstance(t, VQATaskConfig)]
    if not names:
        raise ConfigError(f"{config_path}: this run has no VQA task (tasks: {', '.join(cfg.tasks)}); "
                          "predict answers questions with a run trained on VQA")
    return names[0]


def predict(run_dir: str | Path, image: str | Path, question: str, *, top: int = 5, checkpoint: str = "best",
            attention: str | Path | None = None) -> dict[str, Any]:
    """Top answers (with sigmoid scores) of a run's VQA decoder for one picture and question,
    the regions with their attention weights, and the attention picture when `attention` is set."""
    import numpy as np
    import torch

    from vlmt.data.features.proposals import load_image, proposals
    from vlmt.data.text import tokenize
    from vlmt.errors import ConfigError, DataError
    from vlmt.data.features.extractor import RegionExtractor
    from vlmt.training.checkpoint import checkpoint_dir, rebuild

    run_dir = Path(run_dir)
    task_name = _vqa_task_name(run_dir)
    pixels = load_image(image)  # before the (slower) rebuild: a wrong path fails at once
    tokens = tokenize(question, "vqa")
    if not tokens:
        raise ConfigError(f"--question: {question!r} has no word")
    if checkpoint_dir(run_dir, checkpoint) is None and checkpoint_dir(run_dir, "last") is None:
        raise ConfigError(f"{run_dir / 'checkpoints'}: no checkpoint yet; train the run first")
    cfg, model, tasks = rebuild(run_dir, checkpoint)
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    task = tasks[task_name]
    data = task.data
    extractor_dir = data.root / "region_extractor"
    if not (extractor_dir / RegionExtractor.META).is_file():
        raise DataError(extractor_dir / RegionExtractor.META, "the run's data has no region extractor, so features "
                        "cannot be computed for a new picture")
    extractor = RegionExtractor.load(extractor_dir)
    if extractor.feature_dim != model.config.region_feature_dim:
        raise DataError(extractor_dir / RegionExtractor.META, f"extractor gives {extractor.feature_dim}-d features, "
                        f"the model reads {model.config.region_feature_dim}-d ones")
    boxes = proposals(pixels)
    features = extractor.extract([pixels], [boxes])[0]
    ids = data.encode_words(tokens)
    unknown = [w for w, i in zip(tokens, ids.tolist()) if i == data.vocab.unk_index]
    batch = {"tokens": torch.from_numpy(ids)[None], "lengths": torch.tensor([len(ids)]),
             "region_features": torch.from_numpy(features)[None],
             "region_mask": torch.ones(1, len(boxes), dtype=torch.bool)}
    model.eval()
    with torch.no_grad():
        scores = torch.sigmoid(model.forward_vqa(**batch))[0]
        maps = model.attention_maps("vqa", **batch)
    order = scores.argsort(descending=True)[:max(1, top)].tolist()
    answers = [{"answer": task.pool.answers[a], "score": round(float(scores[a]), 4)} for a in order]
    region_weights = maps["regions"][0].numpy()
    result: dict[str, Any] = {
        "image": str(image), "question": question, "words": tokens, "unknown_words": unknown,
        "answer": answers[0]["answer"], "answers": answers,
        "regions": [{"box": [round(float(v), 1) for v in b], "attention": round(float(w), 4)}
                    for b, w in zip(boxes, region_weights)],
        "word_attention": {w: round(float(a), 4) for w, a in zip(tokens, maps["words"][0].numpy())},
    }
    if attention is not None:
        from vlmt.reports.pictures import attention_figure

        caption = "A: " + ", ".join(f"{a['answer']} {a['score']:.2f}" for a in answers[:3])
        attention_figure(attention, image=pixels, boxes=np.asarray(boxes), region_weights=np.asarray(region_weights),
                         words=tokens, word_weights=maps["words"][0].numpy()[:len(tokens)],
                         title=f"Q: {question}", caption=caption)
        result["attention_png"] = str(attention)
    return result


def run(args: argparse.Namespace) -> int:
    result = predict(args.run_dir, args.image, args.question, top=args.top, checkpoint=args.checkpoint,
                     attention=args.attention)
    print(f"Q: {result['question']}", file=sys.stderr)
    for a in result["answers"]:
        print(f"  {a['answer']:<16} {a['score']:.3f}", file=sys.stderr)
    if result["unknown_words"]:
        print(f"(words the model never saw in training: {', '.join(result['unknown_words'])})", file=sys.stderr)
    if "attention_png" in result:
        print(f"attention picture: {result['attention_png']}", file=sys.stderr)
    if args.json:
        print(json.dumps(result))
    return 0
