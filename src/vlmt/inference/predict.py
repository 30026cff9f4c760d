"""Answering a question about any picture with a trained model's VQA head (`vlmt predict`): the
same path as `vlmt.load(...).answer`, with the attention behind the answer."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from vlmt.data.features.proposals import load_image
from vlmt.errors import ConfigError
from vlmt.inference.model import load
from vlmt.tasks.vqa import VQATaskConfig
from vlmt.training.build import run_config


def answer(path: str | Path, image: str | Path, question: str, *, top: int = 5,
           checkpoint: str = "best") -> dict[str, Any]:
    """Top answers (with sigmoid scores) of a model's VQA head for one picture and question, the
    regions with their attention weights and the word attention; "pixels", "boxes" and the weights
    as arrays for drawing. `path` is a run folder or an exported model folder."""
    path = Path(path)
    if (path / "config.yaml").is_file():  # a run: say early when it has no VQA task
        cfg = run_config(path)
        if not any(isinstance(t, VQATaskConfig) for t in cfg.tasks.values()):
            raise ConfigError(f"{path / 'config.yaml'}: this run has no VQA task (tasks: {', '.join(cfg.tasks)}); "
                              "predict answers questions with a run trained on VQA")
    pixels = load_image(image)  # before the (slower) load: a wrong path fails at once
    if not question.strip():
        raise ConfigError(f"--question: {question!r} has no word")
    details = load(path, checkpoint=checkpoint).details("answer", pixels, question, top_k=top)
    words = details["words"]
    return {
        "image": str(image), "question": question, "words": words, "unknown_words": details["unknown_words"],
        "answer": details["answers"][0]["answer"],
        "answers": [{"answer": a["answer"], "score": round(a["score"], 4)} for a in details["answers"]],
        "regions": [{"box": [round(float(v), 1) for v in b], "attention": round(float(w), 4)}
                    for b, w in zip(details["boxes"], details["region_attention"])],
        "word_attention": {w: round(float(a), 4) for w, a in zip(words, details["word_attention"])},
        "pixels": pixels, "boxes": details["boxes"], "region_weights": details["region_attention"],
        "word_weights": details["word_attention"][:len(words)],
    }
